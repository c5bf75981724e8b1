#!/usr/bin/env python3
"""open_clip's side of the training-step benchmarks: its CLIP step timed on CPU, or its losses.

Run with the python of the open_clip virtual environment that
benchmarks/setup_openclip_venv.sh makes, e.g. from the repository root:

    .venv-openclip/bin/python benchmarks/openclip_step.py --config benchmarks/configs/tiny.json

Step mode (the default) builds open_clip's `CLIP` with random weights from
`--config` and times whole training steps on one fixed random batch, as
open_clip's `train_one_epoch` takes them: zero the gradients, run both
towers (features L2-normalised), `ClipLoss` (`--loss siglip`: `SigLipLoss`)
with the model's own logit scale (and bias), backward, AdamW step, clamp of
the logit scale to [0, log 100]. It prints one JSON line: median, minimum
and mean step time after `--warmup` untimed steps, samples/s, the median of
each phase (forward + loss, backward, optimizer), the parameters of each
tower, the versions and every timed step.

    .venv-openclip/bin/python benchmarks/openclip_step.py --config '{"embed_dim": 32,
        "vision": {"image_size": 32, "patch_size": 4, "width": 64, "layers": 2, "heads": 2, "mlp_ratio": 4},
        "text": {"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 2, "layers": 2}}' \\
        --batch 64 --threads 2 --warmup 3 --steps 20

The config is a JSON string or the path of a JSON file (the sizes in
benchmarks/configs/). "vision" takes image_size, patch_size, width, layers,
heads and mlp_ratio; open_clip's ViT has no head count, so heads becomes its
head_width = width // heads. "text" takes context_length, vocab_size,
width, heads and layers (mlp_ratio 4 unless given). Any other field of
open_clip's CLIPVisionCfg / CLIPTextCfg may be added to those two objects;
the top-level keys "quick_gelu", "init_logit_scale" and "init_logit_bias"
are passed to CLIP(). open_clip's own names "vision_cfg" and "text_cfg" are
accepted for the two towers.

Loss mode (`--loss-only`) prints open_clip's `ClipLoss` and `SigLipLoss` of
two [N, D] arrays of paired embeddings (row i of each is a positive pair),
in `--dtype` and in float64, for comparing keras-3t's losses with them:

    .venv-openclip/bin/python benchmarks/openclip_step.py --loss-only \\
        --image-emb images.npy --text-emb texts.npy --logit-scale 10.0 --logit-bias -10.0 \\
        [--normalize] [--dtype float32]

`--logit-scale` is the factor applied to the cosine similarities (what
CLIP.forward returns: the exponential of the trained parameter);
`--logit-scale-log` gives the parameter instead. The loss functions do not
normalise their inputs (the model does, before them); `--normalize` does.

The architecture keras-3t's side must match (open_clip's defaults): pre-LN
blocks, exact GELU, LayerNorm epsilon 1e-5, fused q/k/v projections with
biases, MLP ratio 4; a ViT with a bias-free convolutional patch embedding,
class token, learned position embedding, `ln_pre` and `ln_post`, class-token
pooling and a bias-free projection; a causal text transformer with
`ln_final`, pooled at the position of the largest token id, with a bias-free
projection; the logit scale initialised to log(1 / 0.07).
"""

import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
import types

# --- importing open_clip ------------------------------------------------------


class _Placeholder(type):
    """A class standing in for a torchvision name.

    Reading any attribute gives another placeholder, so that module-level
    expressions such as `InterpolationMode.BICUBIC` in a default argument
    evaluate; calling one raises.
    """

    def __getattr__(cls, attribute):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return _Placeholder(f"{cls.__name__}.{attribute}", (), {"__module__": cls.__module__})

    def __call__(cls, *args, **kwargs):
        raise RuntimeError(
            f"{cls.__module__}.{cls.__name__} is a placeholder: torchvision is not installed"
        )


def _register_torchvision_placeholders():
    """Registers placeholder torchvision modules in `sys.modules`.

    open_clip 3.3.0 imports torchvision names when its modules load
    (`FrozenBatchNorm2d` in `open_clip.utils`, the transforms in
    `open_clip.transform`), none of which training from tensors calls. The
    setup script's light mode installs a +cpu torch, for which no matching
    torchvision wheel exists, so there these modules take its place.
    """

    def module(name):
        placeholder_module = types.ModuleType(name)
        placeholder_module.__path__ = []
        placeholder_module.__version__ = "placeholder"

        def __getattr__(attribute, _name=name):
            if attribute.startswith("__"):
                raise AttributeError(attribute)
            placeholder = _Placeholder(attribute, (), {"__module__": _name})
            setattr(sys.modules[_name], attribute, placeholder)
            return placeholder

        placeholder_module.__getattr__ = __getattr__
        sys.modules[name] = placeholder_module
        return placeholder_module

    torchvision = module("torchvision")
    torchvision.ops = module("torchvision.ops")
    torchvision.ops.misc = module("torchvision.ops.misc")
    torchvision.transforms = module("torchvision.transforms")
    torchvision.transforms.functional = module("torchvision.transforms.functional")


def import_open_clip():
    """Imports open_clip; returns it and a description of the torchvision it runs with."""
    try:
        import torchvision

        torchvision_version = torchvision.__version__
    except ModuleNotFoundError:
        _register_torchvision_placeholders()
        torchvision_version = "absent (placeholder modules)"
    except (
        Exception
    ) as error:  # Installed but not importable, e.g. a CUDA build beside a +cpu torch.
        raise SystemExit(
            f"torchvision is installed but does not import ({type(error).__name__}: {error}).\n"
            "Its build does not match this torch: install the matching pair, or uninstall "
            "torchvision (placeholder modules then take its place)."
        )
    import open_clip

    return open_clip, torchvision_version


# --- the model's configuration ------------------------------------------------

VISION_KEYS = ("vision", "vision_cfg")
TEXT_KEYS = ("text", "text_cfg")
MODEL_KEYS = ("quick_gelu", "init_logit_scale", "init_logit_bias")


def load_config(config):
    """The config given as a JSON string, a JSON file's path, or `@` and a path."""
    if os.path.isfile(config):
        with open(config) as file:
            return json.load(file)
    if config.startswith("@"):
        with open(config[1:]) as file:
            return json.load(file)
    return json.loads(config)


def _tower(config, keys, tower):
    present = [key for key in keys if key in config]
    if len(present) != 1:
        raise SystemExit(f"config needs exactly one of {keys} for the {tower} tower, got {present}")
    return dict(config[present[0]])


def build_cfgs(config, open_clip):
    """open_clip's (embed_dim, CLIPVisionCfg, CLIPTextCfg) for a config."""
    from dataclasses import fields

    from open_clip.model import CLIPTextCfg
    from open_clip.model import CLIPVisionCfg

    if "embed_dim" not in config:
        raise SystemExit("config needs 'embed_dim'")
    vision = _tower(config, VISION_KEYS, "vision")
    text = _tower(config, TEXT_KEYS, "text")
    unknown = set(config) - {"embed_dim", *VISION_KEYS, *TEXT_KEYS, *MODEL_KEYS}
    if unknown:
        raise SystemExit(
            f"unknown top-level config keys {sorted(unknown)}; "
            f"allowed: embed_dim, vision, text, {', '.join(MODEL_KEYS)}"
        )

    # open_clip's ViT takes the width of a head, not the number of heads.
    if "heads" in vision:
        heads = int(vision.pop("heads"))
        width = int(vision.get("width", CLIPVisionCfg.width))
        if width % heads:
            raise SystemExit(f"vision width {width} is not divisible by heads {heads}")
        head_width = width // heads
        if "head_width" in vision and int(vision["head_width"]) != head_width:
            raise SystemExit(f"vision heads={heads} and head_width={vision['head_width']} disagree")
        vision["head_width"] = head_width

    for tower, values, config_class in (
        ("vision", vision, CLIPVisionCfg),
        ("text", text, CLIPTextCfg),
    ):
        allowed = {field.name for field in fields(config_class)}
        unknown = set(values) - allowed
        if unknown:
            raise SystemExit(
                f"unknown {tower} keys {sorted(unknown)}; open_clip's {config_class.__name__} "
                f"fields are: {', '.join(sorted(allowed))}"
            )
    return config["embed_dim"], CLIPVisionCfg(**vision), CLIPTextCfg(**text)


# --- step mode ----------------------------------------------------------------


def count(parameters):
    return int(sum(parameter.numel() for parameter in parameters))


def parameter_groups(model, weight_decay):
    """AdamW groups as open_clip's training script makes them: no weight decay
    on gains, biases and the logit scale."""

    def exclude(name, parameter):
        return (
            parameter.ndim < 2
            or "bn" in name
            or "ln" in name
            or "bias" in name
            or "logit_scale" in name
        )

    named = [
        (name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad
    ]
    return [
        {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": weight_decay},
    ]


def run_steps(args):
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    if args.interop_threads:
        torch.set_num_interop_threads(args.interop_threads)
    open_clip, torchvision_version = import_open_clip()
    from open_clip.loss import ClipLoss
    from open_clip.loss import SigLipLoss
    from open_clip.model import CLIP

    config = load_config(args.config)
    embed_dim, vision, text = build_cfgs(config, open_clip)
    model_kwargs = {key: config[key] for key in MODEL_KEYS if key in config}
    if args.loss == "siglip":  # What open_clip's model factory sets for SigLIP models.
        model_kwargs.setdefault("init_logit_scale", math.log(10))
        model_kwargs.setdefault("init_logit_bias", -10.0)

    torch.manual_seed(args.seed)
    started = time.perf_counter()
    model = CLIP(embed_dim, vision, text, **model_kwargs)
    model.train()
    build_s = time.perf_counter() - started

    # CLIP holds the text tower's modules at its top level: the text tower is
    # what is neither the image tower nor the logit scale and bias.
    vision_parameters = count(model.visual.parameters())
    logit_parameters = count(
        [model.logit_scale] + ([model.logit_bias] if model.logit_bias is not None else [])
    )
    total_parameters = count(model.parameters())
    text_parameters = total_parameters - vision_parameters - logit_parameters

    groups = parameter_groups(model, args.wd)
    optimizer_kwargs = dict(lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)
    if args.adamw_impl == "foreach":
        optimizer_kwargs["foreach"] = True
    elif args.adamw_impl == "fused":
        optimizer_kwargs["fused"] = True
    optimizer = torch.optim.AdamW(groups, **optimizer_kwargs)

    loss_function = ClipLoss(cache_labels=True) if args.loss == "clip" else SigLipLoss()

    generator = torch.Generator().manual_seed(args.seed + 1)
    size = (
        vision.image_size
        if isinstance(vision.image_size, (tuple, list))
        else (vision.image_size,) * 2
    )
    images = torch.randn(args.batch, 3, *size, generator=generator)
    # Random token ids: the text tower pools at the position of each row's largest id.
    tokens = torch.randint(
        1, text.vocab_size, (args.batch, text.context_length), generator=generator
    )

    def step(marks):
        optimizer.zero_grad(set_to_none=True)
        outputs = model(images, tokens)
        if args.loss == "clip":
            loss = loss_function(outputs[0], outputs[1], outputs[2])
        else:
            loss = loss_function(outputs[0], outputs[1], outputs[2], outputs[3])
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        value = loss.item()
        marks.append(time.perf_counter())
        return value

    # On a CPU every operation has finished when it returns, so the marks
    # between the phases time them exactly.
    times, losses = [], []
    phases = {"forward_loss": [], "backward": [], "optimizer": []}
    for index in range(args.warmup + args.steps):
        marks = [time.perf_counter()]
        losses.append(step(marks))
        if index >= args.warmup:
            times.append(marks[3] - marks[0])
            for phase, (start, end) in zip(phases, zip(marks, marks[1:])):
                phases[phase].append(end - start)

    median = statistics.median(times)
    best = min(times)
    print(
        json.dumps(
            {
                "bench": "openclip_step",
                "name": args.name,
                "loss": args.loss,
                "batch": args.batch,
                "threads": args.threads,
                "interop_threads": torch.get_num_interop_threads(),
                "warmup": args.warmup,
                "steps": args.steps,
                "median_step_s": round(median, 6),
                "min_step_s": round(best, 6),
                "mean_step_s": round(statistics.fmean(times), 6),
                "max_step_s": round(max(times), 6),
                "samples_per_s": round(args.batch / median, 3),
                "samples_per_s_best": round(args.batch / best, 3),
                "phase_median_s": {
                    phase: round(statistics.median(values), 6) for phase, values in phases.items()
                },
                "params": {
                    "vision": vision_parameters,
                    "text": text_parameters,
                    "logit": logit_parameters,
                    "total": total_parameters,
                },
                "loss_first": losses[0],
                "loss_last": losses[-1],
                "build_s": round(build_s, 3),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "optimizer": {
                    "name": "AdamW",
                    "impl": args.adamw_impl,
                    "lr": args.lr,
                    "betas": [args.beta1, args.beta2],
                    "eps": args.eps,
                    "wd": args.wd,
                },
                "config": config,
                "open_clip_cfg": {
                    "embed_dim": embed_dim,
                    "vision_head_width": vision.head_width,
                    "vision_mlp_ratio": vision.mlp_ratio,
                    "text_mlp_ratio": text.mlp_ratio,
                    "quick_gelu": bool(model_kwargs.get("quick_gelu", False)),
                },
                "versions": {
                    "open_clip": open_clip.__version__,
                    "torch": torch.__version__,
                    "torchvision": torchvision_version,
                    "numpy": np.__version__,
                    "python": platform.python_version(),
                },
                "step_times_s": [round(t, 6) for t in times],
            }
        )
    )


# --- loss mode ----------------------------------------------------------------


def run_loss_only(args):
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    open_clip, torchvision_version = import_open_clip()
    from open_clip.loss import ClipLoss
    from open_clip.loss import SigLipLoss

    if (args.logit_scale is None) == (args.logit_scale_log is None):
        raise SystemExit(
            "give exactly one of --logit-scale (the factor) and --logit-scale-log (the parameter)"
        )
    scale = args.logit_scale if args.logit_scale is not None else math.exp(args.logit_scale_log)

    image_embeddings = np.load(args.image_emb)
    text_embeddings = np.load(args.text_emb)
    if image_embeddings.ndim != 2 or image_embeddings.shape != text_embeddings.shape:
        raise SystemExit(
            f"need two [N, D] arrays of one shape, got {image_embeddings.shape} and {text_embeddings.shape}"
        )

    def losses(dtype):
        images = torch.from_numpy(np.ascontiguousarray(image_embeddings)).to(dtype)
        texts = torch.from_numpy(np.ascontiguousarray(text_embeddings)).to(dtype)
        if args.normalize:
            images = torch.nn.functional.normalize(images, dim=-1)
            texts = torch.nn.functional.normalize(texts, dim=-1)
        logit_scale = torch.tensor(scale, dtype=dtype)
        logit_bias = None if args.logit_bias is None else torch.tensor(args.logit_bias, dtype=dtype)
        with torch.no_grad():
            clip = ClipLoss()(images, texts, logit_scale).item()
            # SigLipLoss adds a bias only when one is given.
            siglip = SigLipLoss()(images, texts, logit_scale, logit_bias).item()
        return clip, siglip

    clip, siglip = losses(getattr(torch, args.dtype))
    clip_f64, siglip_f64 = losses(torch.float64)
    print(
        json.dumps(
            {
                "bench": "openclip_loss",
                "n": int(image_embeddings.shape[0]),
                "dim": int(image_embeddings.shape[1]),
                "dtype": args.dtype,
                "normalized": bool(args.normalize),
                "logit_scale": scale,
                "logit_bias": args.logit_bias,
                "clip_loss": clip,
                "siglip_loss": siglip,
                "clip_loss_f64": clip_f64,
                "siglip_loss_f64": siglip_f64,
                "versions": {
                    "open_clip": open_clip.__version__,
                    "torch": torch.__version__,
                    "torchvision": torchvision_version,
                },
            }
        )
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="JSON string or JSON file's path (step mode)")
    parser.add_argument("--name", default=None, help="a label copied into the output")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument(
        "--interop-threads",
        type=int,
        default=0,
        help="torch.set_num_interop_threads (0: torch's default)",
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before the timed ones")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss", choices=("clip", "siglip"), default="clip")
    # open_clip's training defaults for ViT models.
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--beta1", type=float, default=0.9)
    parser.add_argument("--beta2", type=float, default=0.98)
    parser.add_argument("--eps", type=float, default=1e-6)
    parser.add_argument("--wd", type=float, default=0.2)
    parser.add_argument(
        "--adamw-impl",
        choices=("default", "foreach", "fused"),
        default="default",
        help="torch's AdamW implementation ('default': torch's choice, on a CPU the for-loop one)",
    )
    parser.add_argument(
        "--loss-only",
        action="store_true",
        help="print ClipLoss and SigLipLoss of two .npy arrays of embeddings",
    )
    parser.add_argument("--image-emb", help="[N, D] .npy file of image embeddings (loss mode)")
    parser.add_argument("--text-emb", help="[N, D] .npy file of text embeddings (loss mode)")
    parser.add_argument(
        "--logit-scale",
        type=float,
        help="factor on the cosine similarities (the exponential of the parameter)",
    )
    parser.add_argument(
        "--logit-scale-log", type=float, help="the trained parameter; its exponential is applied"
    )
    parser.add_argument(
        "--logit-bias", type=float, default=None, help="SigLIP's bias (omitted: none)"
    )
    parser.add_argument(
        "--normalize", action="store_true", help="L2-normalise the embeddings first"
    )
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args(argv)

    if args.loss_only:
        if not (args.image_emb and args.text_emb):
            parser.error("--loss-only needs --image-emb and --text-emb")
        run_loss_only(args)
    else:
        if not args.config:
            parser.error("step mode needs --config")
        if args.steps < 1 or args.warmup < 0 or args.batch < 1 or args.threads < 1:
            parser.error("need --steps >= 1, --warmup >= 0, --batch >= 1, --threads >= 1")
        run_steps(args)


if __name__ == "__main__":
    main()
