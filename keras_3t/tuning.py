"""KerasTuner search over the knobs of 3T: a `keras_tuner.HyperModel`.

The knobs (each searched over its range in `SEARCH_SPACE`, or fixed):

| name | model argument | range searched |
|---|---|---|
| `learning_rate` | `compile(learning_rate=)` | 1e-4 … 1e-2, log |
| `weight_image_text` | `pair_weights[0]` (w_fg) | 0.1 … 1 |
| `weight_image_third` | `pair_weights[1]` (w_fh), 3T | 0 … 1 |
| `weight_text_third` | `pair_weights[2]` (w_gh), 3T | 0 … 1 |
| `temperature` | initial 1 / logit scale | 0.01 … 0.3, log |
| `shared_logit_scale` | one temperature for every pair | False, True |
| `adaptor_input` | where the heads A_f, A_g read: `"pooled"` or `"embedding"` | both |
| `shared_head` | one third-tower head for both pairs, 3T | False, True |

The inference-time α of 3T is not a hyperparameter here: it needs no
retraining, so sweep it on the trained model (`keras_3t.evaluation.alpha_sweep`,
as `recipes/sweep_3t.py` does).
"""

import inspect
import math
import os

import keras

from keras_3t import presets
from keras_3t.callbacks import EvaluationCallback
from keras_3t.evaluation.evaluate import check_tasks
from keras_3t.extras import require
from keras_3t.model import ThreeTowerModel
from keras_3t.model.input_checks import check_pair_weights
from keras_3t.saving.preset_loader import registered_preset
from keras_3t.towers import ThirdTower

keras_tuner = require("keras_tuner")

SEARCH_SPACE = {
    "learning_rate": ("float", {"min_value": 1e-4, "max_value": 1e-2, "sampling": "log"}),
    "weight_image_text": ("float", {"min_value": 0.1, "max_value": 1.0}),
    "weight_image_third": ("float", {"min_value": 0.0, "max_value": 1.0}),
    "weight_text_third": ("float", {"min_value": 0.0, "max_value": 1.0}),
    "temperature": ("float", {"min_value": 0.01, "max_value": 0.3, "sampling": "log"}),
    "shared_logit_scale": ("boolean", {}),
    "adaptor_input": ("choice", {"values": ["pooled", "embedding"]}),
    "shared_head": ("boolean", {}),
}
# The model's own defaults, used for every knob neither searched nor fixed:
# read from the signatures, so they cannot drift from them.
_MODEL = inspect.signature(ThreeTowerModel).parameters
# The model's default: equal weights over its pairs, three for one third tower.
_PAIR_WEIGHTS = check_pair_weights(_MODEL["pair_weights"].default, range(3))
DEFAULTS = {
    "learning_rate": inspect.signature(ThreeTowerModel.compile).parameters["learning_rate"].default,
    "weight_image_text": _PAIR_WEIGHTS[0],
    "weight_image_third": _PAIR_WEIGHTS[1],
    "weight_text_third": _PAIR_WEIGHTS[2],
    "temperature": math.exp(-_MODEL["logit_scale_init"].default),
    "shared_logit_scale": _MODEL["shared_logit_scale"].default,
    "adaptor_input": _MODEL["adaptor_input"].default,
    "shared_head": inspect.signature(ThirdTower).parameters["shared_head"].default,
}
THREE_TOWER_ONLY = ("weight_image_third", "weight_text_third", "adaptor_input", "shared_head")
DEFAULT_SEARCH = ("learning_rate", "weight_image_third", "weight_text_third", "temperature")


class ThreeTowerHyperModel(keras_tuner.HyperModel):
    """Builds a `ThreeTowerModel` from a preset for each trial's hyperparameters.

    Each trial's model has fresh main towers (and the preset's pretrained
    third tower); `fit` evaluates it on held-out tasks after every epoch
    (`keras_3t.callbacks.EvaluationCallback`), so objectives like
    `keras_tuner.Objective("val_zero_shot_top1", direction="max")` or
    `"val_image_to_text_r1"` are in the logs KerasTuner reads.

    Args:
        preset: a registered preset name (`keras_3t.presets.names()`); not
            a saved folder, whose pretrained tower is in its trained weights.
        evaluation: dict of task dicts for the evaluation callback
            (`retrieval=`, `zero_shot=`, `few_shot=`; see
            `keras_3t.evaluation.evaluate_model`), or None to evaluate
            nothing (then the objective must be a training log, `"loss"`).
        search: the knobs to search (names from `SEARCH_SPACE`), or a dict
            from names to `SEARCH_SPACE`-style `(kind, arguments)` ranges of
            your own.
        fixed: dict of knob values for knobs not searched (the others take
            `DEFAULTS`).
        load_arguments: more keyword arguments for `keras_3t.presets.load`:
            a tower configuration (`image_tower={...}`, `text_tower={...}`),
            `third_tower=`, `preprocessor=`.
        compile_arguments: more keyword arguments for `compile` (e.g.
            `warmup_steps`, `total_steps`, `weight_decay`).
        seed: int. Every trial's model starts from this random seed, so a
            trial's result depends only on its hyperparameters (and a
            resumed sweep reruns an interrupted trial identically).

    Example:
    >>> from keras_3t.tuning import ThreeTowerHyperModel
    >>> import keras_tuner
    >>> hypermodel = ThreeTowerHyperModel("3t_tiny", evaluation=None,
    ...     search=["learning_rate"], fixed={"shared_head": True})
    >>> hp = keras_tuner.HyperParameters()
    >>> model = hypermodel.build(hp)
    >>> model.third_tower.shared_head, hp.values
    (True, {'learning_rate': 0.0001})
    """

    def __init__(
        self,
        preset,
        evaluation,
        search=DEFAULT_SEARCH,
        fixed=None,
        load_arguments=None,
        compile_arguments=None,
        seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if os.path.isdir(str(preset)):
            raise ValueError(
                f"{preset} is a saved preset folder; ThreeTowerHyperModel builds each "
                "trial with fresh main towers from a registered preset's configuration "
                "(a saved folder's pretrained tower lives in its trained weights). Pass a "
                "name from keras_3t.presets.names(), with tower configurations in "
                "load_arguments."
            )
        objective = registered_preset(presets.PRESETS, preset)["objective"]  # raises if unknown
        if evaluation is not None:
            check_tasks(**evaluation)
        search = (
            dict(search)
            if isinstance(search, dict)
            else {name: SEARCH_SPACE.get(name) for name in search}
        )
        fixed = dict(fixed or {})
        unknown = sorted((set(search) | set(fixed)) - set(SEARCH_SPACE))
        if unknown:
            raise ValueError(f"Unknown knob(s) {unknown}; the knobs are {sorted(SEARCH_SPACE)}.")
        both = sorted(set(search) & set(fixed))
        if both:
            raise ValueError(f"{both} are both searched and fixed; choose one.")
        if objective != "3t":
            three_tower_knobs = sorted((set(search) | set(fixed)) & set(THREE_TOWER_ONLY))
            if three_tower_knobs:
                raise ValueError(
                    f"{three_tower_knobs} configure 3T's third tower; {preset} is a "
                    f"{objective} model."
                )
        self.preset = preset
        self.objective = objective
        self.evaluation = evaluation
        self.search = search
        self.fixed = fixed
        self.load_arguments = dict(load_arguments or {})
        self.compile_arguments = dict(compile_arguments or {})
        self.seed = seed

    def values(self, hp):
        """Every knob's value for a trial: searched, fixed or default."""
        values = dict(DEFAULTS, **self.fixed)
        for name, (kind, arguments) in self.search.items():
            if kind == "float":
                values[name] = hp.Float(name, **arguments)
            elif kind == "boolean":
                values[name] = hp.Boolean(name, **arguments)
            elif kind == "choice":
                values[name] = hp.Choice(name, **arguments)
            else:
                raise ValueError(f"Unknown kind {kind!r} for {name}; use float, boolean or choice.")
        return values

    def build(self, hp):
        values = self.values(hp)
        overrides = {
            "logit_scale_init": math.log(1.0 / values["temperature"]),
            "shared_logit_scale": values["shared_logit_scale"],
        }
        if self.objective == "3t":
            overrides.update(
                pair_weights=(
                    values["weight_image_text"],
                    values["weight_image_third"],
                    values["weight_text_third"],
                ),
                adaptor_input=values["adaptor_input"],
                shared_head=values["shared_head"],
            )
        keras.utils.set_random_seed(self.seed)
        model = presets.load(self.preset, weights=False, **self.load_arguments, **overrides)
        model.compile(learning_rate=values["learning_rate"], **self.compile_arguments)
        return model

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        # The evaluation runs first at each epoch's end, so KerasTuner's own
        # callbacks (best-epoch checkpoint, objective) see its metrics.
        callbacks = list(callbacks or [])
        if self.evaluation is not None:
            callbacks.insert(0, EvaluationCallback(**self.evaluation))
        return model.fit(*args, callbacks=callbacks, **kwargs)
