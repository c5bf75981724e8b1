import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import text_of
from conftest import tiny_model
from conftest import to_numpy

from keras_3t.callbacks import EvaluationCallback
from keras_3t.demo import toy
from keras_3t.demo.toy import toy_batch
from keras_3t.evaluation import alpha_sweep
from keras_3t.evaluation import embed_images
from keras_3t.evaluation import embed_texts
from keras_3t.evaluation import evaluate_model
from keras_3t.evaluation import few_shot_linear_probe
from keras_3t.evaluation import plot_alpha_sweep
from keras_3t.evaluation import retrieval_metrics
from keras_3t.evaluation import zero_shot_accuracy
from keras_3t.evaluation import zero_shot_classifier
from keras_3t.evaluation.zero_shot import classifier_from_prompt_embeddings
from keras_3t.evaluation.zero_shot import top_k_accuracy

VOCABULARY = ["<pad>", "a", "cat", "dog", "car", "bus", "tree", "photo"]


def word_tokenizer(texts):
    return [[VOCABULARY.index(w) for w in text.split()] for text in texts]


class BagOfWordsModel:
    """A hand-built model: text embedding = normalised bag of one-hot words,
    image embedding = the normalised image vector itself."""

    text_tower = types.SimpleNamespace(sequence_length=4)

    def encode_text(self, inputs, alpha=1.0):
        ids = np.asarray(inputs["token_ids"])
        mask = np.asarray(inputs["padding_mask"])
        bags = (np.eye(len(VOCABULARY))[ids] * mask[..., None]).sum(axis=1)
        return bags / np.linalg.norm(bags, axis=1, keepdims=True)

    def encode_image(self, images, alpha=1.0):
        flat = np.asarray(images).reshape(len(images), -1)
        return flat / np.linalg.norm(flat, axis=1, keepdims=True)


def test_zero_shot_classifier_and_accuracy_of_a_hand_built_model():
    classes = ["cat", "dog", "car", "bus", "tree"]
    classifier = zero_shot_classifier(BagOfWordsModel(), classes, ["{}", "a {}"], word_tokenizer)
    # By hand: mean of e_c and (e_a + e_c)/√2, renormalised.
    for row, name in zip(classifier, classes):
        expected = np.eye(len(VOCABULARY))[VOCABULARY.index(name)] * (1 + 2**-0.5)
        expected += np.eye(len(VOCABULARY))[VOCABULARY.index("a")] * 2**-0.5
        np.testing.assert_allclose(row, expected / np.linalg.norm(expected), atol=1e-6)

    def one_hot(word):
        return np.eye(len(VOCABULARY))[VOCABULARY.index(word)]

    images = np.stack(
        [
            one_hot("cat"),  # right
            one_hot("dog") + 0.1 * one_hot("bus"),  # right
            one_hot("car") + one_hot("bus"),  # tie between car and bus: counts against
            one_hot("tree") + 2 * one_hot("cat"),  # wrong at 1 (cat wins), right at 2
        ]
    )[:, None, None, :]
    labels = [0, 1, 2, 4]
    accuracy = zero_shot_accuracy(BagOfWordsModel(), images, labels, classifier, batch_size=3)
    assert accuracy == {"top1": 0.5, "top5": 1.0}
    assert top_k_accuracy(
        BagOfWordsModel().encode_image(images), labels, classifier, ks=(1, 2)
    ) == {"top1": 0.5, "top2": 1.0}


def test_top5_is_left_out_below_five_classes():
    classifier = np.eye(3, dtype="float32")
    assert top_k_accuracy(np.eye(3, dtype="float32"), [0, 1, 2], classifier) == {"top1": 1.0}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(class_names=[]), "class_names is empty"),
        (dict(class_names=["cat", ""]), "non-empty strings"),
        (dict(templates=["a photo"]), "has no '{}'"),
        (dict(templates=[]), "templates is empty"),
        (dict(tokenizer=None), "has no preprocessor: pass tokenizer="),
        (dict(templates=["a a a a {}"]), "more than the text tower's sequence_length"),
    ],
)
def test_zero_shot_classifier_bad_input(kwargs, message):
    arguments = dict(class_names=["cat", "dog"], templates=["{}"], tokenizer=word_tokenizer)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        zero_shot_classifier(BagOfWordsModel(), **arguments)


def test_zero_shot_accuracy_bad_input():
    classifier = np.eye(3, dtype="float32")
    with pytest.raises(ValueError, match="labels of shape"):
        top_k_accuracy(np.eye(3, dtype="float32"), [0, 1], classifier)
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        top_k_accuracy(np.eye(3, dtype="float32"), [0, 1, 3], classifier)
    with pytest.raises(ValueError, match="same alpha"):
        top_k_accuracy(np.ones((3, 5), "float32"), [0, 1, 2], classifier)


@pytest.fixture(scope="module")
def model_3t():
    keras.utils.set_random_seed(1)
    return tiny_model()


def _tasks(seed=0):
    batch = toy_batch(24, seed=seed)
    colours = batch["token_ids"][:, 0] - 1
    return dict(
        retrieval={
            "images": batch["images"],
            "texts": text_of(batch),
            "text_to_image": np.arange(24),
        },
        zero_shot={
            "images": batch["images"],
            "labels": colours,
            "class_names": list(toy.COLOUR_NAMES),
            "tokenizer": toy.tokenize,
            "templates": ["{} square", "a {}"],
        },
        few_shot={
            "train_images": toy_batch(64, seed=seed + 1)["images"],
            "train_labels": toy_batch(64, seed=seed + 1)["token_ids"][:, 0] - 1,
            "test_images": batch["images"],
            "test_labels": colours,
            "shots": (1, 2),
        },
    )


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
    tasks = _tasks()
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
    tasks = _tasks(seed=5)
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
    task = {**_tasks(seed=3)["zero_shot"], "templates": templates}
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
    tasks = _tasks()
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


def test_embedding_a_dataset_equals_embedding_arrays(model_3t):
    batch = toy_batch(10, seed=2)
    dataset = tf.data.Dataset.from_tensor_slices(batch).batch(4)
    np.testing.assert_allclose(
        embed_images(model_3t, dataset, alpha=0.5),
        embed_images(model_3t, batch["images"], alpha=0.5, batch_size=3),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        embed_texts(model_3t, dataset),
        embed_texts(model_3t, text_of(batch), batch_size=3),
        atol=1e-6,
    )


def test_evaluation_callback_logs_into_history_and_csv(tmp_path):
    model = tiny_model("clip")
    model.compile()
    callback = EvaluationCallback(retrieval=_tasks()["retrieval"])
    csv_path = tmp_path / "log.csv"
    history = model.fit(
        toy_batch(32, seed=0),
        batch_size=16,
        epochs=2,
        verbose=0,
        callbacks=[callback, keras.callbacks.CSVLogger(str(csv_path))],
    )
    assert len(history.history["val_image_to_text_r1"]) == 2
    header = csv_path.read_text().splitlines()[0].split(",")
    assert "val_text_to_image_r10" in header


def test_evaluation_callback_runs_every_n_epochs():
    callback = EvaluationCallback(retrieval=_tasks()["retrieval"], every_n_epochs=2)
    callback.set_model(tiny_model("clip"))
    logs = {"loss": 1.0}
    callback.on_epoch_end(0, logs)
    assert logs == {"loss": 1.0}
    callback.on_epoch_end(1, logs)
    assert 0.0 <= logs["val_image_to_text_r1"] <= 1.0
    with pytest.raises(ValueError, match="every_n_epochs"):
        EvaluationCallback(retrieval=_tasks()["retrieval"], every_n_epochs=0)
