"""Zero-shot classification: class names and prompt templates → a classifier."""

import numpy as np

from keras_3t.combination import combine_paths
from keras_3t.combination import paths_needed
from keras_3t.evaluation.checks import model_path_weights
from keras_3t.evaluation.embedding import embed_images
from keras_3t.evaluation.embedding import embed_text_paths

# A small set in the style of CLIP's ImageNet prompts; pass your own for
# other domains.
DEFAULT_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a low resolution photo of a {}.",
    "a drawing of a {}.",
)


def tokenize(tokenizer, texts, sequence_length):
    """Runs a tokenizer on strings and returns padded model inputs.

    Args:
        tokenizer: a callable on a list of strings that returns either a dict
            with `"token_ids"` and `"padding_mask"` (a keras-hub
            preprocessor, say) or one list of token ids per string (a
            keras-hub `Tokenizer`: a ragged tensor or lists).
        texts: a list of strings.
        sequence_length: length to pad token-id lists to.

    Returns:
        `{"token_ids": int32 (N, L), "padding_mask": bool (N, L)}`.
    """
    output = tokenizer(list(texts))
    if isinstance(output, dict):
        if "token_ids" not in output or "padding_mask" not in output:
            raise ValueError(
                "A tokenizer that returns a dict must give 'token_ids' and "
                f"'padding_mask'; got keys {sorted(output)}."
            )
        return {
            "token_ids": np.asarray(output["token_ids"]).astype("int32"),
            "padding_mask": np.asarray(output["padding_mask"]).astype(bool),
        }
    if hasattr(output, "to_list"):  # tf.RaggedTensor
        output = output.to_list()
    sequences = [list(np.asarray(ids).reshape(-1)) for ids in output]
    token_ids = np.zeros((len(sequences), sequence_length), "int32")
    padding_mask = np.zeros((len(sequences), sequence_length), bool)
    for row, (text, ids) in enumerate(zip(texts, sequences)):
        if not ids:
            raise ValueError(f"The tokenizer gave no tokens for {text!r}.")
        if len(ids) > sequence_length:
            raise ValueError(
                f"{text!r} has {len(ids)} tokens, more than the text tower's "
                f"sequence_length {sequence_length}."
            )
        token_ids[row, : len(ids)] = ids
        padding_mask[row, : len(ids)] = True
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def prompts(class_names, templates=None):
    """Every template filled with every class name, class-major.

    Returns the list of prompts (`num_classes × num_templates`) after
    checking the inputs.
    """
    class_names = list(class_names)
    templates = list(DEFAULT_TEMPLATES if templates is None else templates)
    if not class_names:
        raise ValueError("class_names is empty: a classifier needs at least one class.")
    for name in class_names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"Class names must be non-empty strings; got {name!r}.")
    if not templates:
        raise ValueError("templates is empty: pass at least one, e.g. '{}'.")
    for template in templates:
        if "{}" not in template:
            raise ValueError(f"Template {template!r} has no '{{}}' where the class name goes.")
    return [template.format(name) for name in class_names for template in templates]


def classifier_from_prompt_embeddings(prompt_embeddings, num_classes):
    """Averages each class's prompt embeddings of one path and renormalises.

    Args:
        prompt_embeddings: `(num_classes × num_templates, dim)`, class-major,
            from one path (the main text tower, or the third-tower path).
        num_classes: how many classes.
    """
    per_class = prompt_embeddings.reshape(num_classes, -1, prompt_embeddings.shape[-1])
    mean = per_class.mean(axis=1)
    return mean / (np.linalg.norm(mean, axis=1, keepdims=True) + 1e-8)


def classifier_from_paths(prompt_embeddings, num_classes, weights):
    """The zero-shot classifier for path weights, from each path's prompts.

    Each path's class embedding is averaged over the templates and
    normalised on its own, then the paths are weighted as the images are,
    `[√w_p ḡ_p ...]` (`keras_3t.combination`), so an image's score for a
    class is exactly Σ_p w_p ⟨image_p, ḡ_p⟩; with one frozen tower,
    s_α = α⟨f, ḡ⟩ + (1−α)⟨h_g, ḡ_h⟩. (Renormalising the concatenated mean
    instead would scale each path by how much its templates agree, and so
    shift the effective weights from class to class.)

    Args:
        prompt_embeddings: dict path name → `(num_classes × num_templates,
            dim)` prompt embeddings, as `embed_text_paths` returns; every
            path `combine_paths` reads for `weights`.
        num_classes: how many classes.
        weights: the path weights (`keras_3t.combination.path_weights`).
    """
    classifiers = {
        name: classifier_from_prompt_embeddings(prompt_embeddings[name], num_classes)
        for name in paths_needed(weights)
    }
    return combine_paths(classifiers, weights)


def zero_shot_classifier(
    model, class_names, templates=None, tokenizer=None, alpha=1.0, batch_size=256
):
    """A zero-shot classifier: one text embedding per class.

    Each template filled with each class name is embedded; a class's
    embeddings are averaged and renormalised (the CLIP protocol). Below
    α = 1 this is done for each path separately (`classifier_from_paths`),
    so that the scores are exactly s_α.

    Args:
        model: a `ThreeTowerModel` (or any object with `encode_text` and a
            `text_tower.sequence_length`).
        class_names: list of class names.
        templates: prompt templates with `{}` for the class name; default
            `DEFAULT_TEMPLATES`.
        tokenizer: see `tokenize`; by default the model's own
            `preprocessor`.
        alpha: the convex-combination weight (or a dict of weights by
            path, see `encode_image`); use the same one for the images in
            `zero_shot_accuracy`.
        batch_size: prompts embedded per batch.

    Returns:
        A float32 array `(num_classes, dim)`.

    Example:
    >>> from keras_3t.demo import toy
    >>> from keras_3t.evaluation import zero_shot_classifier
    >>> model = toy.build_model()
    >>> classifier = zero_shot_classifier(
    ...     model, ["red", "blue"], ["a {} square"], toy.tokenize)
    >>> classifier.shape
    (2, 32)
    """
    if tokenizer is None:
        tokenizer = getattr(model, "preprocessor", None)
    if tokenizer is None:
        raise ValueError(
            "zero_shot_classifier needs a tokenizer to turn the prompts into "
            "token ids, and this model has no preprocessor: pass tokenizer=."
        )
    texts = prompts(class_names, templates)
    inputs = tokenize(tokenizer, texts, model.text_tower.sequence_length)
    weights = model_path_weights(model, alpha)
    embeddings = embed_text_paths(model, inputs, paths_needed(weights), batch_size)
    return classifier_from_paths(embeddings, len(list(class_names)), weights)


def top_k_accuracy(image_embeddings, labels, classifier, ks=(1, 5)):
    """Top-k accuracy of embeddings against a classifier, ties counted against.

    An image is a hit at k if fewer than k *other* classes score at least as
    high as its own class. k larger than the number of classes is skipped.

    Returns:
        A dict `{"top1": ..., "top5": ...}` (only the k ≤ num_classes).
    """
    labels = np.asarray(labels)
    num_classes = len(classifier)
    if image_embeddings.shape[-1] != classifier.shape[-1]:
        raise ValueError(
            f"Image embeddings have size {image_embeddings.shape[-1]} but the "
            f"classifier {classifier.shape[-1]}: build both with the same alpha."
        )
    if labels.shape != (len(image_embeddings),):
        raise ValueError(f"Got {len(image_embeddings)} images but labels of shape {labels.shape}.")
    if (
        not np.issubdtype(labels.dtype, np.integer)
        or labels.min() < 0
        or labels.max() >= num_classes
    ):
        raise ValueError(
            f"labels must be integer class indices in [0, {num_classes}); got "
            f"values from {labels.min()} to {labels.max()} ({labels.dtype})."
        )
    scores = image_embeddings @ classifier.T
    own = scores[np.arange(len(labels)), labels]
    ahead = (scores >= own[:, None]).sum(axis=1) - 1
    return {f"top{k}": float(np.mean(ahead < k)) for k in ks if k <= num_classes}


def zero_shot_accuracy(
    model, images_or_dataset, labels, classifier, alpha=1.0, batch_size=256, verbose=0
):
    """Top-1 (and top-5 with ≥ 5 classes) zero-shot accuracy.

    Args:
        model: a `ThreeTowerModel`.
        images_or_dataset: images `(N, H, W, C)` (floats in [0, 1], or
            raw images the model's `image_converter` takes) or a dataset of
            image batches (see `embed_images`).
        labels: `(N,)` integer class indices.
        classifier: from `zero_shot_classifier`, built with the same alpha;
            or the class names, from which it is built here with the
            model's preprocessor and `DEFAULT_TEMPLATES`.
        alpha: the convex-combination weight.
        batch_size: images embedded per batch.
        verbose: 1 shows a progress bar.

    Returns:
        `{"top1": float, "top5": float}` (top5 only with ≥ 5 classes).
    """
    if len(classifier) and isinstance(classifier[0], str):
        classifier = zero_shot_classifier(model, classifier, alpha=alpha, batch_size=batch_size)
    embeddings = embed_images(
        model, images_or_dataset, alpha=alpha, batch_size=batch_size, verbose=verbose
    )
    return top_k_accuracy(embeddings, labels, np.asarray(classifier))
