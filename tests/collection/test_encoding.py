"""keras_3t.collection.encoding: the model, its fingerprint, and a batch of items embedded."""

import numpy as np

from keras_3t import presets
from keras_3t.collection.encoding import embedding_function
from keras_3t.collection.encoding import model_and_reference
from keras_3t.collection.encoding import model_fingerprint
from keras_3t.collection.items import Item
from tests.helpers import png


def test_the_fingerprint_follows_the_weights_not_the_loading(tiny_3t, tmp_path):
    model, reference = model_and_reference("3t_tiny")
    assert reference == "3t_tiny" and model is not tiny_3t
    assert model_fingerprint(model) == model_fingerprint(tiny_3t)
    model.save_to_preset(str(tmp_path / "saved"))
    saved, reference = model_and_reference(str(tmp_path / "saved"))
    assert reference == str(tmp_path / "saved")
    assert model_fingerprint(saved) == model_fingerprint(tiny_3t)
    weight = model.image_tower.weights[0]
    weight.assign(weight.numpy() + 1e-3)
    assert model_fingerprint(model) != model_fingerprint(tiny_3t)
    assert model_and_reference(tiny_3t) == (tiny_3t, None)
    assert model_fingerprint(presets.load("lit_tiny")) != model_fingerprint(tiny_3t)


def test_a_batch_embeds_its_good_items_and_flags_the_others(tiny_3t):
    weights = {"main": 0.5, "third": 0.5}
    embed = embedding_function(tiny_3t, "images", weights)
    items = [
        Item("a", image=png(10)),
        Item("b", image=b"", missing=True),
        Item("c", image=b"GIF8 cut short"),
        Item("d", image=png(200)),
    ]
    embeddings, bad = embed(items)
    assert bad == [
        (1, "missing_file", "gone since the listing"),
        (2, "undecodable_image", "truncated or corrupt"),
    ]
    good = np.stack([np.full((8, 8, 3), v, "uint8") for v in (10, 200)])
    np.testing.assert_allclose(embeddings, tiny_3t.encode_image(good, weights), atol=1e-5)
    assert embed.dim == embeddings.shape[1] == 2 * tiny_3t.encode_image(good).shape[1]
    embed = embedding_function(tiny_3t, "captions", weights)
    embeddings, bad = embed(
        [Item("1", caption="a 1"), Item("2", caption=" "), Item("3", caption="a 3")]
    )
    assert bad == [(1, "empty_caption", "empty")]
    np.testing.assert_allclose(embeddings, tiny_3t.encode_text(["a 1", "a 3"], weights), atol=1e-6)
