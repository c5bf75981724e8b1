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
