"""Input pipeline throughput against the 3t_vitb16 training step, same process.

Writes `--images` 256×256 JPEG images with captions as TFRecords (the
package's format, `keras_3t.data.write_tfrecords`), then measures:

- **pipeline**: examples/s of `keras_3t.data.make_dataset` in training mode
  (decode, random resized crop to 224×224, tokenize, batch, prefetch),
  iterated alone, after one warm-up batch;
- **training**: examples/s of `fit` steps of the `3t_vitb16` preset (built
  with fresh weights, no download) on ready-made batches of the same size,
  after one warm-up step;
- **ratio** = pipeline / training: above 1, the input pipeline is not what
  limits training.

    KERAS_BACKEND=jax python benchmarks/input_pipeline_benchmark.py --batch-size 8
"""

import argparse
import io
import json
import os
import tarfile
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_3t  # noqa: E402
from keras_3t import data  # noqa: E402
from keras_3t.preprocessing import ThreeTowerPreprocessor  # noqa: E402
from keras_3t.preprocessing import caption_tokenizer  # noqa: E402
from keras_3t.preprocessing import caption_vocabulary  # noqa: E402

WORDS = "a photo of the red blue green dog cat car tree house on in near small large".split()


def synthetic_examples(count, seed=0):
    """Smooth random images (gradients plus noise), 256×256, with captions."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:256, 0:256] / 255.0
    images, captions = [], []
    for _ in range(count):
        colour = rng.uniform(size=(3,))
        image = colour * (0.5 + 0.5 * np.stack([x, y, 1 - x], -1)) + rng.normal(
            0, 0.05, (256, 256, 3)
        )
        images.append(
            tf.io.encode_jpeg((np.clip(image, 0, 1) * 255).astype("uint8"), quality=90).numpy()
        )
        captions.append(" ".join(rng.choice(WORDS, size=rng.integers(5, 15))))
    return tf.data.Dataset.from_tensor_slices(
        {"image": images, "caption": captions, "image_id": np.arange(count)}
    ), captions


def write_webdataset_shards(folder, count, shard_size, seed=0):
    """`count` synthetic examples as webdataset tars of `shard_size`, as img2dataset writes them.

    Consecutive keys fill each shard; beside each image go its caption and
    img2dataset's metadata. Returns the shards' brace pattern.
    """
    examples, _ = synthetic_examples(count, seed)
    os.makedirs(folder, exist_ok=True)
    shards = -(-count // shard_size)
    tar = None
    for key, example in enumerate(examples.as_numpy_iterator()):
        if key % shard_size == 0:
            if tar is not None:
                tar.close()
            tar = tarfile.open(os.path.join(folder, f"{key // shard_size:05d}.tar"), "w")
        caption = example["caption"]
        metadata = {"key": f"{key:09d}", "caption": caption.decode(), "status": "success"}
        metadata.update(width=256, height=256, original_width=256, original_height=256)
        for extension, payload in (
            ("jpg", example["image"]),
            ("txt", caption),
            ("json", json.dumps(metadata).encode()),
        ):
            info = tarfile.TarInfo(f"{key:09d}.{extension}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    tar.close()
    return os.path.join(folder, f"{{00000..{shards - 1:05d}}}.tar")


def pipeline_rate(records, preprocessor, batch_size, batches):
    dataset = data.make_dataset(data.from_tfrecords(records), preprocessor, 224, batch_size, seed=0)
    iterator = iter(dataset)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def training_rate(batch_size, steps):
    model = keras_3t.presets.load(
        "3t_vitb16", weights=False, third_tower_weights=False, preprocessor=False
    )
    rng = np.random.default_rng(0)
    length = model.text_tower.sequence_length
    batch = {
        "images": rng.uniform(size=(batch_size, 224, 224, 3)).astype("float32"),
        "token_ids": rng.integers(1, model.text_tower.vocabulary_size, (batch_size, length)).astype(
            "int32"
        ),
        "padding_mask": np.ones((batch_size, length), bool),
    }
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--pipeline-batches", type=int, default=40)
    parser.add_argument("--train-steps", type=int, default=3)
    args = parser.parse_args()

    examples, captions = synthetic_examples(args.images)
    records = os.path.join(tempfile.mkdtemp(), "records")
    data.write_tfrecords(examples, records, num_shards=8)
    preprocessor = ThreeTowerPreprocessor(caption_tokenizer(caption_vocabulary(captions, 100)), 64)
    pipeline = pipeline_rate(records, preprocessor, args.batch_size, args.pipeline_batches)
    training = training_rate(args.batch_size, args.train_steps)
    result = {
        "backend": keras.backend.backend(),
        "batch_size": args.batch_size,
        "pipeline_examples_per_s": round(pipeline, 1),
        "training_examples_per_s": round(training, 2),
        "ratio": round(pipeline / training, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
