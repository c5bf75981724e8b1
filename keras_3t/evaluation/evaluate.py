"""All chosen evaluations of a model in one call, from task descriptions.

A task is a plain dict:

- retrieval: `{"images", "texts", "text_to_image"}`: images `(N, H, W, C)`,
  texts `{"token_ids", "padding_mask"}` (M captions), and the image index
  of each caption;
- zero_shot: `{"images", "labels", "class_names", "tokenizer"}` and
  optionally `"templates"`;
- few_shot: `{"train_images", "train_labels", "test_images",
  "test_labels"}` and optionally `"shots"` and `"l2_regularization"`
  (see `few_shot_linear_probe`).
"""

import numpy as np

from keras_3t.combination import combine_paths
from keras_3t.combination import paths_needed
from keras_3t.evaluation.checks import model_path_weights
from keras_3t.evaluation.embedding import embed_image_paths
from keras_3t.evaluation.embedding import embed_text_paths
from keras_3t.evaluation.few_shot import few_shot_linear_probe
from keras_3t.evaluation.retrieval import retrieval_metrics
from keras_3t.evaluation.zero_shot import classifier_from_paths
from keras_3t.evaluation.zero_shot import prompts
from keras_3t.evaluation.zero_shot import tokenize
from keras_3t.evaluation.zero_shot import top_k_accuracy

TASK_KEYS = {
    "retrieval": {"images", "texts", "text_to_image"},
    "zero_shot": {"images", "labels", "class_names", "tokenizer"},
    "few_shot": {"train_images", "train_labels", "test_images", "test_labels"},
}


def check_tasks(**tasks):
    """Checks task dicts have their keys; returns the tasks that are given."""
    given = {name: task for name, task in tasks.items() if task is not None}
    if not given:
        raise ValueError(
            "Nothing to evaluate: pass at least one of retrieval=, zero_shot=, "
            "few_shot= (dicts; see keras_3t.evaluation.evaluate)."
        )
    for name, task in given.items():
        if name not in TASK_KEYS:
            raise ValueError(f"Unknown evaluation {name!r}; known: {sorted(TASK_KEYS)}.")
        missing = TASK_KEYS[name] - set(task)
        if missing:
            raise ValueError(f"The {name} task lacks {sorted(missing)}.")
    return given


def embed_tasks(model, tasks, paths, batch_size=256, verbose=0):
    """Embeds every image and text the tasks need, along each of `paths`.

    Returns:
        A dict: each embedding's name (`"retrieval_images"`, …, and
        `"zero_shot_prompts"`) → dict path name → array, for
        `combine_task_embeddings`.
    """

    def images(data):
        return embed_image_paths(model, data, paths, batch_size, verbose)

    def texts(data):
        return embed_text_paths(model, data, paths, batch_size, verbose)

    embeddings = {}
    if "retrieval" in tasks:
        embeddings["retrieval_images"] = images(tasks["retrieval"]["images"])
        embeddings["retrieval_texts"] = texts(tasks["retrieval"]["texts"])
    if "zero_shot" in tasks:
        task = tasks["zero_shot"]
        embeddings["zero_shot_images"] = images(task["images"])
        prompt_texts = prompts(task["class_names"], task.get("templates"))
        inputs = tokenize(task["tokenizer"], prompt_texts, model.text_tower.sequence_length)
        embeddings["zero_shot_prompts"] = embed_text_paths(model, inputs, paths, batch_size)
    if "few_shot" in tasks:
        embeddings["few_shot_train"] = images(tasks["few_shot"]["train_images"])
        embeddings["few_shot_test"] = images(tasks["few_shot"]["test_images"])
    return embeddings


def combine_task_embeddings(tasks, embeddings, weights):
    """`embed_tasks`' embeddings combined with path weights (`combine_paths`).

    A zero-shot task gives its classifier (`"zero_shot_classifier"`), built
    from each path's prompt embeddings (`classifier_from_paths`).
    """
    combined = {}
    for name, by_path in embeddings.items():
        if name == "zero_shot_prompts":
            num_classes = len(tasks["zero_shot"]["class_names"])
            combined["zero_shot_classifier"] = classifier_from_paths(by_path, num_classes, weights)
        else:
            combined[name] = combine_paths(by_path, weights)
    return combined


def metrics_from_embeddings(tasks, embeddings):
    """Every task's metrics from the embeddings of `combine_task_embeddings`."""
    metrics = {}
    if "retrieval" in tasks:
        metrics.update(
            retrieval_metrics(
                embeddings["retrieval_images"],
                embeddings["retrieval_texts"],
                tasks["retrieval"]["text_to_image"],
            )
        )
    if "zero_shot" in tasks:
        task = tasks["zero_shot"]
        accuracy = top_k_accuracy(
            embeddings["zero_shot_images"], task["labels"], embeddings["zero_shot_classifier"]
        )
        metrics.update({f"zero_shot_{k}": v for k, v in accuracy.items()})
    if "few_shot" in tasks:
        task = tasks["few_shot"]
        options = {key: task[key] for key in ("shots", "l2_regularization") if key in task}
        metrics.update(
            few_shot_linear_probe(
                embeddings["few_shot_train"],
                np.asarray(task["train_labels"]),
                embeddings["few_shot_test"],
                np.asarray(task["test_labels"]),
                **options,
            )
        )
    return metrics


def evaluate_model(
    model, retrieval=None, zero_shot=None, few_shot=None, alpha=1.0, batch_size=256, verbose=0
):
    """Runs the given evaluations of a model at one alpha.

    Args:
        model: a `ThreeTowerModel`.
        retrieval: a retrieval task dict (see this module's docstring).
        zero_shot: a zero-shot classification task dict.
        few_shot: a few-shot linear-probe task dict.
        alpha: the convex-combination weight (α < 1 for 3T models only), or
            a dict of weights by path (see `ThreeTowerModel.encode_image`).
        batch_size: examples embedded per batch.
        verbose: 1 shows progress bars.

    Returns:
        A flat dict of floats: retrieval `image_to_text_r1` … `text_to_image_r10`,
        `zero_shot_top1` (`zero_shot_top5`), `few_shot_<k>` (and `_std`).

    Example:
    >>> from keras_3t.demo import toy
    >>> from keras_3t.demo.toy import toy_batch
    >>> from keras_3t.evaluation import evaluate_model
    >>> batch = toy_batch(16, seed=0)
    >>> texts = {k: batch[k] for k in ("token_ids", "padding_mask")}
    >>> metrics = evaluate_model(toy.build_model(),
    ...     retrieval={"images": batch["images"], "texts": texts,
    ...                "text_to_image": list(range(16))})
    >>> sorted(metrics)[:2]
    ['image_to_text_r1', 'image_to_text_r10']
    """
    tasks = check_tasks(retrieval=retrieval, zero_shot=zero_shot, few_shot=few_shot)
    weights = model_path_weights(model, alpha)
    embeddings = embed_tasks(model, tasks, paths_needed(weights), batch_size, verbose)
    return metrics_from_embeddings(tasks, combine_task_embeddings(tasks, embeddings, weights))
