"""Quickstart: train a tiny 3T model on generated data and watch its losses fall.

Runs on any backend (KERAS_BACKEND=tensorflow|jax|torch) in about a minute on
two CPU cores, with nothing to download:

1. "pretrain" a small CNN to classify the colour of the square in toy images:
   the stand-in for the pretrained image classifier that 3T's third tower is;
2. freeze it as the third tower of a 3T model whose image tower (a ViT) and
   text tower (a transformer) start from scratch;
3. train with model.fit, printing the per-pair losses each epoch;
4. evaluate on held-out data (retrieval recall@1, zero-shot and 5-shot
   colour classification) along the α combination of the main towers and
   the third tower, print the table, plot it, and save the model.

    python recipes/quickstart.py [--epochs 10] [--objective 3t|clip] [--output runs/quickstart] [--overwrite]
"""

import argparse
import os
import sys

from keras_3t.console import quiet_native_logs  # noqa: E402

# Before TensorFlow loads; KERAS_3T_VERBOSE=1 keeps its native log lines.
quiet_native_logs()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_3t.demo import toy  # noqa: E402
from keras_3t.demo.toy import toy_batch  # noqa: E402
from keras_3t.evaluation import alpha_sweep  # noqa: E402
from keras_3t.evaluation import evaluate_model  # noqa: E402
from keras_3t.evaluation import plot_alpha_sweep  # noqa: E402

IMAGE_SIZE = 16
EMBEDDING_DIM = 32
BATCH_SIZE = 64
# Reported metrics and their column titles.
COLUMNS = {
    "image_to_text_r1": "image→text R@1",
    "text_to_image_r1": "text→image R@1",
    "zero_shot_top1": "zero-shot colour top-1",
    "few_shot_5": "5-shot colour probe",
}


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
    history = classifier.fit(data["images"], colours, batch_size=BATCH_SIZE, epochs=3, verbose=0)
    print(f"pretrained colour classifier: accuracy {history.history['accuracy'][-1]:.3f}")
    return backbone


def evaluation_tasks(seed):
    """Held-out retrieval (64 distinct captions) and colour classification."""
    held_out = toy_batch(BATCH_SIZE, image_size=IMAGE_SIZE, seed=seed + 2)
    colours = held_out["token_ids"][:, 0] - 1
    probe_train = toy_batch(512, image_size=IMAGE_SIZE, seed=seed + 3)
    return dict(
        retrieval={
            "images": held_out["images"],
            "texts": {k: held_out[k] for k in ("token_ids", "padding_mask")},
            "text_to_image": np.arange(BATCH_SIZE),
        },
        zero_shot={
            "images": held_out["images"],
            "labels": colours,
            "class_names": list(toy.COLOUR_NAMES),
            "templates": ["a {} square"],
            "tokenizer": toy.tokenize,
        },
        few_shot={
            "train_images": probe_train["images"],
            "train_labels": probe_train["token_ids"][:, 0] - 1,
            "test_images": held_out["images"],
            "test_labels": colours,
            "shots": (5,),
        },
    )


def markdown_table(table):
    lines = ["| α | " + " | ".join(COLUMNS.values()) + " |"]
    lines.append("|---" * (len(COLUMNS) + 1) + "|")
    for row in table:
        lines.append(
            f"| {row['alpha']:.2f} | " + " | ".join(f"{row[k]:.3f}" for k in COLUMNS) + " |"
        )
    return "\n".join(lines)


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
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run's model and plot"
    )
    args = parser.parse_args()
    backend = keras.backend.backend()
    model_path = os.path.join(args.output, f"{args.objective}_{backend}.keras")
    plot_path = os.path.join(args.output, f"alpha_sweep_{backend}.png")
    earlier = [path for path in (model_path, plot_path) if os.path.exists(path)]
    if earlier and not args.overwrite:
        sys.exit(
            f"{earlier[0]} holds an earlier run's result; pass --overwrite or choose another --output."
        )
    keras.utils.set_random_seed(args.seed)
    print(f"backend: {backend}")

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

    os.makedirs(args.output, exist_ok=True)
    tasks = evaluation_tasks(args.seed)
    if args.objective == "3t":
        table = alpha_sweep(model, alphas=(0.0, 0.25, 0.5, 0.75, 1.0), **tasks)
        plot = plot_alpha_sweep(table, plot_path, metrics=list(COLUMNS))
        print(f"held-out evaluation along α (1: 3T, 0: third-tower path); plot: {plot}")
    else:
        table = [{"alpha": 1.0, **evaluate_model(model, **tasks)}]
        print("held-out evaluation")
    print(markdown_table(table))
    model.save(model_path)
    print(f"saved {model_path}")


if __name__ == "__main__":
    main()
