"""Every keras-hub image backbone family as the frozen third tower and as LiT's locked tower.

One tiny random-initialised backbone per family (nothing is downloaded),
built once and put through every check: pooling as keras-hub's own
classifier pools, a 3T step that leaves the backbone (batch norm statistics
included) unchanged, config / `.keras` / keras-hub preset round trips with
equal features, and the third-tower cache read back by the reloaded tower.
docs/presets.md's family table is checked against `FAMILIES`.
"""

import os
import re

import keras
import keras_hub
import numpy as np
import pytest

from keras_3t import ImageTower
from keras_3t import ThirdTower
from keras_3t import ThreeTowerModel
from keras_3t.data import load_third_tower_cache
from keras_3t.data import write_third_tower_cache
from keras_3t.demo.toy import toy_batch
from tests.helpers import ROOT
from tests.helpers import digit_scene_source
from tests.helpers import run_round_trip_test
from tests.helpers import snapshot
from tests.helpers import tiny_text_tower
from tests.helpers import tiny_vit
from tests.helpers import to_numpy

SIZE = 16
SQUARE = dict(image_shape=(SIZE, SIZE, 3))
TINY_VIT_LIKE = dict(SQUARE, patch_size=4, num_layers=1, hidden_dim=16, num_heads=2)

# family: (keras-hub class, tiny config, the pooling "auto" resolves to)
FAMILIES = {
    "ViT": ("ViTBackbone", dict(TINY_VIT_LIKE, mlp_dim=32), "token"),
    "DeiT": ("DeiTBackbone", dict(TINY_VIT_LIKE, intermediate_dim=32), "token"),
    "DINOv2": (
        "DINOV2Backbone",
        dict(TINY_VIT_LIKE, intermediate_dim=32, position_embedding_shape=(SIZE, SIZE, 3)),
        "token",
    ),
    "DINOv3": (
        "DINOV3Backbone",
        dict(TINY_VIT_LIKE, intermediate_dim=32, num_register_tokens=0),
        "token",
    ),
    "ResNet": (
        "ResNetBackbone",
        dict(
            SQUARE,
            input_conv_filters=[64],
            input_conv_kernel_sizes=[3],
            stackwise_num_filters=[64],  # keras-hub requires 64 first
            stackwise_num_blocks=[1],
            stackwise_num_strides=[1],
            block_type="basic_block",
            use_pre_activation=False,
        ),
        "mean",
    ),
    "EfficientNet": (
        "EfficientNetBackbone",
        dict(
            input_shape=(SIZE, SIZE, 3),
            stackwise_width_coefficients=[1.0],
            stackwise_depth_coefficients=[1.0],
            stackwise_kernel_sizes=[3],
            stackwise_num_repeats=[1],
            stackwise_input_filters=[8],
            stackwise_output_filters=[8],
            stackwise_expansion_ratios=[1],
            stackwise_squeeze_and_excite_ratios=[0.0],
            stackwise_strides=[1],
            stackwise_block_types=["fused"],
        ),
        "mean",
    ),
    "MobileNet": (
        "MobileNetBackbone",
        dict(
            SQUARE,
            stackwise_expansion=[[16]],
            stackwise_num_blocks=[1],
            stackwise_num_filters=[[8]],
            stackwise_kernel_size=[[3]],
            stackwise_num_strides=[[1]],
            stackwise_se_ratio=[[None]],
            stackwise_activation=[["relu"]],
            stackwise_padding=[[1]],
            output_num_filters=8,
            depthwise_filters=8,
            depthwise_stride=1,
            depthwise_residual=False,
            last_layer_filter=16,
            input_num_filters=8,
        ),
        "mean",
    ),
    "MobileNetV5": (
        "MobileNetV5Backbone",
        dict(
            SQUARE,
            stackwise_block_types=[["er"]],
            stackwise_num_blocks=[1],
            stackwise_num_filters=[[8]],
            stackwise_strides=[[2]],
            stackwise_act_layers=[["relu"]],
            stackwise_exp_ratios=[[1.0]],
            stackwise_se_ratios=[[0.0]],
            stackwise_dw_kernel_sizes=[[0]],
            stackwise_dw_start_kernel_sizes=[[0]],
            stackwise_dw_end_kernel_sizes=[[0]],
            stackwise_exp_kernel_sizes=[[3]],
            stackwise_pw_kernel_sizes=[[1]],
            stackwise_num_heads=[[0]],
            stackwise_key_dims=[[0]],
            stackwise_value_dims=[[0]],
            stackwise_kv_strides=[[0]],
            stackwise_use_cpe=[[False]],
            stem_size=8,
            num_features=16,
            use_msfa=False,
        ),
        "mean",
    ),
    "DenseNet": (
        "DenseNetBackbone",
        dict(SQUARE, stackwise_num_repeats=[1], growth_rate=8),
        "mean",
    ),
    "CSPNet": (
        "CSPNetBackbone",
        dict(
            SQUARE,
            stem_filters=8,
            stem_kernel_size=3,
            stem_strides=2,
            stackwise_depth=[1],
            stackwise_strides=[1],
            stackwise_num_filters=[8],
            block_type="dark_block",
            stage_type="dark",
        ),
        "mean",
    ),
    "VGG": (
        "VGGBackbone",
        dict(SQUARE, stackwise_num_repeats=[1], stackwise_num_filters=[8]),
        "mean",
    ),
    "Xception": (
        "XceptionBackbone",
        dict(SQUARE, stackwise_conv_filters=[[8]], stackwise_pooling=[False]),
        "mean",
    ),
    "HGNetV2": (
        "HGNetV2Backbone",
        dict(
            SQUARE,
            depths=[1],
            embedding_size=8,
            hidden_sizes=[8],
            stem_channels=[3, 8, 8],
            hidden_act="relu",
            use_learnable_affine_block=False,
            stackwise_stage_filters=[(8, 8, 8, 1, 1, 3)],
            apply_downsample=[False],
            use_lightweight_conv_block=[False],
        ),
        "mean",
    ),
    "MiT": (
        "MiTBackbone",
        dict(
            SQUARE,
            layerwise_depths=[1],
            num_layers=1,
            layerwise_num_heads=[1],
            layerwise_sr_ratios=[1],
            max_drop_path_rate=0.0,
            layerwise_patch_sizes=[7],
            layerwise_strides=[4],
            hidden_dims=[8],
        ),
        "mean",
    ),
    "Swin Transformer": (
        "SwinTransformerBackbone",
        dict(
            SQUARE,
            embed_dim=8,
            depths=(1,),
            num_heads=(1,),
            window_size=4,
            patch_size=4,
            drop_path=0.0,
        ),
        "mean",
    ),
    "CLIP vision encoder": (
        "CLIPVisionEncoder",
        dict(TINY_VIT_LIKE, intermediate_dim=32),
        "token",
    ),
    "SigLIP vision encoder": (
        "SigLIPVisionEncoder",
        dict(TINY_VIT_LIKE, intermediate_dim=32),
        "none",
    ),
}


def build(family):
    class_name, config, _ = FAMILIES[family]
    return getattr(keras_hub.models, class_name)(**config)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """A few real digit scenes, for the third-tower cache."""
    return digit_scene_source(tmp_path_factory.mktemp("scenes"), count=4)[1]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_as_third_tower_and_locked_image_tower(family, examples, tmp_path):
    _, _, pooling = FAMILIES[family]
    backbone = build(family)
    images = toy_batch(4, image_size=SIZE, seed=0)["images"]
    tower = ThirdTower(backbone, embedding_dim=8)
    assert tower.resolved_pooling == pooling
    features = to_numpy(tower.features(images))
    assert features.shape == (4, tower.feature_dim)

    # LiT's locked image tower pools the same features and has nothing to train.
    locked = ImageTower(backbone, embedding_dim=8, frozen=True)
    np.testing.assert_allclose(to_numpy(locked(images)["pooled"]), features, atol=1e-5)
    assert not backbone.trainable_variables

    # A 3T step trains the heads and leaves every backbone variable as it was.
    model = ThreeTowerModel(
        image_tower=ImageTower(tiny_vit(hidden_dim=16), 8),
        text_tower=tiny_text_tower(embedding_dim=8),
        third_tower=tower,
    )
    # Not compiled: one small step, where tracing it would cost more than it runs.
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    before = snapshot(model.variables)
    model.train_on_batch(toy_batch(4, image_size=SIZE, seed=1))
    after = snapshot(model.variables)
    for variable in backbone.variables:
        np.testing.assert_array_equal(after[variable.path], before[variable.path], variable.path)
    head = tower.text_head.kernel.path
    assert not np.array_equal(after[head], before[head])

    # Config and .keras round trips, and keras-hub's preset of the backbone.
    from_file, _ = run_round_trip_test(tower, images, tmp_path)
    folder = str(tmp_path / "backbone_preset")
    backbone.save_to_preset(folder)
    from_preset = ThirdTower.from_preset(folder, embedding_dim=8)
    assert from_preset.resolved_pooling == pooling
    from_preset(images)
    from_preset.set_weights(tower.get_weights())
    np.testing.assert_allclose(to_numpy(from_preset.features(images)), features, atol=1e-5)

    # The cache written with the model is read back by the reloaded towers.
    cache_dir = str(tmp_path / "cache")
    write_third_tower_cache(model, examples, cache_dir, image_size=SIZE)
    for reloaded in (from_file, from_preset):
        user = ThreeTowerModel(
            image_tower=ImageTower(tiny_vit(hidden_dim=16), 8),
            text_tower=tiny_text_tower(embedding_dim=8),
            third_tower=reloaded,
        )
        assert load_third_tower_cache(cache_dir, user).features.shape == (4, tower.feature_dim)


def test_auto_pooling_refuses_what_it_cannot_tell_and_names_the_pooling_to_pass():
    tokens = keras.Sequential(
        [keras.Input((SIZE, SIZE, 3)), keras.layers.Reshape((SIZE * SIZE, 3))]
    )
    with pytest.raises(ValueError, match="pooling='token'.*pooling='mean'"):
        ThirdTower(tokens, embedding_dim=8)
    assert ThirdTower(tokens, embedding_dim=8, pooling="mean").feature_dim == 3
    with pytest.raises(ValueError, match="pass pooling='mean'"):
        ThirdTower(build("ResNet"), embedding_dim=8, pooling="token")
    volume = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Reshape((4, 4, 16, 3))])
    with pytest.raises(ValueError, match="rank 2, 3 or 4"):
        ThirdTower(volume, embedding_dim=8)


def test_docs_table_lists_every_family_with_its_pooling():
    with open(os.path.join(ROOT, "docs", "presets.md"), encoding="utf-8") as file:
        text = file.read()
    rows = dict(re.findall(r"^\| ([^|]+?) \| `\w+` \| `(\w+)` \| ✓ \|$", text, re.MULTILINE))
    assert rows == {family: pooling for family, (_, _, pooling) in FAMILIES.items()}
