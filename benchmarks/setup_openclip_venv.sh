#!/usr/bin/env bash
# Makes the virtual environment in which open_clip trains on CPU beside keras-3t
# (benchmarks/openclip_step.py, benchmarks/openclip_lockstep.py, and
# benchmarks/train_step.py --open-clip VENV/bin/python).
#
#   bash benchmarks/setup_openclip_venv.sh [VENV]     # VENV defaults to ./.venv-openclip
#
# Settings, from the environment:
#   OPENCLIP_TORCH=full   (default) torch 2.14.1 and torchvision 0.29.1, the pair pip
#                         resolves for open_clip_torch 3.3.0 and timm 1.0.29: a CUDA build
#                         of torch (it runs on CPU too); about 5.6 GB, mostly nvidia-* wheels.
#   OPENCLIP_TORCH=light  torch 2.13.0+cpu, keras-3t's torch, without torchvision or timm;
#                         open_clip_torch is installed with --no-deps. About 1 GB. open_clip
#                         then imports only through openclip_step.py's import_open_clip,
#                         which registers placeholders for the torchvision names open_clip
#                         imports when it loads.
#   OPENCLIP_ALLOW_DOWNLOAD=1  allow pip to download torch, torchvision, triton or the large
#                         nvidia-* wheels from a remote index (several GB). Without it the
#                         script stops unless those resolve to local files (a file:// index
#                         or find-links).
#   PYTHON=python3.11     the interpreter that makes the venv (default: python3).
#
# A venv that already holds the wanted versions, and from which open_clip's model and
# losses import, is left as it is. The last line on stdout is a JSON report of the
# versions; everything else goes to stderr.
set -euo pipefail

VENV="${1:-.venv-openclip}"
BENCHMARKS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"   # where openclip_step.py is
PY="${PYTHON:-python3}"
MODE="${OPENCLIP_TORCH:-full}"
OPENCLIP_VERSION="3.3.0"
FULL_TORCH="2.14.1"
FULL_TORCHVISION="0.29.1"
LIGHT_TORCH="2.13.0"
TIMM_VERSION="1.0.29"   # open_clip_torch requires timm; pinned so that every venv gets the same one
# open_clip_torch's requirements besides torch, torchvision and timm (light mode installs them itself).
LIGHT_DEPENDENCIES=(regex ftfy tqdm huggingface-hub safetensors numpy)

case "$MODE" in
  full)  WANT_TORCH="$FULL_TORCH"; WANT_TORCHVISION="$FULL_TORCHVISION" ;;
  light) WANT_TORCH="$LIGHT_TORCH"; WANT_TORCHVISION="" ;;
  *) echo "OPENCLIP_TORCH must be 'full' or 'light' (got '$MODE')" >&2; exit 2 ;;
esac

log() { printf '[setup_openclip_venv] %s\n' "$*" >&2; }

# --- the venv itself
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  log "creating venv at $VENV with $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
VPIP=("$VPY" -m pip --disable-pip-version-check)

# --- is it complete?
# Prints the versions as JSON; succeeds only when every wanted version is installed
# and open_clip's CLIP and losses import the way openclip_step.py imports them.
check_env() {
  BENCHMARKS="$BENCHMARKS" WANT_TORCH="$WANT_TORCH" WANT_TORCHVISION="$WANT_TORCHVISION" \
  WANT_OPENCLIP="$OPENCLIP_VERSION" WANT_TIMM="$TIMM_VERSION" MODE="$MODE" \
  "$VPY" - <<'EOF'
import importlib.metadata
import json
import os
import sys


def version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


want_torch, want_torchvision, want_open_clip, want_timm, mode = (
    os.environ[name] for name in ("WANT_TORCH", "WANT_TORCHVISION", "WANT_OPENCLIP", "WANT_TIMM", "MODE"))
info = {"python": sys.version.split()[0], "mode": mode,
        "torch": version("torch"), "torchvision": version("torchvision"),
        "open_clip_torch": version("open_clip_torch"), "timm": version("timm"), "numpy": version("numpy")}
torch_version = info["torch"] or ""
complete = (torch_version.split("+")[0] == want_torch and info["open_clip_torch"] == want_open_clip
            and info["numpy"] is not None)
if mode == "full":
    complete = complete and info["torchvision"] == want_torchvision and info["timm"] == want_timm
else:
    complete = (complete and info["torchvision"] is None and info["timm"] is None
                and torch_version.endswith("+cpu"))
if complete:
    try:
        import torch

        info["torch_cuda_build"] = torch.version.cuda
        info["mkldnn"] = torch.backends.mkldnn.is_available()
        sys.path.insert(0, os.environ["BENCHMARKS"])
        from openclip_step import import_open_clip

        open_clip, info["torchvision_import"] = import_open_clip()
        from open_clip.loss import ClipLoss, SigLipLoss  # noqa: F401
        from open_clip.model import CLIP  # noqa: F401

        info["open_clip"] = open_clip.__version__
    except (Exception, SystemExit) as error:  # Reported; the caller then installs.
        info["import_error"] = f"{type(error).__name__}: {error}"
        complete = False
print(json.dumps(info))
sys.exit(0 if complete else 1)
EOF
}

if report=$(check_env 2>/dev/null); then
  log "venv already complete, nothing to install"
  echo "$report"
  du -sh "$VENV" 2>/dev/null | awk '{print "[setup_openclip_venv] venv size: "$1}' >&2
  exit 0
fi

# --- installing
CONSTRAINTS="$(mktemp)"
REPORT="$(mktemp)"
trap 'rm -f "$CONSTRAINTS" "$REPORT"' EXIT
# Pinned as constraints too, so that no requirement can pull in another torch.
echo "torch==$WANT_TORCH" > "$CONSTRAINTS"
if [ -n "$WANT_TORCHVISION" ]; then echo "torchvision==$WANT_TORCHVISION" >> "$CONSTRAINTS"; fi
echo "timm==$TIMM_VERSION" >> "$CONSTRAINTS"   # a constraint only: light mode installs no timm

if [ "$MODE" = full ]; then
  PACKAGES=("torch==$WANT_TORCH" "torchvision==$WANT_TORCHVISION" "open_clip_torch==$OPENCLIP_VERSION" numpy)
  NO_DEPS_PACKAGES=()
else
  PACKAGES=("torch==$WANT_TORCH" "${LIGHT_DEPENDENCIES[@]}")
  NO_DEPS_PACKAGES=("open_clip_torch==$OPENCLIP_VERSION")
fi

# Resolve first, and stop before a multi-GB download unless it is allowed.
log "resolving: ${PACKAGES[*]} ${NO_DEPS_PACKAGES[*]}"
"${VPIP[@]}" install --dry-run --quiet --prefer-binary -c "$CONSTRAINTS" --report "$REPORT" "${PACKAGES[@]}"
MODE="$MODE" ALLOW="${OPENCLIP_ALLOW_DOWNLOAD:-0}" "$VPY" - "$REPORT" <<'EOF'
import json
import os
import re
import sys

with open(sys.argv[1]) as file:
    install = json.load(file).get("install", [])
# Wheels of 50 MB or more; small helpers and pure-Python packages may come from an index.
large = re.compile(
    r"^(torch|torchvision|triton|nvidia-(cublas|cudnn|cufft|cusolver|cusparse|nccl|nvshmem|cuda-nvrtc|curand).*)$")
refused, remote = [], []
for item in install:
    name = item["metadata"]["name"].lower().replace("_", "-")
    release = item["metadata"]["version"]
    url = item["download_info"]["url"]
    if not url.startswith("file:"):
        remote.append(f"{name}=={release}")
        if large.match(name):
            refused.append(f"{name}=={release} from {url}")
    if name == "torch" and os.environ["MODE"] == "light" and not release.endswith("+cpu"):
        refused.append(f"light mode needs torch's +cpu build, pip resolved torch {release}")
print(f"[setup_openclip_venv] {len(install)} packages to install, "
      f"{len(remote)} from a remote index: {' '.join(remote) or '-'}", file=sys.stderr)
if refused and os.environ["ALLOW"] != "1":
    print("[setup_openclip_venv] stopping: these would be downloaded (OPENCLIP_ALLOW_DOWNLOAD=1 allows it):",
          *refused, sep="\n  ", file=sys.stderr)
    sys.exit(3)
EOF

log "installing (mode=$MODE)"
if [ "$MODE" = light ]; then
  # Left over from a full install, torchvision and timm would be imported beside the +cpu torch and fail.
  for distribution in torchvision timm; do
    if "${VPIP[@]}" show -q "$distribution" >/dev/null 2>&1; then "${VPIP[@]}" uninstall -y -q "$distribution"; fi
  done
fi
# pip's output goes to stderr, so that stdout ends with the JSON report alone.
"${VPIP[@]}" install --prefer-binary -c "$CONSTRAINTS" "${PACKAGES[@]}" >&2
if [ "${#NO_DEPS_PACKAGES[@]}" -gt 0 ]; then
  "${VPIP[@]}" install --prefer-binary --no-deps "${NO_DEPS_PACKAGES[@]}" >&2
fi

if ! report=$(check_env); then
  log "installed, but the environment check failed:"
  echo "$report"
  exit 1
fi
echo "$report"
du -sh "$VENV" 2>/dev/null | awk '{print "[setup_openclip_venv] venv size: "$1}' >&2
