"""The embedded default's models: a keras-hub ResNet and ViT sized for
56×56 digit scenes, the shipped pretrained third towers, and CLIP / LiT / 3T
built from them. Used by the demo, `recipes/pretrain_third_tower.py` and the tests."""

import json
import os
import time

import keras
import keras_hub
import numpy as np

from keras_3t.atomic_files import staged_folder
from keras_3t.demo import digit_scenes
from keras_3t.model import ThreeTowerModel
from keras_3t.model import three_tower_presets
from keras_3t.saving.shipped import saved_models_dir
from keras_3t.towers import ImageTower
from keras_3t.towers import TextTower
from keras_3t.towers import ThirdTower

# keras-hub preset folders written by recipes/pretrain_third_tower.py.
SAVED_MODELS = saved_models_dir()
# The pretraining task (`digit_scenes.PRETRAINING_TASKS`) of each shipped
# third tower: the matched one names the digit, the mismatched one stroke
# thickness.
THIRD_TOWER_TASKS = {"matched": "digit", "mismatched": "thickness"}
EMBEDDING_DIM = three_tower_presets.DIGIT_EMBEDDING_DIM


def preset_path(task, directory=SAVED_MODELS):
    """The preset folder of the classifier pretrained on `task`."""
    return os.path.join(directory, f"{task}_classifier")


def digit_backbone():
    """A fresh keras-hub ResNet (0.3 M parameters) for 56×56×3 scenes.

    Its stem (stride-2 conv and max-pool) brings a scene to 14×14; two
    basic-block stages follow. Pretrained, it is the third tower (and LiT's
    frozen image tower).

    Example:
    >>> from keras_3t.demo.digit_models import digit_backbone
    >>> digit_backbone().output_shape
    (None, 7, 7, 128)
    """
    return keras_hub.models.ResNetBackbone(**three_tower_presets.DIGIT_RESNET)


def digit_vit(width=three_tower_presets.DIGIT_VIT["hidden_dim"]):
    """A fresh keras-hub ViT for 56×56×3 scenes: 7×7-pixel patches, 2 layers.

    Args:
        width: the hidden width (64 by default); the MLP is twice as wide.
    """
    return keras_hub.models.ViTBackbone(
        **{**three_tower_presets.DIGIT_VIT, "hidden_dim": width, "mlp_dim": 2 * width}
    )


def load_third_tower_backbone(which="matched", directory=SAVED_MODELS):
    """A shipped pretrained backbone, loaded with keras-hub `from_preset`.

    Args:
        which: `"matched"` (digit classifier) or `"mismatched"` (stroke
            thickness classifier).
        directory: the folder holding the preset folders.
    """
    if which not in THIRD_TOWER_TASKS:
        raise ValueError(f"which must be one of {sorted(THIRD_TOWER_TASKS)}; got {which!r}.")
    path = preset_path(THIRD_TOWER_TASKS[which], directory)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"No pretrained {which} third tower at {path}. The shipped ones "
            "install with keras-3t (keras_3t.saved_models); reinstall it, or "
            "remake them with "
            "`python recipes/pretrain_third_tower.py`."
        )
    return keras_hub.models.Backbone.from_preset(path)


def held_out_accuracy(classifier, task):
    """Top-1 accuracy of a pretrained classifier on held-out labelled digits.

    The held-out digits are the 500 of the validation pool, which no
    classifier trains on and no training scene uses.

    Args:
        classifier: a keras-hub `ImageClassifier` (e.g.
            `ImageClassifier.from_preset(path)` on a shipped folder).
        task: `"digit"` or `"thickness"`.
    """
    held_out = digit_scenes.pretraining_scenes(task, part="held_out", copies=1)
    logits = classifier.predict(held_out["images"], batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == held_out["labels"]))


def pretrain_third_tower(
    task,
    output,
    labelled_digits=digit_scenes.DEFAULT_LABELLED_DIGITS,
    steps=300,
    batch_size=128,
    seed=0,
    command=None,
    overwrite=False,
    per_class=None,
    digits=None,
):
    """Pretrains a `digit_backbone` classifier and saves it as a keras-hub preset.

    The classifier trains for exactly `steps` steps of `batch_size`
    single-digit scenes of the `labelled_digits` digits of the pretrain pool:
    each digit is drawn as often as the budget needs, each time in a fresh
    cell and colour, so a smaller pool is seen more often, not for fewer
    steps. AdamW at 3e-3 after a 10 % warmup, cosine decay.

    Args:
        task: `"digit"` (matched third tower) or `"thickness"` (mismatched).
        output: the preset folder to write. It is written beside the target
            (`<output>.partial`) and moved into place once complete, so a
            failed run leaves an existing folder as it was.
        labelled_digits: L, the size of the pretrain pool.
        steps: optimizer steps.
        batch_size: scenes per step.
        seed: the scenes' and the initialisation's seed.
        command: the command line to record in `metadata.json`.
        overwrite: replace an existing `output` (else it is an error).
        per_class: pretrain on only the first `per_class` digits of each
            class of the pretrain pool (`digit_scenes.pretraining_pool`).
        digits: pretrain on only the digits with these labels.

    Returns:
        The metadata written to `output/metadata.json`: the task, L, the
        held-out accuracy (`held_out_accuracy`), and the command.
    """
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"{output} exists: remove it or choose another folder.")
    keras.utils.set_random_seed(seed)
    _, labels = digit_scenes.load_source_digits()
    pool = digit_scenes.pretraining_pool(labels, labelled_digits, per_class, digits)
    copies = -(-steps * batch_size // len(pool))  # ceil
    train = digit_scenes.pretraining_scenes(
        task,
        copies=copies,
        seed=seed,
        labelled_digits=labelled_digits,
        per_class=per_class,
        digits=digits,
    )
    count = steps * batch_size
    images, labels = train["images"][:count], train["labels"][:count]
    classifier = keras_hub.models.ResNetImageClassifier(
        backbone=digit_backbone(), num_classes=len(train["class_names"]), activation=None
    )
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=3e-3, warmup_steps=steps // 10
    )
    classifier.compile(
        optimizer=keras.optimizers.AdamW(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.time()
    classifier.fit(images, labels, batch_size=batch_size, epochs=1, shuffle=False, verbose=2)
    accuracy = held_out_accuracy(classifier, task)
    # A fresh optimizer: the preset keeps the weights, not AdamW's state.
    classifier.compile()
    metadata = {
        "task": task,
        "class_names": train["class_names"],
        "labelled_digits": labelled_digits,
        "pretrained_digits": len(pool),
        "per_class": per_class,
        "digits": None if digits is None else [int(d) for d in digits],
        "held_out_accuracy": accuracy,
        "held_out_digits": digit_scenes.VALIDATION_DIGITS,
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "backend": keras.backend.backend(),
        "training_seconds": round(time.time() - start),
        "command": command,
    }
    with staged_folder(output, ".pretraining-") as staging:
        classifier.save_to_preset(staging)
        with open(os.path.join(staging, "metadata.json"), "w") as file:
            json.dump(metadata, file, indent=2)
    return metadata


def build_digit_model(
    objective,
    third_backbone=None,
    vocabulary_size=64,
    sequence_length=16,
    preprocessor=None,
    width=three_tower_presets.DIGIT_TEXT["hidden_dim"],
    pair_weights=None,
):
    """CLIP, LiT or 3T for digit scenes, with `EMBEDDING_DIM`-wide embeddings.

    - `"clip"`: a from-scratch `digit_vit` image tower and a text tower;
    - `"lit"`: `third_backbone` frozen as the image tower (a linear
      projection trains), the text tower from scratch;
    - `"3t"`: as CLIP, plus `third_backbone` as the frozen third tower (a
      dict of backbones by name: one frozen tower each, `third_towers`).

    Args:
        objective: `"clip"`, `"lit"` or `"3t"`.
        third_backbone: the pretrained backbone (LiT and 3T), or for 3T a
            dict of them by name.
        vocabulary_size: the tokenizer's vocabulary size.
        sequence_length: the padded caption length.
        preprocessor: optional `ThreeTowerPreprocessor` saved with the model.
        width: the hidden width of the towers trained from scratch (the
            text tower, and CLIP's and 3T's image tower; 64 by default);
            their MLPs are twice as wide. The pretrained backbone is as it is.
        pair_weights: the model's `pair_weights` (default: equal).
    """
    text_tower = TextTower(
        vocabulary_size=vocabulary_size,
        sequence_length=sequence_length,
        embedding_dim=EMBEDDING_DIM,
        **{**three_tower_presets.DIGIT_TEXT, "hidden_dim": width, "intermediate_dim": 2 * width},
    )
    if objective in ("lit", "3t") and third_backbone is None:
        raise ValueError(f"objective={objective!r} needs a pretrained third_backbone.")
    if objective == "lit":
        image_tower = ImageTower(third_backbone, EMBEDDING_DIM, frozen=True)
    else:
        image_tower = ImageTower(digit_vit(width), EMBEDDING_DIM)
    third_tower, third_towers = None, None
    if objective == "3t" and isinstance(third_backbone, dict):
        third_towers = {
            name: ThirdTower(backbone, EMBEDDING_DIM) for name, backbone in third_backbone.items()
        }
    elif objective == "3t":
        third_tower = ThirdTower(third_backbone, EMBEDDING_DIM)
    return ThreeTowerModel(
        image_tower=image_tower,
        text_tower=text_tower,
        third_tower=third_tower,
        third_towers=third_towers,
        objective=objective,
        pair_weights=pair_weights,
        preprocessor=preprocessor,
    )
