"""keras_3t.evaluation.zero_shot: prompt-ensemble classifiers and accuracy."""

import types

import numpy as np
import pytest

from keras_3t.evaluation import zero_shot_accuracy
from keras_3t.evaluation import zero_shot_classifier
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
