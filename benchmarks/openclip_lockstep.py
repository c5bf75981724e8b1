"""open_clip's CLIP training step, timed one step at a time on command.

Run by benchmarks/train_step.py (in the open_clip virtual environment) so
that open_clip's steps and keras-3t's alternate, one at a time, on one
machine: the orchestrator writes `step` on this process's stdin, this
process runs one turn of training steps (`--turn-steps`, see
`train_step.timed_turn`) and answers with one JSON line; at the end of its
input it prints its summary (median step time, peak RSS). Nothing else
runs meanwhile, so ratios compare steps taken moments apart, not processes
run minutes apart.

The model, batch, loss and optimizer are those of
benchmarks/openclip_step.py (imported from beside this script, or from
`--open-clip-step`): open_clip's `CLIP` from the same config, `ClipLoss`,
torch's AdamW with open_clip's weight-decay groups, the logit scale clamped
after each step; the step is the body of open_clip's `train_one_epoch`.
"""

import argparse
import importlib.util
import json
import math
import os
import resource
import statistics

# This script's folder is first on sys.path: the lockstep protocol and the
# turn's timing are train_step.py's (which imports only the standard
# library at module level).
from train_step import positive_int
from train_step import serve_rounds
from train_step import timed_turn

OPENCLIP_STEP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openclip_step.py")


def load_openclip_step(path):
    spec = importlib.util.spec_from_file_location("openclip_step", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_step(args, bench):
    import torch

    torch.set_num_threads(args.threads)
    open_clip, _ = bench.import_open_clip()
    from open_clip.loss import ClipLoss
    from open_clip.model import CLIP

    config = bench.load_config(args.config)
    embed_dim, vision, text = bench.build_cfgs(config, open_clip)
    torch.manual_seed(0)
    model = CLIP(embed_dim, vision, text)
    model.train()
    groups = bench.parameter_groups(model, args.wd)
    implementation = {"foreach": {"foreach": True}, "fused": {"fused": True}}.get(
        args.adamw_impl, {}
    )
    optimizer = torch.optim.AdamW(
        groups, lr=args.lr, betas=(0.9, args.beta2), eps=args.eps, **implementation
    )
    loss_function = ClipLoss(cache_labels=True)
    generator = torch.Generator().manual_seed(1)
    size = (
        vision.image_size
        if isinstance(vision.image_size, (tuple, list))
        else (vision.image_size,) * 2
    )
    images = torch.randn(args.batch, 3, *size, generator=generator)
    tokens = torch.randint(
        1, text.vocab_size, (args.batch, text.context_length), generator=generator
    )

    def step():
        optimizer.zero_grad(set_to_none=True)
        image_features, text_features, logit_scale = model(images, tokens)[:3]
        loss = loss_function(image_features, text_features, logit_scale)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        return loss.item()

    return step, {"open_clip": open_clip.__version__, "torch": torch.__version__}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--open-clip-step",
        default=OPENCLIP_STEP,
        help="path of open_clip's step timer (default: openclip_step.py beside this script)",
    )
    parser.add_argument(
        "--config", required=True, help="JSON string or file (openclip_step.py's format)"
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--beta2", type=float, default=0.98)
    parser.add_argument("--eps", type=float, default=1e-6)
    parser.add_argument("--wd", type=float, default=0.2)
    parser.add_argument("--adamw-impl", choices=("default", "foreach", "fused"), default="foreach")
    parser.add_argument("--turn-steps", type=positive_int, default=1)
    args = parser.parse_args()
    step, versions = build_step(args, load_openclip_step(args.open_clip_step))
    for _ in range(args.warmup):
        step()
    times = []
    serve_rounds(lambda: times.append(timed_turn(step, args.turn_steps)))
    median = statistics.median(times)
    print(
        json.dumps(
            {
                "batch": args.batch,
                "threads": args.threads,
                "median_step_s": median,
                "samples_per_s": args.batch / median,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "optimizer": f"torch.optim.AdamW ({args.adamw_impl})",
                "versions": versions,
                "turn_steps": args.turn_steps,
                "step_times_s": times,
            }
        )
    )


if __name__ == "__main__":
    main()
