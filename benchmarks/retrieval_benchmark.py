"""Retrieval recall@k: time and peak memory against the matmul floor.

For each N, random L2-normalised float32 embeddings (N images, d = 512, one
caption per image) are scored by `keras_3t.evaluation.retrieval_metrics`
and, in the same process, by the floor: the same block schedule doing only
the N×N×d matrix products. Each N runs in a fresh subprocess so that its
peak memory (resident set size sampled every 5 ms during the call, minus
the size just before it) is its own.

With `--max-texts M`, both runs score the first M captions against all N
images (cost ∝ M × N) and the full-N time is extrapolated linearly.

    KERAS_BACKEND=jax python benchmarks/retrieval_benchmark.py \\
        --sizes 10000 100000 1000000 --max-texts 16384
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _rss_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class PeakMemory:
    """Samples the resident set size in a thread; `.extra` is the peak rise."""

    def __enter__(self):
        self.start = self.peak = _rss_bytes()
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while self._running:
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
        self.extra = self.peak - self.start


def _normalized_embeddings(rng, count, dim, chunk=65536):
    embeddings = rng.standard_normal((count, dim), dtype="float32")
    for start in range(0, count, chunk):
        block = embeddings[start : start + chunk]
        block /= (block * block).sum(axis=1, keepdims=True) ** 0.5
    return embeddings


def measure(num_images, num_texts, dim, block_size):
    import numpy as np
    from keras import ops

    from keras_3t.evaluation import retrieval_metrics
    from keras_3t.evaluation.retrieval import blocks

    rng = np.random.default_rng(0)
    images = _normalized_embeddings(rng, num_images, dim)
    texts = images[:num_texts] + 0.5 * _normalized_embeddings(rng, num_texts, dim)
    text_to_image = np.arange(num_texts)
    retrieval_metrics(
        images[:block_size], texts[:block_size], text_to_image[:block_size]
    )  # warm-up

    with PeakMemory() as memory:
        start = time.perf_counter()
        metrics = retrieval_metrics(images, texts, text_to_image, block_size=block_size)
        retrieval_seconds = time.perf_counter() - start

    start = time.perf_counter()
    for t_start, t_stop in blocks(num_texts, block_size):
        text_block = ops.convert_to_tensor(texts[t_start:t_stop], "float32")
        for i_start, i_stop in blocks(num_images, block_size):
            image_block = ops.convert_to_tensor(images[i_start:i_stop], "float32")
            scores = ops.matmul(text_block, ops.transpose(image_block))
            ops.convert_to_numpy(scores[0, 0])  # wait for the product
    floor_seconds = time.perf_counter() - start
    return {
        "num_images": num_images,
        "num_texts": num_texts,
        "floor_seconds": floor_seconds,
        "retrieval_seconds": retrieval_seconds,
        "extra_memory_mib": memory.extra / 2**20,
        "input_mib": (images.nbytes + texts.nbytes) / 2**20,
        "text_to_image_r1": metrics["text_to_image_r1"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--block-size", type=int, default=4096)
    parser.add_argument(
        "--max-texts",
        type=int,
        default=None,
        help="score only this many captions; extrapolate time to all N",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--single", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.single:
        print(json.dumps(measure(*args.single, args.dim, args.block_size)))
        return

    import keras

    results = []
    for size in args.sizes:
        num_texts = min(size, args.max_texts or size)
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--single",
                str(size),
                str(num_texts),
                "--dim",
                str(args.dim),
                "--block-size",
                str(args.block_size),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))

    print(f"backend {keras.backend.backend()}, d = {args.dim}, block {args.block_size}")
    print(
        "| N | captions scored | floor (s) | recall@k (s) | ratio | "
        "full-N floor (s) | full-N recall@k (s) | extra memory (MiB) | inputs (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        scale = r["num_images"] / r["num_texts"]
        extrapolated = scale != 1
        full_floor = f"{r['floor_seconds'] * scale:.0f} (extrapolated)" if extrapolated else "—"
        full_retrieval = (
            f"{r['retrieval_seconds'] * scale:.0f} (extrapolated)" if extrapolated else "—"
        )
        print(
            f"| {r['num_images']:,} | {r['num_texts']:,} | {r['floor_seconds']:.2f} | "
            f"{r['retrieval_seconds']:.2f} | {r['retrieval_seconds'] / r['floor_seconds']:.2f} | "
            f"{full_floor} | {full_retrieval} | {r['extra_memory_mib']:.0f} | "
            f"{r['input_mib']:.0f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
