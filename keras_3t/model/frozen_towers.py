"""The frozen towers of a 3T model: one `third_tower`, or several by name.

Each frozen tower adds two contrastive pairs, `"image_<name>"` and
`"text_<name>"`, and the main towers get an adaptor head (A_f, A_g) towards
it. One `third_tower` is named `"third"`: its pairs are `"image_third"` and
`"text_third"`, as they have always been.
"""

import keras

SINGLE_TOWER_NAME = "third"


def pair_names(towers):
    """`"image_text"`, then each frozen tower's two pairs, in order."""
    names = ["image_text"]
    for name in towers:
        names += [f"image_{name}", f"text_{name}"]
    return tuple(names)


def adaptor_heads(towers, single):
    """The main towers' adaptor heads towards each frozen tower.

    Args:
        towers: dict name → `ThirdTower`.
        single: bool. One `third_tower`, whose heads keep their names
            (`"image_adaptor"`, `"text_adaptor"`).

    Returns:
        `(image_adaptors, text_adaptors)`, dicts name → `keras.layers.Dense`.
    """
    heads = ({}, {})
    for name, tower in towers.items():
        for role, adaptors in zip(("image", "text"), heads):
            adaptors[name] = keras.layers.Dense(
                tower.embedding_dim,
                use_bias=False,
                name=f"{role}_adaptor" + ("" if single else f"_{name}"),
            )
    return heads


def features_by_name(model, features):
    """A batch's `"third_features"` as a dict name → features.

    One `third_tower`'s features are a tensor; several towers' a dict.
    """
    if model.third_tower is not None:
        return {SINGLE_TOWER_NAME: features}
    return features
