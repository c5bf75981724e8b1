"""keras_3t.evaluation.alpha_sweep: the convex combination of the main and the
third-tower paths at inference."""

import numpy as np
import pytest

from keras_3t.demo import toy
from keras_3t.evaluation import alpha_sweep
from keras_3t.evaluation import embed_images
from keras_3t.evaluation import embed_texts
from keras_3t.evaluation import evaluate_model
from keras_3t.evaluation import few_shot_linear_probe
from keras_3t.evaluation import plot_alpha_sweep
from keras_3t.evaluation import retrieval_metrics
from keras_3t.evaluation import zero_shot_classifier
from keras_3t.evaluation.zero_shot import classifier_from_prompt_embeddings
from keras_3t.evaluation.zero_shot import top_k_accuracy
from tests.helpers import tiny_model
from tests.helpers import to_numpy
from tests.helpers import toy_evaluation_tasks


def _normalize(x):
    x = to_numpy(x)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _prompt_inputs(task):
    """A toy zero-shot task's prompts, tokenized and padded by hand."""
    prompt_texts = [t.format(c) for c in task["class_names"] for t in task["templates"]]
    tokens = toy.tokenize(prompt_texts)
    return {
        "token_ids": np.array([ids + [0] * (4 - len(ids)) for ids in tokens], "int32"),
        "padding_mask": np.array([[True] * len(ids) + [False] * (4 - len(ids)) for ids in tokens]),
    }


def test_alpha_one_reproduces_the_plain_encoders(model_3t):
    tasks = toy_evaluation_tasks()
    table = alpha_sweep(model_3t, alphas=(0.5, 1.0), **tasks)
    assert [row["alpha"] for row in table] == [0.5, 1.0]
    assert table[1] == {"alpha": 1.0, **evaluate_model(model_3t, **tasks)}
    # …and evaluate_model itself is the plain encoders' metrics.
    task = tasks["retrieval"]
    plain = retrieval_metrics(
        to_numpy(model_3t.encode_image(task["images"])),
        to_numpy(model_3t.encode_text(task["texts"])),
        task["text_to_image"],
    )
    assert {k: table[1][k] for k in plain} == plain


def test_alpha_zero_is_the_third_tower_path(model_3t):
    tasks = toy_evaluation_tasks(seed=5)
    # A fixed ridge penalty: cross-validation's choice may differ with the
    # last float bits of the embeddings, which the two computations differ in.
    tasks["few_shot"]["l2_regularization"] = 1.0
    row = alpha_sweep(model_3t, alphas=(0.0,), **tasks)[0]

    def h_g(images):
        return _normalize(model_3t.third_tower(images)["text_head"])

    def g_h(texts):
        return _normalize(model_3t.text_adaptor(model_3t.text_tower(texts)["pooled"]))

    task = tasks["retrieval"]
    expected = retrieval_metrics(h_g(task["images"]), g_h(task["texts"]), task["text_to_image"])
    task = tasks["zero_shot"]
    classifier = classifier_from_prompt_embeddings(
        g_h(_prompt_inputs(task)), len(task["class_names"])
    )
    expected.update(
        {
            f"zero_shot_{k}": v
            for k, v in top_k_accuracy(h_g(task["images"]), task["labels"], classifier).items()
        }
    )
    task = tasks["few_shot"]
    expected.update(
        few_shot_linear_probe(
            h_g(task["train_images"]),
            task["train_labels"],
            h_g(task["test_images"]),
            task["test_labels"],
            shots=task["shots"],
            l2_regularization=1.0,
        )
    )
    assert row == {"alpha": 0.0, **expected}


def _paths(model, task):
    """Each path's normalised embeddings of a zero-shot task, computed directly."""
    text = model.text_tower(_prompt_inputs(task))
    return {
        "f": _normalize(model.image_tower(task["images"])["embedding"]),
        "h_g": _normalize(model.third_tower(task["images"])["text_head"]),
        "g": _normalize(text["embedding"]),
        "g_h": _normalize(model.text_adaptor(text["pooled"])),
    }


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.9])
def test_zero_shot_scores_are_exactly_s_alpha(model_3t, alpha):
    # Templates that tokenize differently, so a class's prompts disagree.
    templates = ["a {} square, top-left", "a large {} square", "small {}"]
    task = {**toy_evaluation_tasks(seed=3)["zero_shot"], "templates": templates}
    paths = _paths(model_3t, task)
    num_classes = len(task["class_names"])

    def class_means(prompt_embeddings):
        mean = prompt_embeddings.reshape(num_classes, -1, prompt_embeddings.shape[-1]).mean(1)
        return mean / np.linalg.norm(mean, axis=1, keepdims=True)

    # s_α = α⟨f, ḡ_c⟩ + (1−α)⟨h_g, ḡ_h,c⟩, each path's class mean normalised on its own.
    expected = alpha * paths["f"] @ class_means(paths["g"]).T
    expected += (1 - alpha) * paths["h_g"] @ class_means(paths["g_h"]).T
    classifier = zero_shot_classifier(
        model_3t, task["class_names"], task["templates"], toy.tokenize, alpha=alpha
    )
    scores = embed_images(model_3t, task["images"], alpha=alpha) @ classifier.T
    np.testing.assert_allclose(scores, expected, atol=2e-5)
    # The test can tell: renormalising the concatenated mean as a whole
    # scales the paths by how much each one's templates agree.
    concatenated = embed_texts(model_3t, _prompt_inputs(task), alpha=alpha)
    whole = classifier_from_prompt_embeddings(concatenated, num_classes)
    assert (
        np.abs(embed_images(model_3t, task["images"], alpha=alpha) @ whole.T - expected).max()
        > 1e-3
    )
    # The α sweep and evaluate_model score zero-shot with the same classifier.
    ahead = (expected >= expected[np.arange(len(expected)), task["labels"]][:, None]).sum(1) - 1
    top1 = float(np.mean(ahead < 1))
    assert alpha_sweep(model_3t, alphas=(alpha,), zero_shot=task)[0]["zero_shot_top1"] == top1
    assert evaluate_model(model_3t, zero_shot=task, alpha=alpha)["zero_shot_top1"] == top1


def test_alpha_sweep_bad_input_and_plot(model_3t, tmp_path):
    tasks = toy_evaluation_tasks()
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        alpha_sweep(model_3t, alphas=(0.5, 1.2), retrieval=tasks["retrieval"])
    with pytest.raises(ValueError, match="needs a '3t' model"):
        alpha_sweep(tiny_model("clip"), retrieval=tasks["retrieval"])
    with pytest.raises(ValueError, match="Nothing to evaluate"):
        alpha_sweep(model_3t)
    with pytest.raises(ValueError, match="lacks"):
        alpha_sweep(model_3t, retrieval={"images": tasks["retrieval"]["images"]})
    table = alpha_sweep(model_3t, alphas=(0.0, 0.5, 1.0), retrieval=tasks["retrieval"])
    path = plot_alpha_sweep(table, str(tmp_path / "sweep.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="not in the table"):
        plot_alpha_sweep(table, str(tmp_path / "x.png"), metrics=["zero_shot_top1"])
