"""Image folders and caption files that the data tests read."""

import csv
import json
import os

import numpy as np
import tensorflow as tf

from tests.helpers import TOY_WORDS


def write_images(folder, count, seed=0):
    """PNG files of random sizes; returns their names and pixel arrays."""
    rng = np.random.default_rng(seed)
    names, pixels = [], []
    for i in range(count):
        image = rng.integers(0, 256, size=(20 + 3 * i, 24 + 2 * i, 3), dtype=np.uint8)
        name = f"image_{i}.png"
        with open(os.path.join(folder, name), "wb") as file:
            file.write(tf.io.encode_png(image).numpy())
        names.append(name)
        pixels.append(image)
    return names, pixels


def caption_rows(names):
    # Two captions for the first image: rows naming one image share its id.
    rows = [(name, f"a {TOY_WORDS[1 + i % 5]} square") for i, name in enumerate(names)]
    return rows + [(names[0], "a green circle")]


def write_csv(path, rows):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "caption"])
        writer.writerows(rows)


def write_jsonl(path, rows):
    with open(path, "w") as file:
        for image, caption in rows:
            file.write(json.dumps({"image": image, "caption": caption}) + "\n")


# A user's own captions: ordinary words, with the letters j, k, q, x, y and
# z that the digit presets' vocabulary lacks. Each word occurs 16 times, so
# a vocabulary built from them keeps every word whole.
ADJECTIVES = ("quick", "lazy", "fuzzy", "brown")
ANIMALS = ("fox", "yak", "zebra", "jackal")
VERBS = ("jumps", "sleeps", "jogs", "kicks")
OWN_CAPTIONS = [f"a {ADJECTIVES[i % 4]} {ANIMALS[i // 4 % 4]} {VERBS[i // 16]}" for i in range(64)]


def write_own_captions(folder):
    """Eight PNG files and `captions.csv` giving them `OWN_CAPTIONS`; returns its path."""
    rows = []
    for i, caption in enumerate(OWN_CAPTIONS):
        name = f"{i % 8}.png"
        if i < 8:
            pixels = np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8)
            with open(os.path.join(folder, name), "wb") as file:
                file.write(tf.io.encode_png(pixels).numpy())
        rows.append((name, caption))
    path = os.path.join(folder, "captions.csv")
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows([("image", "caption"), *rows])
    return path
