"""keras_3t.demo.digit_scenes: real MNIST digits placed in captioned scenes."""

import numpy as np
import pytest

from keras_3t.demo import digit_scenes

SOURCE = digit_scenes.load_source_digits()


def _scenes(num=300, **kwargs):
    return digit_scenes.make_scenes(num, source=SOURCE, **kwargs)


def test_source_digits_are_real_mnist():
    images, labels = SOURCE
    assert images.shape == (5000, 28, 28) and 0.0 <= images.min() < images.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)


def test_each_load_of_the_source_digits_gets_arrays_of_its_own():
    # Parsed once per process: a caller that changes its arrays changes no one else's.
    images, labels = digit_scenes.load_source_digits()
    images[:] = 0.0
    labels[:] = -1
    again = digit_scenes.load_source_digits()
    np.testing.assert_array_equal(again[0], SOURCE[0])
    np.testing.assert_array_equal(again[1], SOURCE[1])


def test_scenes_are_deterministic_per_seed():
    first, again, other = _scenes(seed=3), _scenes(seed=3), _scenes(seed=4)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["images"], other["images"])


@pytest.mark.parametrize("labelled, pairs", [(150, 300), (500, 2500), (1500, 2500)])
def test_pools_are_disjoint_and_nested_by_size(labelled, pairs):
    pools = digit_scenes.source_pools(5000, labelled_digits=labelled, train_digits=pairs)
    assert {name: len(pool) for name, pool in pools.items()} == {
        "pretrain": labelled,
        "train": pairs,
        "validation": 500,
        "test": 500,
    }
    union = np.concatenate(list(pools.values()))
    assert len(union) == len(np.unique(union))
    # A larger pool holds the smaller one; validation and test never move.
    largest = digit_scenes.source_pools(5000, labelled_digits=1500, train_digits=2500)
    for name in pools:
        assert set(pools[name].tolist()) <= set(largest[name].tolist())
    assert all(np.array_equal(pools[name], largest[name]) for name in ("validation", "test"))
    # Sorted indices of label-sorted digits: every pool mixes all ten digits.
    labels = SOURCE[1]
    for pool in pools.values():
        assert np.bincount(labels[pool], minlength=10).min() >= len(pool) // 20


def test_pools_refuse_to_overlap_or_to_be_empty():
    with pytest.raises(ValueError, match="more than the 4000 source digits"):
        digit_scenes.source_pools(5000, labelled_digits=1600, train_digits=2500)
    with pytest.raises(ValueError, match="labelled_digits must be a positive integer"):
        digit_scenes.source_pools(5000, labelled_digits=0)
    with pytest.raises(ValueError, match="train_digits must be a positive integer"):
        digit_scenes.source_pools(5000, train_digits=2.5)


def test_splits_and_the_pretraining_pool_share_no_source_digit():
    pools = digit_scenes.source_pools(5000)
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


@pytest.mark.parametrize("regime", ["web", "clean"])
def test_training_scenes_draw_on_the_train_pool_of_p_digits(regime):
    for pairs in (300, digit_scenes.DEFAULT_TRAIN_DIGITS):
        pool = set(digit_scenes.source_pools(5000, train_digits=pairs)["train"].tolist())
        scenes = _scenes(4000, regime=regime, train_digits=pairs)
        ids = set(scenes["source_ids"][scenes["source_ids"] >= 0].tolist())
        # 4,000 scenes hold ~8,000 digits: nearly every digit of the pool.
        assert ids <= pool and len(ids) > 0.9 * pairs
        assert set(scenes["digits"][scenes["digits"] >= 0].tolist()) == set(range(10))
    # Evaluation splits do not depend on P.
    for key, value in _scenes(50, split="test", train_digits=300).items():
        np.testing.assert_array_equal(value, _scenes(50, split="test")[key])


@pytest.mark.parametrize("task", sorted(digit_scenes.PRETRAINING_TASKS))
def test_pretraining_scenes_come_from_the_pretrain_pool_only(task):
    pools = digit_scenes.source_pools(5000, labelled_digits=150)
    train = digit_scenes.pretraining_scenes(
        task, "train", copies=2, source=SOURCE, labelled_digits=150
    )
    held_out = digit_scenes.pretraining_scenes(task, "held_out", copies=1, source=SOURCE)
    train_ids, held_ids = set(train["source_ids"]), set(held_out["source_ids"])
    assert train_ids == set(pools["pretrain"].tolist()) and len(train["labels"]) == 300
    # Held out: the validation pool, which no classifier or training scene uses.
    assert held_ids == set(pools["validation"].tolist())
    num_classes = len(digit_scenes.PRETRAINING_TASKS[task])
    for part in (train, held_out):
        assert set(part["labels"].tolist()) == set(range(num_classes))
    # Batches mix classes: the first 64 labels are not one class.
    assert len(set(train["labels"][:64].tolist())) > 1
    images, labels = SOURCE
    if task == "digit":
        np.testing.assert_array_equal(train["labels"], labels[train["source_ids"]])
    # Each scene shows its source digit, tinted, in one cell.
    scene, digit = train["images"][0], images[train["source_ids"][0]]
    cells = [scene[r : r + 28, c : c + 28].max(axis=-1) for r in (0, 28) for c in (0, 28)]
    matches = [
        np.allclose(cell / max(cell.max(), 1e-6), digit / digit.max(), atol=1e-5) for cell in cells
    ]
    assert sum(matches) == 1


def test_stroke_thickness_is_ink_tertiles_within_each_digit_class():
    images, labels = SOURCE
    thickness = digit_scenes.stroke_thickness(images, labels)
    ink = images.reshape(len(images), -1).sum(axis=1)
    for digit in range(10):
        members = labels == digit
        counts = np.bincount(thickness[members], minlength=3)
        assert counts.min() >= 160  # ~500 / 3 each
        by_class = [ink[members][thickness[members] == k] for k in range(3)]
        assert by_class[0].max() <= by_class[1].min() and by_class[1].max() <= by_class[2].min()


def test_pretraining_scenes_reject_unknown_task_and_part():
    with pytest.raises(ValueError, match="task must be one of"):
        digit_scenes.pretraining_scenes("colour", source=SOURCE)
    with pytest.raises(ValueError, match="part must be"):
        digit_scenes.pretraining_scenes("digit", part="test", source=SOURCE)
