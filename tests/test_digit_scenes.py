import numpy as np
import pytest

from keras_3t.datasets import digit_scenes

SOURCE = digit_scenes.load_source_digits()


def _scenes(num=300, **kwargs):
    return digit_scenes.make_scenes(num, source=SOURCE, **kwargs)


def test_source_digits_are_real_mnist():
    images, labels = SOURCE
    assert images.shape == (5000, 28, 28) and 0.0 <= images.min() < images.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)


def test_scenes_are_deterministic_per_seed():
    first, again, other = _scenes(seed=3), _scenes(seed=3), _scenes(seed=4)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["images"], other["images"])


def test_splits_and_the_pretraining_pool_share_no_source_digit():
    pools = digit_scenes.source_pools(5000)
    union = np.concatenate(list(pools.values()))
    assert len(union) == len(np.unique(union)) == 5000
    used = {}
    for split in ("train", "validation", "test"):
        ids = _scenes(split=split)["source_ids"]
        used[split] = set(ids[ids >= 0].tolist())
        assert used[split] <= set(pools[split].tolist())
    assert not used["train"] & used["validation"]
    assert not used["train"] & used["test"]
    assert not used["validation"] & used["test"]


def test_every_clean_caption_is_true_of_its_scene():
    scenes = _scenes(regime="clean")
    assert set(scenes["caption_kind"]) == {"exact"}
    for caption, digits, cells in zip(scenes["captions"], scenes["digits"], scenes["cells"]):
        count = (digits >= 0).sum()
        assert caption in digit_scenes.describe(digits[:count], cells[:count])


def test_images_show_the_digits_the_metadata_names():
    scenes = _scenes(num=50, regime="clean")
    images, labels = SOURCE
    for scene, digits, cells, ids in zip(
        scenes["images"], scenes["digits"], scenes["cells"], scenes["source_ids"]
    ):
        for digit, cell, index in zip(digits, cells, ids):
            if digit < 0:
                continue
            assert labels[index] == digit
            top, left = (cell // 2) * 28, (cell % 2) * 28
            patch = scene[top : top + 28, left : left + 28]
            assert any(
                np.allclose(patch, images[index][..., None] * colour, atol=1e-6)
                for colour in digit_scenes.COLOURS
            )
        empty = set(range(4)) - set(cells[cells >= 0].tolist())
        for cell in empty:
            top, left = (cell // 2) * 28, (cell % 2) * 28
            assert not scene[top : top + 28, left : left + 28].any()


def test_web_captions_are_noisy_at_the_stated_rates_and_kinds():
    scenes = _scenes(num=3000, regime="web", seed=1)
    kinds = scenes["caption_kind"]
    multi = (scenes["digits"] >= 0).sum(axis=1) > 1
    rates = digit_scenes.WEB_NOISE
    # Naming one digit of a one-digit scene is exact, so "partial" needs 2+.
    assert np.mean(kinds == "partial") == pytest.approx(rates["partial"] * multi.mean(), abs=0.03)
    assert np.mean(kinds == "generic") == pytest.approx(rates["generic"], abs=0.02)
    assert np.mean(kinds == "wrong") == pytest.approx(rates["wrong"], abs=0.02)
    for caption, kind, digits, cells in zip(
        scenes["captions"], kinds, scenes["digits"], scenes["cells"]
    ):
        count = (digits >= 0).sum()
        true_captions = digit_scenes.describe(digits[:count], cells[:count])
        if kind == "exact":
            assert caption in true_captions
        elif kind == "generic":
            assert caption in digit_scenes.GENERIC_CAPTIONS
        elif kind == "partial":
            assert any(
                caption in digit_scenes.describe([d], [c])
                for d, c in zip(digits[:count], cells[:count])
            )
        else:
            assert caption not in true_captions


def test_single_digit_zero_shot_task_and_dataset():
    task = digit_scenes.single_digit_task(40, source=SOURCE)
    assert task["class_names"] == [str(d) for d in range(10)]
    assert task["images"].shape == (40, 56, 56, 3) and task["labels"].shape == (40,)
    assert all("{}" in t for t in task["templates"])
    element = next(iter(digit_scenes.as_dataset(_scenes(num=4)).batch(4)))
    assert tuple(element["images"].shape) == (4, 56, 56, 3)
    assert element["captions"].dtype.name == "string"


def test_bad_arguments():
    with pytest.raises(ValueError, match="split must be"):
        _scenes(split="pretrain")
    with pytest.raises(ValueError, match="regime must be"):
        _scenes(regime="noisy")
