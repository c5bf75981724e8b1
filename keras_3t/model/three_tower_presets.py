"""The registered presets: plain data, one dict per named configuration.

Each preset names its objective and its towers:

- `image_tower` / `third_tower`: `backbone` is a keras-hub backbone class name
  and its config (enough to build the architecture offline); `preset`, when
  present, is the keras-hub preset (or a folder under the repository's
  `saved_models/`) whose pretrained weights the tower loads; `image_converter`
  maps the model's images (float, values in [0, 1]) to the range the backbone
  expects, as `keras.layers.Rescaling(scale, offset)` arguments.
- `text_tower`: `keras_3t.towers.TextTower` arguments.
- `preprocessor`: the tokenizer: a keras-hub tokenizer preset and the padded
  caption length, or `"saved"` when it ships in the `weights` folder.
- `weights`: the folder under `saved_models/` with trained weights
  (`ThreeTowerModel.save_to_preset` layout), or None: a configuration to train
  from scratch.
- `parameter_count`: counted on the built model (the tests check every
  entry).

`keras_3t.model` registers these into `ThreeTowerModel.presets`, as
keras-hub's model folders register theirs.
"""

# ViT-B/16 and ViT-L/16 exactly as keras-hub's ImageNet-21k presets
# (85,798,656 and 303,301,632 parameters).
VIT_B16 = dict(
    image_shape=(224, 224, 3),
    patch_size=16,
    num_layers=12,
    num_heads=12,
    hidden_dim=768,
    mlp_dim=3072,
    layer_norm_epsilon=1e-6,
)
VIT_L16 = dict(VIT_B16, num_layers=24, num_heads=16, hidden_dim=1024, mlp_dim=4096)
# Text transformers of the same sizes (big_vision's LiT "B" and "L").
TEXT_B = dict(hidden_dim=768, num_layers=12, num_heads=12, intermediate_dim=3072)
TEXT_L = dict(hidden_dim=1024, num_layers=24, num_heads=16, intermediate_dim=4096)
# keras-hub's ViT ImageNet-21k presets normalise pixels with mean and std
# 0.5, i.e. [0, 1] → [-1, 1]; the from-scratch image towers get the same.
TO_SIGNED_UNIT = dict(scale=2.0, offset=-1.0)
# BERT's uncased WordPiece vocabulary (30,522 tokens) from keras-hub.
PAPER_PREPROCESSOR = dict(tokenizer_preset="bert_base_en_uncased", sequence_length=64)
PAPER_VOCABULARY_SIZE = 30522

# The embedded demo's models (`keras_3t.demo.digit_models`): 56×56 digit scenes.
DIGIT_VIT = dict(
    image_shape=(56, 56, 3),
    patch_size=7,
    num_layers=2,
    num_heads=4,
    hidden_dim=64,
    mlp_dim=128,
)
DIGIT_RESNET = dict(
    input_conv_filters=[64],
    input_conv_kernel_sizes=[5],
    stackwise_num_filters=[64, 128],
    stackwise_num_blocks=[1, 1],
    stackwise_num_strides=[1, 2],
    block_type="basic_block",
    use_pre_activation=False,
    image_shape=(56, 56, 3),
)
DIGIT_TEXT = dict(hidden_dim=64, num_layers=2, num_heads=4, intermediate_dim=128)
DIGIT_EMBEDDING_DIM = 64
# The shipped tokenizer's vocabulary and padded length (`keras-3t demo`
# builds them from the training captions).
DIGIT_VOCABULARY_SIZE = 85
DIGIT_SEQUENCE_LENGTH = 22


def _large(objective, size):
    vit, text, width = {"b16": (VIT_B16, TEXT_B, 768), "l16": (VIT_L16, TEXT_L, 1024)}[size]
    pretrained = {
        "backbone": ("ViTBackbone", vit),
        "preset": f"vit_{'base' if size == 'b16' else 'large'}_patch16_224_imagenet21k",
        "image_converter": TO_SIGNED_UNIT,
        "embedding_dim": width,
    }
    scratch = {
        "backbone": ("ViTBackbone", vit),
        "image_converter": TO_SIGNED_UNIT,
        "embedding_dim": width,
    }
    return {
        "objective": objective,
        "image_tower": dict(pretrained, frozen=True) if objective == "lit" else scratch,
        "text_tower": dict(
            text,
            vocabulary_size=PAPER_VOCABULARY_SIZE,
            sequence_length=PAPER_PREPROCESSOR["sequence_length"],
            embedding_dim=width,
        ),
        "third_tower": pretrained if objective == "3t" else None,
        "preprocessor": PAPER_PREPROCESSOR,
        "weights": None,
    }


def _tiny(objective):
    pretrained = {
        "backbone": ("ResNetBackbone", DIGIT_RESNET),
        "preset": "saved_models/digit_classifier",
        "embedding_dim": DIGIT_EMBEDDING_DIM,
    }
    scratch = {"backbone": ("ViTBackbone", DIGIT_VIT), "embedding_dim": DIGIT_EMBEDDING_DIM}
    return {
        "objective": objective,
        "image_tower": dict(pretrained, frozen=True) if objective == "lit" else scratch,
        "text_tower": dict(
            DIGIT_TEXT,
            vocabulary_size=DIGIT_VOCABULARY_SIZE,
            sequence_length=DIGIT_SEQUENCE_LENGTH,
            embedding_dim=DIGIT_EMBEDDING_DIM,
        ),
        "third_tower": pretrained if objective == "3t" else None,
        "preprocessor": "saved",
        "weights": f"saved_models/{objective}_tiny",
    }


LARGE_DESCRIPTIONS = {
    "3t": (
        "3T at {size} size: {vit} image and text towers trained "
        "from scratch, keras-hub's ImageNet-21k {vit} frozen as the third "
        "tower. No trained weights: a configuration to train."
    ),
    "lit": (
        "LiT at {size} size: keras-hub's ImageNet-21k {vit} "
        "frozen as the image tower (a linear projection trains), a text "
        "tower trained from scratch. No trained weights: a configuration to train."
    ),
    "clip": (
        "CLIP at {size} size: {vit} image and text towers both "
        "trained from scratch, no pretrained model. No trained weights: a "
        "configuration to train."
    ),
}
TINY_DESCRIPTIONS = {
    "3t": (
        "The embedded demo's 3T (56×56 digit scenes): a 2-layer ViT and text "
        "tower trained with the shipped digit classifier as frozen third "
        "tower; trained weights and tokenizer ship in saved_models/3t_tiny."
    ),
    "lit": (
        "The embedded demo's LiT: the shipped digit classifier frozen as the "
        "image tower, a 2-layer text tower; trained weights and tokenizer "
        "ship in saved_models/lit_tiny."
    ),
    "clip": (
        "The embedded demo's CLIP: a 2-layer ViT and text tower from scratch; "
        "trained weights and tokenizer ship in saved_models/clip_tiny."
    ),
}

# Printed by `presets.parameter_counts(presets.load(name, weights=False,
# third_tower_weights=False, preprocessor=False))`.
PARAMETER_COUNTS = {
    "3t_vitb16": dict(
        image_tower=86388480,
        text_tower=109135872,
        third_tower=86978304,
        total=283682307,
        trainable=197883651,
    ),
    "3t_vitl16": dict(
        image_tower=304350208,
        text_tower=334680064,
        third_tower=305398784,
        total=946526211,
        trainable=643224579,
    ),
    "lit_vitb16": dict(
        image_tower=86388480, text_tower=109135872, total=195524353, trainable=109725697
    ),
    "lit_vitl16": dict(
        image_tower=304350208, text_tower=334680064, total=639030273, trainable=335728641
    ),
    "clip_vitb16": dict(
        image_tower=86388480, text_tower=109135872, total=195524353, trainable=195524353
    ),
    "clip_vitl16": dict(
        image_tower=304350208, text_tower=334680064, total=639030273, trainable=639030273
    ),
    "3t_tiny": dict(
        image_tower=84864, text_tower=78016, third_tower=326592, total=497667, trainable=187459
    ),
    "lit_tiny": dict(image_tower=318400, text_tower=78016, total=396417, trainable=86209),
    "clip_tiny": dict(image_tower=84864, text_tower=78016, total=162881, trainable=162881),
}

PRESETS = {}
for _objective in ("3t", "lit", "clip"):
    for _size, _vit in (("b16", "ViT-B/16"), ("l16", "ViT-L/16")):
        _name = f"{_objective}_vit{_size}"
        PRESETS[_name] = dict(
            _large(_objective, _size),
            description=LARGE_DESCRIPTIONS[_objective].format(size=_vit[4:], vit=_vit),
            parameter_count=PARAMETER_COUNTS[_name],
        )
    PRESETS[f"{_objective}_tiny"] = dict(
        _tiny(_objective),
        description=TINY_DESCRIPTIONS[_objective],
        parameter_count=PARAMETER_COUNTS[f"{_objective}_tiny"],
    )
