import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import EMBEDDING_DIM
from conftest import snapshot
from conftest import text_of
from conftest import tiny_model
from conftest import to_numpy

from keras_3t import ThreeTowerModel
from keras_3t.demo.toy import toy_batch

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


def test_keras_file_round_trip_gives_identical_embeddings(trained_3t, tmp_path):
    model, _, _ = trained_3t
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ThreeTowerModel)

    def as_json(m):
        return json.loads(json.dumps(m.get_config()))  # tuples → lists

    assert as_json(loaded) == as_json(model)
    batch = toy_batch(8, seed=4)
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


CROSS_BACKEND_SCRIPT = """
import json, sys
import keras, numpy as np
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


def test_logit_scale_is_clamped_at_log_100():
    model = tiny_model()
    model.logit_scales["_image_text"].assign(10.0)
    np.testing.assert_allclose(to_numpy(model.logit_scale("image_text")), 100.0, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(model.logit_scale("text_third")), 10.0, rtol=1e-6)


def test_compile_defaults_exclude_rank_below_two_from_weight_decay():
    model = tiny_model()
    model.compile()
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.AdamW)
    for variable in model.trainable_variables:
        decayed = optimizer._use_weight_decay(variable)
        assert decayed == (len(variable.shape) >= 2), variable.path


def test_compile_warmup_cosine_schedule_and_bad_arguments():
    model = tiny_model("clip")
    model.compile(learning_rate=1e-2, warmup_steps=10, total_steps=110)
    schedule = model.optimizer._learning_rate  # the schedule, not its value
    values = [float(to_numpy(schedule(step))) for step in (0, 5, 10, 60, 110)]
    np.testing.assert_allclose(values, [0.0, 5e-3, 1e-2, 5e-3, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="total_steps"):
        model.compile(warmup_steps=10)
    with pytest.raises(ValueError, match="computes its own contrastive loss"):
        model.compile(loss="mse")


def _batch(size=4, **changes):
    batch = toy_batch(size, seed=0)
    batch.update(changes)
    return {k: v for k, v in batch.items() if v is not None}


@pytest.mark.parametrize(
    "batch, message",
    [
        (_batch(images=np.zeros((4, 16, 16), "float32")), "rank 3"),
        (_batch(images=np.zeros((4, 16, 16, 1), "float32")), "channel count"),
        (_batch(images=np.zeros((4, 12, 16, 3), "float32")), "height"),
        (_batch(padding_mask=None), "without a padding_mask"),
        (_batch(size=1), "at least 2 examples"),
        (
            _batch(token_ids=np.ones((4, 9), "int32"), padding_mask=np.ones((4, 9), bool)),
            "longer than the text tower's sequence_length",
        ),
        ([np.zeros((4, 16, 16, 3))], "must be dicts"),
    ],
    ids=["image-rank", "channels", "height", "no-mask", "batch-of-one", "too-long", "not-dict"],
)
def test_bad_batches_raise_a_clear_value_error(batch, message):
    model = tiny_model()
    model.compile()
    with pytest.raises(ValueError, match=message):
        model.compute_objective(batch)
    with pytest.raises(ValueError, match=message):
        model.train_on_batch(batch)


def test_a_final_batch_of_one_in_fit_raises_on_every_backend():
    import tensorflow as tf

    model = tiny_model("clip")
    model.compile()
    # A dataset batched without drop_remainder: batch size unknown when traced.
    dataset = tf.data.Dataset.from_tensor_slices(toy_batch(5, seed=0)).batch(2)
    with pytest.raises(ValueError, match="at least 2 examples"):
        model.fit(dataset, verbose=0)


def test_alpha_is_checked():
    images = toy_batch(2, seed=0)["images"]
    model = tiny_model()
    for alpha in (-0.1, 1.5, "0.5"):
        with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\]"):
            model.encode_image(images, alpha=alpha)
    for objective in ("lit", "clip"):
        with pytest.raises(ValueError, match="only a '3t' model has"):
            tiny_model(objective).encode_text(text_of(toy_batch(2, seed=0)), alpha=0.5)


def test_constructor_rejects_inconsistent_models():
    clip = tiny_model("clip")
    with pytest.raises(ValueError, match="needs a third_tower"):
        ThreeTowerModel(clip.image_tower, clip.text_tower, objective="3t")
    with pytest.raises(ValueError, match="objective must be one of"):
        ThreeTowerModel(clip.image_tower, clip.text_tower, objective="siglip")
    with pytest.raises(ValueError, match="pair_weights"):
        tiny_model(pair_weights=(1.0, -1.0, 0.0))
    with pytest.raises(ValueError, match="embedding size"):
        ThreeTowerModel(
            clip.image_tower,
            tiny_model("clip").text_tower.__class__(
                vocabulary_size=20,
                sequence_length=4,
                embedding_dim=EMBEDDING_DIM + 1,
                hidden_dim=8,
                num_layers=1,
                num_heads=1,
                intermediate_dim=8,
            ),
            objective="clip",
        )
