"""The fast paths: the third-tower cache, gradient accumulation, mixed precision."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_3t import presets
from keras_3t.data import from_caption_file
from keras_3t.data import load_third_tower_cache
from keras_3t.data import make_dataset
from keras_3t.data import write_third_tower_cache
from keras_3t.demo.toy import toy_batch
from tests.conftest import IMAGE_SIZE
from tests.conftest import load_script
from tests.conftest import tiny_model
from tests.conftest import tiny_text_tower
from tests.conftest import tiny_vit
from tests.conftest import to_numpy
from tests.conftest import write_digit_scene_captions

BATCH = 8


def _digit_scenes(tmp_path, count=16):
    path = write_digit_scene_captions(str(tmp_path), count)
    return path, from_caption_file(path, image_root=str(tmp_path))


def _preset_model():
    model = presets.load("3t_tiny")
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    return model


def _image_size(model):
    return model.image_tower.image_shape[0]


# --- Third-tower cache -------------------------------------------------------


def test_cached_third_tower_trains_like_the_live_one(tmp_path):
    _, examples = _digit_scenes(tmp_path)
    live, cached = _preset_model(), _preset_model()
    size = _image_size(live)
    cache_dir = str(tmp_path / "captions.csv.third_tower_cache")
    manifest = write_third_tower_cache(live, examples, cache_dir, size, batch_size=5)
    assert manifest["images"] == 16 and manifest["feature_dim"] == live.third_tower.feature_dim
    cache = load_third_tower_cache(cache_dir, cached)

    def data(model, **kwargs):
        return make_dataset(
            examples, model.preprocessor, size, BATCH, seed=0, random_crop_scale=None, **kwargs
        )

    # Peeks use their own datasets: a dataset's later iterators shuffle on.
    live_batch = next(iter(data(live)))
    cached_batch = next(iter(data(cached, third_tower_cache=cache)))
    np.testing.assert_array_equal(live_batch["images"].numpy(), cached_batch["images"].numpy())
    features = to_numpy(live.third_tower.features(live_batch["images"].numpy()))
    np.testing.assert_allclose(cached_batch["third_features"].numpy(), features, atol=1e-5)

    initial = [to_numpy(w) for w in live.trainable_weights]
    live_history = live.fit(data(live), steps_per_epoch=3, verbose=0).history
    cached_history = cached.fit(
        data(cached, third_tower_cache=cache), steps_per_epoch=3, verbose=0
    ).history
    np.testing.assert_allclose(live_history["loss"], cached_history["loss"], rtol=1e-5)
    moved = 0.0
    for live_weight, cached_weight, start in zip(
        live.trainable_weights, cached.trainable_weights, initial
    ):
        np.testing.assert_allclose(
            to_numpy(cached_weight), to_numpy(live_weight), atol=1e-5, err_msg=live_weight.path
        )
        moved = max(moved, float(np.abs(to_numpy(live_weight) - start).max()))
    assert moved > 1e-3  # training moved the weights: the comparison can fail


def test_cache_refuses_augmentation_other_towers_and_changed_data(tmp_path):
    path, examples = _digit_scenes(tmp_path, 8)
    model = _preset_model()
    size = _image_size(model)
    cache_dir = str(tmp_path / "cache")
    write_third_tower_cache(model, examples, cache_dir, size)
    cache = load_third_tower_cache(cache_dir, model)

    with pytest.raises(ValueError, match="augments it"):
        make_dataset(examples, model.preprocessor, size, 4, third_tower_cache=cache)
    with pytest.raises(ValueError, match="augments it"):
        make_dataset(
            examples,
            model.preprocessor,
            size,
            4,
            random_crop_scale=None,
            flip=True,
            third_tower_cache=cache,
        )
    with pytest.raises(ValueError, match="computed on 56-pixel crops"):
        make_dataset(
            examples, model.preprocessor, 48, 4, random_crop_scale=None, third_tower_cache=cache
        )

    other = _preset_model()
    weight = other.third_tower.backbone.weights[0]
    weight.assign(weight + 0.01)
    with pytest.raises(ValueError, match="another third tower"):
        load_third_tower_cache(cache_dir, other)
    with pytest.raises(ValueError, match="for 3T models"):
        load_third_tower_cache(cache_dir, presets.load("clip_tiny"))

    # An image replaced under the same id, and an id the cache lacks.
    with open(os.path.join(tmp_path, "scene_1.png"), "rb") as file:
        replacement = file.read()
    with open(os.path.join(tmp_path, "scene_0.png"), "wb") as file:
        file.write(replacement)
    changed = from_caption_file(path, image_root=str(tmp_path))
    with pytest.raises(tf.errors.InvalidArgumentError, match="differs from the one cached"):
        list(
            make_dataset(
                changed, model.preprocessor, size, 4, training=False, third_tower_cache=cache
            )
        )
    extra = examples.map(lambda example: {**example, "image_id": example["image_id"] + 100})
    with pytest.raises(tf.errors.InvalidArgumentError, match="is not in the third-tower cache"):
        list(
            make_dataset(
                extra, model.preprocessor, size, 4, training=False, third_tower_cache=cache
            )
        )


def test_cache_is_never_overwritten_and_corruption_is_named(tmp_path):
    _, examples = _digit_scenes(tmp_path, 4)
    model = _preset_model()
    cache_dir = str(tmp_path / "cache")
    write_third_tower_cache(model, examples, cache_dir, 56)
    before = {
        name: open(os.path.join(cache_dir, name), "rb").read() for name in os.listdir(cache_dir)
    }
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_third_tower_cache(model, examples, cache_dir, 56)
    assert {
        name: open(os.path.join(cache_dir, name), "rb").read() for name in os.listdir(cache_dir)
    } == before
    # No staging folder left beside the cache.
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".third_tower_cache")]

    features = os.path.join(cache_dir, "features.npy")
    with open(features, "r+b") as file:
        file.truncate(os.path.getsize(features) // 2)
    with pytest.raises(ValueError, match="corrupt"):
        load_third_tower_cache(cache_dir, model)
    os.remove(features)
    with pytest.raises(FileNotFoundError, match="missing features.npy"):
        load_third_tower_cache(cache_dir, model)
    manifest = write_third_tower_cache(model, examples, cache_dir, 56, overwrite=True)
    assert (
        manifest["images"] == 4 and load_third_tower_cache(cache_dir, model).features.shape[0] == 4
    )


def test_cache_writer_reads_the_source_once(tmp_path):
    model = _preset_model()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 40, 40, 3), dtype="uint8")
    # Per-caption rows: image 1 has three captions, image 2 two.
    ids = [1, 2, 1, 3, 2, 1]
    passes = []

    def rows():
        passes.append(1)
        for image_id in ids:
            yield {"image": images[image_id - 1], "caption": "a caption", "image_id": image_id}

    examples = tf.data.Dataset.from_generator(
        rows,
        output_signature={
            "image": tf.TensorSpec((40, 40, 3), tf.uint8),
            "caption": tf.TensorSpec((), tf.string),
            "image_id": tf.TensorSpec((), tf.int64),
        },
    )
    cache_dir = str(tmp_path / "cache")
    manifest = write_third_tower_cache(model, examples, cache_dir, 56, batch_size=2)
    assert len(passes) == 1
    cache = load_third_tower_cache(cache_dir, model)
    assert manifest["images"] == 3 and list(cache.image_ids) == [1, 2, 3]
    # Each row is its own image's features, whatever the batching.
    alone = write_third_tower_cache(model, examples.take(1), str(tmp_path / "alone"), 56)
    assert alone["images"] == 1
    np.testing.assert_allclose(
        load_third_tower_cache(str(tmp_path / "alone"), model).features[0],
        cache.features[0],
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="got no examples"):
        write_third_tower_cache(model, examples.take(0), str(tmp_path / "empty"), 56)
    assert not os.path.exists(tmp_path / "empty")


def test_model_checks_cached_features():
    model = tiny_model("3t", third_backbone=tiny_vit())
    model.compile()
    batch = toy_batch(BATCH, image_size=IMAGE_SIZE, seed=0)
    with pytest.raises(ValueError, match=r"third_features must have shape \(batch, 32\)"):
        model.train_on_batch({**batch, "third_features": np.zeros((BATCH, 7), "float32")})
    with pytest.raises(ValueError, match="different batch sizes"):
        model.train_on_batch({**batch, "third_features": np.zeros((BATCH - 1, 32), "float32")})
    clip = tiny_model("clip")
    clip.compile()
    with pytest.raises(ValueError, match="uses no third tower"):
        clip.train_on_batch({**batch, "third_features": np.zeros((BATCH, 32), "float32")})


# --- Gradient accumulation ---------------------------------------------------


def _one_sgd_step(accumulation_steps, objective="3t", loss="softmax"):
    keras.utils.set_random_seed(0)
    model = tiny_model(
        objective, third_backbone=tiny_vit() if objective == "3t" else None, loss=loss
    )
    before = [to_numpy(v) for v in model.trainable_variables]
    # SGD with learning rate 1: each weight moves by exactly its gradient.
    model.compile(optimizer=keras.optimizers.SGD(1.0), accumulation_steps=accumulation_steps)
    logs = model.train_on_batch(toy_batch(BATCH, image_size=IMAGE_SIZE, seed=1), return_dict=True)
    # Keyed by position and name (paths carry each model's numbered names).
    return logs, {
        (i, v.name): start - to_numpy(v)
        for i, (v, start) in enumerate(zip(model.trainable_variables, before))
    }


@pytest.mark.parametrize(
    "objective,loss", [("3t", "softmax"), ("3t", "sigmoid"), ("clip", "softmax")]
)
def test_accumulated_gradients_equal_the_big_batch(objective, loss):
    logs, gradients = _one_sgd_step(1, objective, loss)
    for steps in (2, 4):
        accumulated_logs, accumulated = _one_sgd_step(steps, objective, loss)
        for name, value in logs.items():
            np.testing.assert_allclose(accumulated_logs[name], value, rtol=1e-6, err_msg=name)
        for path, gradient in gradients.items():
            np.testing.assert_allclose(
                accumulated[path], gradient, atol=2e-6, rtol=1e-4, err_msg=str(path)
            )
    # The logit scale's gradient is counted once, not once per micro-batch.
    scale = [g for (_, name), g in gradients.items() if name.startswith("logit_scale")][0]
    assert abs(scale) > 1e-4


def test_accumulation_runs_the_frozen_third_tower_once_per_micro_batch():
    model = tiny_model("3t", third_backbone=tiny_vit())
    model.compile(accumulation_steps=4)
    calls = {"embed_batch": 0, "third_features": 0}

    def counted(name, function):
        def call(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return call

    # Counted per trace on TensorFlow and JAX, per step on PyTorch: compare
    # the two counts, not either with a number of steps.
    model.embed_batch = counted("embed_batch", model.embed_batch)
    model.third_tower.features = counted("third_features", model.third_tower.features)
    model.train_on_batch(toy_batch(BATCH, image_size=IMAGE_SIZE, seed=1))
    # Each micro-batch is embedded twice (without, then with gradient).
    assert calls["embed_batch"] > 0
    assert calls["third_features"] * 2 == calls["embed_batch"]


def test_accumulation_refuses_what_would_make_it_inexact(tmp_path):
    model = tiny_model("3t", third_backbone=tiny_vit())
    model.compile(accumulation_steps=3)
    with pytest.raises(ValueError, match="does not divide into accumulation_steps"):
        model.train_on_batch(toy_batch(BATCH, image_size=IMAGE_SIZE, seed=0))
    with pytest.raises(ValueError, match="positive integer"):
        model.compile(accumulation_steps=0)
    with pytest.raises(ValueError, match="dropout"):
        tiny_model_with_dropout().compile(accumulation_steps=2)
    # The setting is saved with the model and restored with its optimizer.
    model.compile(accumulation_steps=4)
    path = str(tmp_path / "model.keras")
    model.save(path)
    assert keras.saving.load_model(path).accumulation_steps == 4


def tiny_model_with_dropout():
    from keras_3t import ImageTower
    from keras_3t import ThreeTowerModel

    return ThreeTowerModel(
        image_tower=ImageTower(tiny_vit(), 16),
        text_tower=tiny_text_tower(dropout=0.1),
        objective="clip",
    )


# --- Causal text tower, mixed precision ---------------------------------------


def test_causal_text_tower_ignores_later_tokens():
    batch = toy_batch(2, image_size=IMAGE_SIZE, seed=0)
    changed = {key: np.array(value) for key, value in batch.items()}
    changed["token_ids"][:, 1:] = (changed["token_ids"][:, 1:] + 1) % 10 + 2
    for causal in (True, False):
        tower = tiny_text_tower(causal=causal, pooling="first")
        text = {key: batch[key] for key in ("token_ids", "padding_mask")}
        other = {key: changed[key] for key in ("token_ids", "padding_mask")}
        same = np.allclose(
            to_numpy(tower(text)["embedding"]), to_numpy(tower(other)["embedding"]), atol=1e-6
        )
        assert same == causal
    assert tiny_text_tower(causal=True).get_config()["causal"] is True


def test_mixed_bfloat16_trains_with_float32_losses():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = tiny_model("3t", third_backbone=tiny_vit())
        model.compile()
        batch = toy_batch(BATCH, image_size=IMAGE_SIZE, seed=0)
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


def test_train_recipe_with_cache_accumulation_and_bfloat16(tmp_path):
    path, _ = _digit_scenes(tmp_path, 16)
    recipe = load_script("recipes/train.py")
    cache_dir = path + ".third_tower_cache"
    arguments = [
        "--preset",
        "3t_tiny",
        "--data",
        path,
        "--image-root",
        str(tmp_path),
        "--third-tower-cache",
        cache_dir,
        "--accumulation-steps",
        "2",
        "--mixed-precision",
        "--batch-size",
        "8",
        "--steps-per-epoch",
        "2",
        "--output",
        str(tmp_path / "run"),
    ]
    try:
        history = recipe.main(arguments)
        assert np.isfinite(history["loss"]).all()
        written = os.path.getmtime(os.path.join(cache_dir, "features.npy"))
        history = recipe.main(arguments + ["--overwrite"])  # reads the cache, does not rewrite it
        assert os.path.getmtime(os.path.join(cache_dir, "features.npy")) == written
        assert np.isfinite(history["loss"]).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    with pytest.raises(SystemExit, match="for 3T presets"):
        recipe.main(
            [
                "--preset",
                "clip_tiny",
                "--data",
                path,
                "--image-root",
                str(tmp_path),
                "--third-tower-cache",
                cache_dir,
                "--output",
                str(tmp_path / "clip"),
            ]
        )


def test_train_step_benchmark_runs_and_reports_ratios(tmp_path):
    import json
    import subprocess
    import sys

    output = str(tmp_path / "train_step.json")
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "train_step.py")
    subprocess.run(
        [
            sys.executable,
            script,
            "--sizes",
            "tiny",
            "--backends",
            keras.backend.backend(),
            "--objectives",
            "clip",
            "3t_cached",
            "third_forward",
            "--batch",
            "8",
            "--warmup",
            "1",
            "--steps",
            "2",
            "--output",
            output,
        ],
        check=True,
        capture_output=True,
    )
    report = json.load(open(output))
    [targets] = report["targets"]
    assert targets["3t_cached_over_clip_step_time"] > 0 and targets["third_forward_s"] > 0
    assert {run["objective"] for run in report["runs"]} == {"clip", "3t_cached", "third_forward"}
    # Timed in lockstep rounds: one step of every objective per round.
    assert all(len(run["step_times_s"]) == 2 for run in report["runs"])
    # The paired ratio: the median over rounds of the two steps' ratio.
    times = {run["objective"]: run["step_times_s"] for run in report["runs"]}
    per_round = [a / b for a, b in zip(times["3t_cached"], times["clip"])]
    paired = targets["paired_3t_cached_over_clip_step_time"]
    assert paired["rounds"] == 2
    assert paired["median"] == pytest.approx(sum(per_round) / 2)
    assert min(per_round) <= paired["ci95"][0] <= paired["ci95"][1] <= max(per_round)
    assert len({run["process_id"] for run in report["runs"]}) == 1
    assert report["machine"]["cores"] == os.cpu_count()
    separate = str(tmp_path / "separate.json")
    subprocess.run(
        [
            sys.executable,
            script,
            "--sizes",
            "tiny",
            "--backends",
            keras.backend.backend(),
            "--objectives",
            "clip",
            "third_forward",
            "--process-per-objective",
            "--batch",
            "8",
            "--warmup",
            "1",
            "--steps",
            "2",
            "--turn-steps",
            "2",
            "--output",
            separate,
        ],
        check=True,
        capture_output=True,
    )
    runs = json.load(open(separate))["runs"]
    assert [run["objective"] for run in runs] == ["clip", "third_forward"]
    assert len({run["process_id"] for run in runs}) == 2
    # One time per round, whatever the steps per turn.
    assert all(run["turn_steps"] == 2 and len(run["step_times_s"]) == 2 for run in runs)
    with pytest.raises(subprocess.CalledProcessError):  # never overwrites a report
        subprocess.run(
            [sys.executable, script, "--output", output], check=True, capture_output=True
        )


def test_a_turn_times_the_steps_after_its_first(monkeypatch):
    import subprocess
    import sys

    train_step = load_script("benchmarks/train_step.py")
    # A fake clock on which the steps take 5, 1, 2 and 3 s.
    durations, calls = [5.0, 1.0, 2.0, 3.0], []
    monkeypatch.setattr(train_step.time, "perf_counter", lambda: sum(durations[: len(calls)]))
    # A turn of four: the first step untimed, the other three averaged.
    assert train_step.timed_turn(lambda: calls.append("step"), 4) == pytest.approx(2.0)
    assert len(calls) == 4
    calls.clear()
    assert train_step.timed_turn(lambda: calls.append("step"), 1) == pytest.approx(5.0)
    assert len(calls) == 1
    # open_clip's worker takes the same protocol and timing from train_step.py.
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "openclip_lockstep.py")
    usage = subprocess.run(
        [sys.executable, script, "--help"], check=True, capture_output=True, text=True
    )
    assert "--turn-steps" in usage.stdout
    rejected = subprocess.run(
        [sys.executable, script, "--open-clip-step", "x", "--config", "{}", "--turn-steps", "0"],
        capture_output=True,
        text=True,
    )
    assert rejected.returncode == 2 and "must be a positive integer" in rejected.stderr


def test_tower_breakdown_times_each_tower_both_ways(tmp_path):
    import json
    import subprocess
    import sys

    output = str(tmp_path / "breakdown.json")
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "tower_breakdown.py")
    subprocess.run(
        [
            sys.executable,
            script,
            "--sizes",
            "tiny",
            "--backends",
            keras.backend.backend(),
            "--batch",
            "8",
            "--warmup",
            "1",
            "--steps",
            "2",
            "--torch-operators",
            "5",
            "--output",
            output,
        ],
        check=True,
        capture_output=True,
    )
    [result] = json.load(open(output))["results"]
    # PyTorch's CLIP steps also come with their profiled operators.
    assert ("aten::" in result.get("torch_operators", "")) == (keras.backend.backend() == "torch")
    medians = result["median_ms"]
    assert result["backend"] == keras.backend.backend() and result["rounds"] == 2
    breakdown = load_script("benchmarks/tower_breakdown.py")
    assert all(medians[part] > 0 for part in breakdown.PARTS)
    for tower in ("image", "text"):
        assert medians[f"{tower}_backward"] == pytest.approx(
            medians[f"{tower}_forward_backward"] - medians[f"{tower}_forward"], abs=0.02
        )
    with pytest.raises(subprocess.CalledProcessError):  # never overwrites a report
        subprocess.run(
            [sys.executable, script, "--output", output], check=True, capture_output=True
        )


@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="jax.grad returns zeros, never None, for a value the loss does not read",
)
def test_tower_breakdown_refuses_a_backward_pass_that_misses_weights():
    breakdown = load_script("benchmarks/tower_breakdown.py")
    used, unused = keras.layers.Dense(3, name="used"), keras.layers.Dense(3, name="unused")
    tower = keras.Sequential([keras.Input((4,)), used, unused])
    inputs = keras.ops.ones((2, 4))
    _, forward_backward = breakdown.compiled_parts(tower, lambda _, x: used(x), inputs)
    with pytest.raises(RuntimeError, match="unused/kernel"):
        forward_backward()


def test_the_benchmarked_step_is_the_step_fit_takes():
    # benchmarks/train_step.py times the train function fit calls (on JAX
    # train_on_batch): three of its steps train a model as fit's three do.
    step_function = load_script("benchmarks/train_step.py").train_step_function
    batch = toy_batch(BATCH, image_size=IMAGE_SIZE, seed=0)
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        model = tiny_model()
        model.compile()
        models.append(model)
    step = step_function(models[0], batch)  # its first step builds, as fit does
    step()
    logs = step()
    history = models[1].fit(tf.data.Dataset.from_tensors(batch).repeat(3), verbose=0).history
    for benchmarked, fitted in zip(models[0].trainable_variables, models[1].trainable_variables):
        np.testing.assert_allclose(to_numpy(benchmarked), to_numpy(fitted), rtol=1e-5, atol=1e-6)
    assert int(to_numpy(models[0].optimizer.iterations)) == 3
    assert np.isfinite(float(logs["loss"])) and np.isfinite(history["loss"][-1])


def test_paired_ratios_pool_the_repeats_and_give_each_one():
    paired = load_script("benchmarks/train_step.py").paired

    def run(objective, repeat, times):
        return {
            "size": "tiny",
            "side": "keras_3t",
            "backend": "torch",
            "objective": objective,
            "repeat": repeat,
            "step_times_s": times,
        }

    runs = [
        run("clip", 0, [1.0, 1.0, 1.0]),
        run("3t_cached", 0, [1.1, 1.2, 1.1]),
        run("clip", 1, [2.0, 2.0, 2.0]),
        run("3t_cached", 1, [2.0, 2.2, 1.8]),
    ]
    result = paired(runs, "tiny", ("keras_3t", "torch", "3t_cached"), ("keras_3t", "torch", "clip"))
    assert result["rounds"] == 6
    assert result["median"] == pytest.approx(1.1)  # of 1.1, 1.2, 1.1, 1.0, 1.1, 0.9
    first, second = result["by_repeat"]
    assert (first["rounds"], second["rounds"]) == (3, 3)
    assert first["median"] == pytest.approx(1.1) and second["median"] == pytest.approx(1.0)
    # One repeat: nothing to split.
    assert "by_repeat" not in paired(
        runs[:2], "tiny", ("keras_3t", "torch", "3t_cached"), ("keras_3t", "torch", "clip")
    )
