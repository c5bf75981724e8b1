"""Quickstart: train a tiny 3T model on generated data and watch its losses fall.

Runs on any backend (KERAS_BACKEND=tensorflow|jax|torch) in about a minute on
two CPU cores, with nothing to download:

1. "pretrain" a small CNN to classify the colour of the square in toy images:
   the stand-in for the pretrained image classifier that 3T's third tower is;
2. freeze it as the third tower of a 3T model whose image tower (a ViT) and
   text tower (a transformer) start from scratch;
3. train with model.fit, printing the per-pair losses each epoch, then
   report image→text recall@1 on a held-out batch and save the model.

    python recipes/quickstart.py [--epochs 10] [--objective 3t|clip] [--output runs/quickstart]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_3t.datasets import toy  # noqa: E402
from keras_3t.datasets import toy_batch  # noqa: E402

IMAGE_SIZE = 16
EMBEDDING_DIM = 32
BATCH_SIZE = 64


def pretrained_colour_classifier(seed):
    """A small CNN trained to name the square's colour; returns its backbone."""
    backbone = keras.Sequential(
        [
            keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
        ],
        name="colour_cnn",
    )
    classifier = keras.Sequential([backbone, keras.layers.Dense(len(toy.PALETTE))])
    classifier.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    data = toy_batch(2048, image_size=IMAGE_SIZE, seed=seed)
    colours = data["token_ids"][:, 0] - 1  # the caption's first token
    history = classifier.fit(
        data["images"], colours, batch_size=BATCH_SIZE, epochs=3, verbose=0
    )
    print(f"pretrained colour classifier: accuracy {history.history['accuracy'][-1]:.3f}")
    return backbone


class PrintPairLosses(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        pairs = [k for k in ("loss_image_text", "loss_image_third", "loss_text_third") if k in logs]
        print(
            f"epoch {epoch + 1:2d}  loss {logs['loss']:.3f}  "
            + "  ".join(f"{k[5:]} {logs[k]:.3f}" for k in pairs)
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--objective", choices=["3t", "clip"], default="3t")
    parser.add_argument("--output", default="runs/quickstart")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    print(f"backend: {keras.backend.backend()}")

    third_backbone = None
    if args.objective == "3t":
        third_backbone = pretrained_colour_classifier(seed=args.seed + 100)
    model = toy.build_model(args.objective, third_backbone, IMAGE_SIZE, EMBEDDING_DIM)
    train = toy_batch(BATCH_SIZE * 16, image_size=IMAGE_SIZE, seed=args.seed + 1)
    steps = args.epochs * 16
    model.compile(learning_rate=2e-3, warmup_steps=steps // 10, total_steps=steps)
    print(f"chance-level loss log({BATCH_SIZE}) = {np.log(BATCH_SIZE):.3f}")
    model.fit(
        train,
        batch_size=BATCH_SIZE,
        epochs=args.epochs,
        verbose=0,
        callbacks=[PrintPairLosses()],
    )

    test = toy_batch(BATCH_SIZE, image_size=IMAGE_SIZE, seed=args.seed + 2)
    text = {"token_ids": test["token_ids"], "padding_mask": test["padding_mask"]}
    similarity = keras.ops.convert_to_numpy(
        keras.ops.matmul(
            model.encode_image(test["images"]),
            keras.ops.transpose(model.encode_text(text)),
        )
    )
    recall = np.mean(similarity.argmax(axis=1) == np.arange(BATCH_SIZE))
    print(
        f"held-out image→text recall@1 over {BATCH_SIZE} captions: {recall:.3f} "
        f"(chance {1 / BATCH_SIZE:.3f})"
    )
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, f"{args.objective}_{keras.backend.backend()}.keras")
    model.save(path)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
