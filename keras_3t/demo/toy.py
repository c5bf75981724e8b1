"""A generated image-caption problem whose captions are a function of the image.

Each image is a dark, noisy canvas with one coloured square; its caption
names the square's colour, quadrant and size as three tokens. With 8 colours,
4 quadrants and 2 sizes there are 64 distinct captions; a batch of at most 64
draws each at most once, so retrieval inside a batch is well posed. Used by
the quickstart and the tests; it needs nothing downloaded.
"""

import numpy as np

PALETTE = np.array(
    [
        [1.0, 0.1, 0.1],
        [0.1, 1.0, 0.1],
        [0.1, 0.1, 1.0],
        [1.0, 1.0, 0.1],
        [1.0, 0.1, 1.0],
        [0.1, 1.0, 1.0],
        [1.0, 1.0, 1.0],
        [1.0, 0.5, 0.1],
    ],
    dtype="float32",
)
COLOUR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan", "white", "orange")
QUADRANT_NAMES = ("top-left", "top-right", "bottom-left", "bottom-right")
SIZE_NAMES = ("small", "large")
NUM_QUADRANTS = 4
NUM_SIZES = 2
NUM_CAPTIONS = len(PALETTE) * NUM_QUADRANTS * NUM_SIZES
# Token 0 pads; then one token per colour, per quadrant, per size.
VOCABULARY_SIZE = 1 + len(PALETTE) + NUM_QUADRANTS + NUM_SIZES
CAPTION_LENGTH = 3


def toy_batch(batch_size, image_size=16, sequence_length=4, seed=0):
    """One batch of the toy problem, as a model-ready dict of NumPy arrays.

    Args:
        batch_size: int, number of examples. Up to 64 examples have distinct
            captions; beyond that captions repeat.
        image_size: int, side of the square RGB images (a multiple of 4).
        sequence_length: int, padded caption length (at least 3).
        seed: int, the random seed; the same seed gives the same batch.

    Returns:
        `{"images": float32 (B, S, S, 3) in [0, 1], "token_ids": int32 (B, L),
        "padding_mask": bool (B, L)}`.

    Example:
    >>> from keras_3t.demo.toy import toy_batch
    >>> batch = toy_batch(4, image_size=16, seed=0)
    >>> batch["images"].shape, batch["token_ids"].shape
    ((4, 16, 16, 3), (4, 4))
    """
    if image_size % 4 or image_size < 8:
        raise ValueError(f"image_size must be a multiple of 4, at least 8; got {image_size}.")
    if sequence_length < CAPTION_LENGTH:
        raise ValueError(
            f"sequence_length must be at least {CAPTION_LENGTH}; got {sequence_length}."
        )
    rng = np.random.default_rng(seed)
    codes = np.concatenate(
        [rng.permutation(NUM_CAPTIONS) for _ in range(-(-batch_size // NUM_CAPTIONS))]
    )[:batch_size]
    colours, rest = np.divmod(codes, NUM_QUADRANTS * NUM_SIZES)
    quadrants, sizes = np.divmod(rest, NUM_SIZES)

    half = image_size // 2
    images = rng.uniform(0.0, 0.15, (batch_size, image_size, image_size, 3))
    for i in range(batch_size):
        side = half // 2 if sizes[i] == 0 else half - 1
        top = (quadrants[i] // 2) * half + rng.integers(0, half - side + 1)
        left = (quadrants[i] % 2) * half + rng.integers(0, half - side + 1)
        images[i, top : top + side, left : left + side] = PALETTE[colours[i]]

    token_ids = np.zeros((batch_size, sequence_length), dtype="int32")
    token_ids[:, 0] = 1 + colours
    token_ids[:, 1] = 1 + len(PALETTE) + quadrants
    token_ids[:, 2] = 1 + len(PALETTE) + NUM_QUADRANTS + sizes
    padding_mask = token_ids > 0
    return {
        "images": images.astype("float32"),
        "token_ids": token_ids,
        "padding_mask": padding_mask,
    }


# Token ids in caption order: colour, quadrant, size (0 pads).
WORD_IDS = {word: 1 + i for i, word in enumerate(COLOUR_NAMES + QUADRANT_NAMES + SIZE_NAMES)}


def tokenize(texts):
    """The toy problem's tokenizer: one id per known word, others ignored.

    Args:
        texts: a list of strings such as `"a large red square, top-left"`.

    Returns:
        One list of token ids per string (like a keras-hub `Tokenizer`).

    Example:
    >>> from keras_3t.demo import toy
    >>> toy.tokenize(["a small red square in the top-left"])
    [[1, 9, 13]]
    """
    tokenized = []
    for text in texts:
        words = text.lower().replace(",", " ").replace(".", " ").split()
        # Sorted ids are in caption order: colours, then quadrants, then sizes.
        tokenized.append(sorted(WORD_IDS[word] for word in words if word in WORD_IDS))
    return tokenized


def build_model(objective="3t", third_backbone=None, image_size=16, embedding_dim=32):
    """A small model sized for the toy problem (quickstart, examples, tests).

    A ViT image tower and a transformer text tower from scratch; for "3t" a
    third tower around `third_backbone` (default: a small randomly
    initialised CNN, frozen — pass a trained one to mirror the paper).

    Example:
    >>> from keras_3t.demo import toy
    >>> toy.build_model("clip").objective
    'clip'
    """
    import keras
    import keras_hub

    from keras_3t.model import ThreeTowerModel
    from keras_3t.towers import ImageTower
    from keras_3t.towers import TextTower
    from keras_3t.towers import ThirdTower

    vit = keras_hub.models.ViTBackbone(
        image_shape=(image_size, image_size, 3),
        patch_size=4,
        num_layers=2,
        num_heads=4,
        hidden_dim=64,
        mlp_dim=128,
    )
    text_tower = TextTower(
        vocabulary_size=VOCABULARY_SIZE,
        sequence_length=CAPTION_LENGTH + 1,
        embedding_dim=embedding_dim,
        hidden_dim=64,
        num_layers=2,
        num_heads=4,
        intermediate_dim=128,
    )
    third_tower = None
    if objective == "3t":
        if third_backbone is None:
            third_backbone = keras.Sequential(
                [
                    keras.Input((image_size, image_size, 3)),
                    keras.layers.Conv2D(32, 3, activation="relu"),
                    keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
                    keras.layers.GlobalAveragePooling2D(),
                ]
            )
        third_tower = ThirdTower(third_backbone, embedding_dim)
    return ThreeTowerModel(
        image_tower=ImageTower(vit, embedding_dim),
        text_tower=text_tower,
        third_tower=third_tower,
        objective=objective,
    )
