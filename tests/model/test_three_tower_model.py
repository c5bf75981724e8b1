"""keras_3t.model.three_tower_model: training, objectives and saving of
ThreeTowerModel."""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_3t import ImageTower
from keras_3t import ThreeTowerModel
from keras_3t.demo.toy import toy_batch
from tests.helpers import EMBEDDING_DIM
from tests.helpers import IMAGE_SIZE
from tests.helpers import run_round_trip_test
from tests.helpers import snapshot
from tests.helpers import text_of
from tests.helpers import tiny_model
from tests.helpers import tiny_text_tower
from tests.helpers import tiny_vit
from tests.helpers import to_numpy
from tests.helpers import two_frozen_towers

BATCH_SIZE = 32
TRAIN_METRICS = {
    "loss",
    "loss_image_text",
    "loss_image_third",
    "loss_text_third",
    "logit_scale_image_text",
    "logit_scale_image_third",
    "logit_scale_text_third",
}


def _changed(before, after, layer):
    paths = [v.path for v in layer.variables]
    assert paths, f"{layer.name} has no variables"
    return [p for p in paths if not np.array_equal(before[p], after[p])]


@pytest.fixture(scope="module")
def trained_3t():
    """A 3T model trained on the toy problem, with its weights before training."""
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile(learning_rate=3e-3)
    before = snapshot(model.variables)
    data = toy_batch(BATCH_SIZE * 12, seed=1)
    history = model.fit(data, batch_size=BATCH_SIZE, epochs=8, verbose=0)
    return model, before, history.history


def test_fit_reports_every_pair_loss_and_logit_scale(trained_3t):
    _, _, history = trained_3t
    assert set(history) == TRAIN_METRICS
    for name in TRAIN_METRICS:
        assert np.all(np.isfinite(history[name])), name


def test_fit_drives_the_3t_loss_well_below_chance_and_retrieval_above_chance(trained_3t):
    model, _, history = trained_3t
    assert history["loss"][0] > 0.8 * np.log(BATCH_SIZE)
    assert history["loss"][-1] < 0.6 * np.log(BATCH_SIZE)
    for pair in ("image_text", "image_third", "text_third"):
        assert history[f"loss_{pair}"][-1] < history[f"loss_{pair}"][0], pair
    batch = toy_batch(BATCH_SIZE, seed=1)  # a training batch: unique captions
    similarity = (
        to_numpy(model.encode_image(batch["images"]))
        @ to_numpy(model.encode_text(text_of(batch))).T
    )
    recall_at_1 = np.mean(similarity.argmax(axis=1) == np.arange(BATCH_SIZE))
    assert recall_at_1 > 10 / BATCH_SIZE  # chance is 1 / 32


def test_fit_trains_main_towers_heads_and_scales_but_never_the_third_backbone(trained_3t):
    model, before, _ = trained_3t
    after = snapshot(model.variables)
    backbone_paths = [v.path for v in model.third_tower.backbone.variables]
    assert backbone_paths
    for path in backbone_paths:
        np.testing.assert_array_equal(before[path], after[path], err_msg=path)
    for layer in (
        model.image_tower,
        model.text_tower,
        model.image_adaptor,
        model.text_adaptor,
        model.third_tower.image_head,
        model.third_tower.text_head,
    ):
        for variable in layer.trainable_variables:
            assert not np.array_equal(before[variable.path], after[variable.path]), variable.path
    for variable in model.logit_scales.values():
        assert before[variable.path] != after[variable.path]


def test_evaluate_and_predict(trained_3t):
    model, _, _ = trained_3t
    batch = toy_batch(BATCH_SIZE, seed=2)
    logs = model.evaluate(batch, batch_size=16, verbose=0, return_dict=True)
    assert set(logs) == TRAIN_METRICS
    # As a list, the values come in the model's order: the loss first.
    values = model.evaluate(batch, batch_size=16, verbose=0)
    assert values == [logs[name] for name in model.objective_means.names]
    assert model.objective_means.names[0] == "loss"
    outputs = model.predict(batch, batch_size=16, verbose=0)
    np.testing.assert_allclose(
        outputs["image_embeddings"], to_numpy(model.encode_image(batch["images"])), atol=1e-5
    )
    np.testing.assert_allclose(np.linalg.norm(outputs["text_embeddings"], axis=1), 1.0, atol=1e-5)


def test_alpha_combination_gives_the_convex_similarity(trained_3t):
    model, _, _ = trained_3t
    batch = toy_batch(8, seed=3)
    text = text_of(batch)
    assert model.encode_image(batch["images"]).shape == (8, EMBEDDING_DIM)
    f = to_numpy(model.encode_image(batch["images"]))
    g = to_numpy(model.encode_text(text))
    h_g = to_numpy(model.encode_image(batch["images"], alpha=0.0))[:, EMBEDDING_DIM:]
    g_h = to_numpy(model.encode_text(text, alpha=0.0))[:, EMBEDDING_DIM:]
    for alpha in (0.0, 0.3, 0.7):
        images = to_numpy(model.encode_image(batch["images"], alpha=alpha))
        texts = to_numpy(model.encode_text(text, alpha=alpha))
        expected = alpha * f @ g.T + (1 - alpha) * h_g @ g_h.T
        np.testing.assert_allclose(images @ texts.T, expected, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    # The third-tower path is the frozen model's own head, not the image tower.
    third = model.third_tower(batch["images"])["text_head"]
    np.testing.assert_allclose(
        h_g, to_numpy(third) / np.linalg.norm(to_numpy(third), axis=1, keepdims=True), atol=1e-5
    )


def test_a_trained_model_round_trips_with_identical_embeddings(trained_3t, tmp_path):
    model, _, _ = trained_3t
    batch = toy_batch(8, seed=4)
    loaded, _ = run_round_trip_test(model, batch, tmp_path)
    for alpha in (1.0, 0.5):
        np.testing.assert_array_equal(
            to_numpy(loaded.encode_image(batch["images"], alpha=alpha)),
            to_numpy(model.encode_image(batch["images"], alpha=alpha)),
        )
        np.testing.assert_array_equal(
            to_numpy(loaded.encode_text(text_of(batch), alpha=alpha)),
            to_numpy(model.encode_text(text_of(batch), alpha=alpha)),
        )
    # The third tower stays frozen, and the optimizer state travels too, so
    # training resumes where it stopped.
    assert not loaded.third_tower.backbone.trainable_variables
    assert len(loaded.trainable_variables) == len(model.trainable_variables)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations)
    loaded.fit(toy_batch(BATCH_SIZE, seed=5), batch_size=BATCH_SIZE, verbose=0)


def test_one_third_tower_keeps_its_config_and_pairs():
    # Its weights files keep their layout too: the shipped presets, saved
    # before models could have several frozen towers, load (test_shipped.py).
    model = tiny_model()
    assert model.pairs == ("image_text", "image_third", "text_third")
    assert model.path_names == ("main", "third")
    config = model.get_config()
    assert "third_towers" not in config
    assert config["pair_weights"] == [1 / 3, 1 / 3, 1 / 3]
    assert ThreeTowerModel.from_config(config).third_tower is not None


@pytest.fixture(scope="module")
def two_tower_model():
    """A 3T model with two frozen towers, trained a few steps."""
    keras.utils.set_random_seed(0)
    model = tiny_model(third_towers=two_frozen_towers())
    model.compile(learning_rate=3e-3)
    before = snapshot(model.variables)
    history = model.fit(toy_batch(BATCH_SIZE * 2, seed=1), batch_size=BATCH_SIZE, verbose=0)
    return model, before, history.history


def test_several_frozen_towers_each_add_their_pairs_heads_and_metrics(two_tower_model):
    model, before, history = two_tower_model
    names = ("digits", "thickness")
    assert model.pairs == (
        "image_text",
        "image_digits",
        "text_digits",
        "image_thickness",
        "text_thickness",
    )
    expected_metrics = {"loss"}
    for pair in model.pairs:
        expected_metrics |= {f"loss_{pair}", f"logit_scale_{pair}"}
    assert set(history) == expected_metrics
    after = snapshot(model.variables)
    for name in names:
        tower = model.third_towers[name]
        assert not _changed(before, after, tower.backbone), name
        assert _changed(before, after, tower.image_head) and _changed(
            before, after, tower.text_head
        )
        for adaptor in (model.image_adaptors[name], model.text_adaptors[name]):
            assert _changed(before, after, adaptor), adaptor.name
    # The loss is the weighted sum of the five pairs' losses.
    values = model.compute_objective(toy_batch(8, seed=2))
    total = sum(float(to_numpy(values[f"loss_{pair}"])) for pair in model.pairs) / 5
    np.testing.assert_allclose(float(to_numpy(values["loss"])), total, rtol=1e-6)


def test_path_weights_give_the_weighted_sum_of_the_paths_scores(two_tower_model):
    model, _, _ = two_tower_model
    batch = toy_batch(8, seed=3)
    text = text_of(batch)
    images = model.encode_image_paths(batch["images"])
    texts = model.encode_text_paths(text)
    assert set(images) == set(texts) == {"main", "digits", "thickness"}
    for weights in (
        {"main": 0.5, "digits": 0.3, "thickness": 0.2},
        {"main": 0.0, "digits": 1.0},
        0.4,  # 0.6 shared equally by the two towers
    ):
        combined = model.encode_image(batch["images"], alpha=weights) @ (
            model.encode_text(text, alpha=weights).T
        )
        if not isinstance(weights, dict):
            weights = {"main": 0.4, "digits": 0.3, "thickness": 0.3}
        expected = sum(w * images[p] @ texts[p].T for p, w in weights.items())
        np.testing.assert_allclose(combined, expected, atol=1e-6)
    # Each tower's path is its own frozen model's head.
    head = to_numpy(model.third_towers["thickness"](batch["images"])["text_head"])
    np.testing.assert_allclose(
        images["thickness"], head / np.linalg.norm(head, axis=1, keepdims=True), atol=1e-5
    )
    with pytest.raises(ValueError, match="sum to 1"):
        model.encode_image(batch["images"], alpha={"main": 0.5})
    with pytest.raises(ValueError, match="unknown path"):
        model.encode_image(batch["images"], alpha={"main": 0.5, "third": 0.5})


def test_several_frozen_towers_round_trip(two_tower_model, tmp_path):
    model, _, _ = two_tower_model
    batch = toy_batch(4, seed=4)
    loaded, from_preset = run_round_trip_test(model, batch, tmp_path)
    for reloaded in (loaded, from_preset):
        assert list(reloaded.third_towers) == ["digits", "thickness"]
        assert reloaded.pair_weights == model.pair_weights
        np.testing.assert_array_equal(
            reloaded.encode_image(batch["images"], alpha=0.5),
            model.encode_image(batch["images"], alpha=0.5),
        )


def test_pair_weights_by_name_and_tower_names_are_checked():
    towers = two_frozen_towers()
    model = tiny_model(third_towers=towers, pair_weights={"image_text": 1.0, "text_digits": 0.5})
    assert model.pair_weights == (1.0, 0.0, 0.5, 0.0, 0.0)
    with pytest.raises(ValueError, match="unknown pair"):
        tiny_model(third_towers=towers, pair_weights={"image_third": 1.0})
    with pytest.raises(ValueError, match="5 non-negative weights"):
        tiny_model(third_towers=towers, pair_weights=(1.0, 1.0, 1.0))
    for name in ("text", "main", "Digits", "1st"):
        with pytest.raises(ValueError, match=repr(name)):
            tiny_model(third_towers={name: towers["digits"]})
    with pytest.raises(ValueError, match="not both"):
        ThreeTowerModel(
            image_tower=ImageTower(tiny_vit(), EMBEDDING_DIM),
            text_tower=tiny_text_tower(),
            third_tower=towers["digits"],
            third_towers={"thickness": towers["thickness"]},
        )


def test_lit_and_clip_configs_saved_with_three_pair_weights_load():
    # Saved before models could have several frozen towers: the default
    # (1/3, 1/3, 1/3) is in every LiT and CLIP config (saved_models/clip_tiny).
    for objective in ("lit", "clip"):
        config = dict(tiny_model(objective).get_config(), pair_weights=[1 / 3] * 3)
        assert ThreeTowerModel.from_config(config).pairs == ("image_text",)


@pytest.mark.parametrize("objective", ["lit", "clip"])
def test_lit_and_clip_round_trip(objective, tmp_path):
    run_round_trip_test(tiny_model(objective), toy_batch(2, seed=0), tmp_path)


CROSS_BACKEND_SCRIPT = """
import json, sys
import keras, numpy as np
from keras_3t import ImageTower
from keras_3t import ThreeTowerModel
from keras_3t.demo.toy import toy_batch
config_path, weights_path, keras_path, out_path = sys.argv[1:]
batch = toy_batch(8, seed=4)
text = {"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}
from_weights = ThreeTowerModel.from_config(json.load(open(config_path)))
from_weights.load_weights(weights_path)
from_file = keras.saving.load_model(keras_path)
np.savez(out_path, **{
    f"{name}_{kind}": keras.ops.convert_to_numpy(fn(x, alpha=0.5))
    for name, model in (("weights", from_weights), ("file", from_file))
    for kind, fn, x in (("image", model.encode_image, batch["images"]),
                        ("text", model.encode_text, text))
})
"""


def test_weights_saved_under_one_backend_load_under_another(trained_3t, tmp_path):
    model, _, _ = trained_3t
    backends = ["tensorflow", "jax", "torch"]
    other = backends[(backends.index(keras.backend.backend()) + 1) % 3]
    (tmp_path / "config.json").write_text(json.dumps(model.get_config()))
    model.save_weights(str(tmp_path / "model.weights.h5"))
    model.save(str(tmp_path / "model.keras"))
    script = tmp_path / "load.py"
    script.write_text(CROSS_BACKEND_SCRIPT)
    env = dict(os.environ, KERAS_BACKEND=other, TF_CPP_MIN_LOG_LEVEL="3")
    loader = subprocess.run(
        [
            sys.executable,
            str(script),
            str(tmp_path / "config.json"),
            str(tmp_path / "model.weights.h5"),
            str(tmp_path / "model.keras"),
            str(tmp_path / "out.npz"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert loader.returncode == 0, loader.stderr[-3000:]
    result = np.load(tmp_path / "out.npz")
    batch = toy_batch(8, seed=4)
    expected_image = to_numpy(model.encode_image(batch["images"], alpha=0.5))
    expected_text = to_numpy(model.encode_text(text_of(batch), alpha=0.5))
    for source in ("weights", "file"):
        np.testing.assert_allclose(result[f"{source}_image"], expected_image, atol=1e-5)
        np.testing.assert_allclose(result[f"{source}_text"], expected_text, atol=1e-5)


def test_lit_trains_only_the_text_tower_and_the_image_projection():
    model = tiny_model("lit")
    model.compile(learning_rate=3e-3)
    before = snapshot(model.variables)
    history = model.fit(toy_batch(64, seed=1), batch_size=BATCH_SIZE, epochs=2, verbose=0)
    after = snapshot(model.variables)
    assert set(history.history) == {"loss", "loss_image_text", "logit_scale_image_text"}
    assert not _changed(before, after, model.image_tower.backbone)
    assert _changed(before, after, model.image_tower.projection)
    assert len(_changed(before, after, model.text_tower)) == len(
        model.text_tower.trainable_variables
    )
    with pytest.raises(ValueError, match="frozen=True"):
        ThreeTowerModel(
            image_tower=tiny_model("clip").image_tower,
            text_tower=model.text_tower,
            objective="lit",
        )


def test_clip_has_no_third_tower_and_trains_both_towers():
    model = tiny_model("clip")
    assert model.third_tower is None
    assert not any("third" in v.path or "adaptor" in v.path for v in model.variables)
    model.compile(learning_rate=3e-3)
    before = snapshot(model.variables)
    history = model.fit(toy_batch(64, seed=1), batch_size=BATCH_SIZE, epochs=2, verbose=0)
    after = snapshot(model.variables)
    assert set(history.history) == {"loss", "loss_image_text", "logit_scale_image_text"}
    assert _changed(before, after, model.image_tower.backbone)
    assert _changed(before, after, model.text_tower)


def test_sigmoid_loss_shared_scale_shared_head_and_embedding_adaptors():
    model = tiny_model(
        loss="sigmoid",
        shared_logit_scale=True,
        shared_head=True,
        adaptor_input="embedding",
        pair_weights=(0.5, 0.25, 0.25),
    )
    assert len(model.logit_scales) == 1 and len(model.logit_biases) == 1
    assert model.third_tower.image_head is model.third_tower.text_head
    model.compile(learning_rate=3e-3)
    history = model.fit(toy_batch(96, seed=1), batch_size=BATCH_SIZE, epochs=3, verbose=0)
    assert set(history.history) == {
        "loss",
        "loss_image_text",
        "loss_image_third",
        "loss_text_third",
        "logit_scale",
        "logit_bias",
    }
    np.testing.assert_allclose(history.history["logit_bias"][0], -10.0, atol=0.1)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_logit_scale_is_exp_of_the_variable_even_above_the_maximum():
    model = tiny_model()
    model.logit_scales["_image_text"].assign(10.0)
    np.testing.assert_allclose(to_numpy(model.logit_scale("image_text")), np.exp(10.0), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(model.logit_scale("text_third")), 10.0, rtol=1e-6)


@pytest.mark.parametrize("accumulation_steps", [1, 2])
def test_a_logit_scale_above_the_maximum_is_clamped_by_the_step(accumulation_steps):
    # Each backend's step (and accumulation's) applies the optimizer.
    keras.utils.set_random_seed(0)
    model = tiny_model(logit_scale_init=math.log(200.0), logit_scale_max=math.log(100.0))
    model.compile(accumulation_steps=accumulation_steps)
    after_epoch = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: after_epoch.append(
            {suffix: to_numpy(v) for suffix, v in model.logit_scales.items()}
        )
    )
    history = model.fit(
        toy_batch(8, seed=0), batch_size=8, epochs=2, verbose=0, callbacks=[record]
    ).history
    maximum = np.float32(math.log(100.0))
    for suffix in model.logit_scales:
        logged = history[f"logit_scale{suffix}"]
        # The first step's forward pass and metric read the variable as it
        # was: exp(log 200), not the maximum.
        np.testing.assert_allclose(logged[0], np.exp(np.float32(math.log(200.0))), rtol=1e-6)
        # The optimizer step clamped the variable itself, exactly.
        assert after_epoch[0][suffix] == maximum, suffix
        # The second step read it there: its metric is exp of the variable.
        np.testing.assert_allclose(logged[1], np.exp(after_epoch[0][suffix]), rtol=1e-6)
        # At the maximum the gradient reaches it: the loss of an untrained
        # model falls with the scale, and the second step lowers it.
        assert after_epoch[1][suffix] < maximum, suffix


def test_mixed_bfloat16_trains_with_float32_losses():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = tiny_model("3t", third_backbone=tiny_vit())
        model.compile()
        batch = toy_batch(8, image_size=IMAGE_SIZE, seed=0)
        embeddings = model.embed_batch(batch, training=True)
        assert all(
            keras.backend.standardize_dtype(x.dtype) == "float32"
            for pair in embeddings.values()
            for x in pair
        )
        assert "bfloat16" in str(model.image_tower.backbone.layers[-1].compute_dtype)
        history = model.fit(tf.data.Dataset.from_tensors(batch).repeat(3), verbose=0).history
        assert np.isfinite(history["loss"]).all()
        assert model.logit_scales["_image_text"].dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
