"""ThreeTowerModel: 3T, LiT and CLIP in one model and one training loop."""

import math

import keras
from keras import ops

# Imported for their registrations: `from_config` deserializes the towers
# and the preprocessor by their registered names.
from keras_3t import preprocessing  # noqa: F401
from keras_3t import towers  # noqa: F401
from keras_3t.distributed import replicas as current_replicas
from keras_3t.export import export_encoders
from keras_3t.image_converter import ImageConverter
from keras_3t.losses import contrastive_loss
from keras_3t.losses import normalized_embedding
from keras_3t.losses import sigmoid_contrastive_loss
from keras_3t.model.frozen_towers import SINGLE_TOWER_NAME
from keras_3t.model.frozen_towers import adaptor_heads
from keras_3t.model.frozen_towers import features_by_name
from keras_3t.model.frozen_towers import pair_names
from keras_3t.model.inference import ThreeTowerInference
from keras_3t.model.input_checks import check_arguments
from keras_3t.model.input_checks import check_batch
from keras_3t.model.input_checks import check_pair_weights
from keras_3t.objective_metrics import ObjectiveMeans
from keras_3t.optimization import MaxValue
from keras_3t.saving import VERSION_KEY
from keras_3t.saving import check_version
from keras_3t.saving import current_version
from keras_3t.saving.preset_dir import save_to_preset
from keras_3t.saving.preset_loader import load_preset
from keras_3t.training.training_hooks import TrainingHooks


@keras.saving.register_keras_serializable(package="keras_3t")
class ThreeTowerModel(ThreeTowerInference, TrainingHooks):
    """A contrastive image-text model: Three Towers (3T), LiT or CLIP.

    - `"3t"`: image tower f and text tower g trained with L(f, g), plus two
      contrastive losses aligning each to a frozen pretrained third tower h
      through learnable linear heads: L_3T = w_fg L(f, g) + w_fh L(f_h, h_f)
      + w_gh L(g_h, h_g) (Kossen et al., 2023).
    - `"lit"`: the image tower is a frozen pretrained backbone (plus its
      projection); only the text tower (and that projection) trains.
    - `"clip"`: both towers from scratch, L(f, g) only; no third tower.

    Several frozen towers (`third_towers={"digits": ..., "thickness": ...}`,
    our extension; the paper uses one) each add their two pairs,
    `"image_<name>"` and `"text_<name>"`, with their own adaptor heads on
    the main towers, heads, logit scales and metrics.

    Each pair has a learnable log logit scale (initialised at log 10 and
    clamped at log 100 after each optimizer step) and, with
    `loss="sigmoid"`, a learnable bias (initialised at -10). `fit` takes
    batches as dicts `{"images": float (B, H, W, C), "token_ids": int
    (B, L), "padding_mask": bool (B, L)}` and needs no labels.

    Args:
        image_tower: a `keras_3t.towers.ImageTower` (f).
        text_tower: a `keras_3t.towers.TextTower` (g).
        third_tower: a `keras_3t.towers.ThirdTower` (h); a "3t" model needs
            it or `third_towers`; "lit" and "clip" have none.
        third_towers: instead of `third_tower`, a dict of named frozen
            `ThirdTower`s. A name is lowercase letters, digits and
            underscores, and neither "text" nor "main".
        objective: `"3t"`, `"lit"` or `"clip"`.
        loss: `"softmax"` (CLIP / InfoNCE) or `"sigmoid"` (SigLIP), for every
            pair.
        pair_weights: the weights of the pairs in `model.pairs` order:
            `"image_text"`, then `"image_<name>"` and `"text_<name>"` for each
            frozen tower; (w_fg, w_fh, w_gh) with one third tower. A dict
            keyed by pair name is taken too. Default: equal weights.
        shared_logit_scale: bool. One logit scale (and bias) for every pair
            instead of one per pair.
        logit_scale_init: initial log logit scale.
        logit_scale_max: each optimizer step clamps the log logit scale at
            this value.
        logit_bias_init: initial logit bias of the sigmoid loss.
        adaptor_input: what the main towers' adaptor heads (A_f, A_g) read:
            `"pooled"` representations (u_f, u_g) or the projected
            `"embedding"`s.
        local_loss: bool. Under data parallelism, each replica computes only
            its own rows of each pair's logits against the gathered global
            batch (open_clip's `local_loss`) instead of the whole global
            matrix: less memory, the same loss and gradients. See
            docs/distributed.md.
        preprocessor: optional `keras_3t.ThreeTowerPreprocessor` (or any
            layer mapping `{"images", "captions"}` to a batch). The model
            does not call it (map it over the data set); it is kept and
            saved with the model so captions are tokenized the same way
            after loading.
        image_converter: optional `keras_3t.ImageConverter`; by default one
            for the image tower's size and channels. `encode_image` uses it
            on images that are not yet float, in [0, 1], at that size
            (photos as uint8 arrays of any size, say); map it over a
            `tf.data` pipeline of raw images. Saved with the model.

    Example:
    >>> import keras_hub
    >>> from keras_3t import ThreeTowerModel
    >>> from keras_3t.demo.toy import toy_batch
    >>> from keras_3t.towers import ImageTower, TextTower, ThirdTower
    >>> def vit():
    ...     return keras_hub.models.ViTBackbone(image_shape=(16, 16, 3),
    ...         patch_size=8, num_layers=1, num_heads=2, hidden_dim=16,
    ...         mlp_dim=32)
    >>> model = ThreeTowerModel(
    ...     image_tower=ImageTower(vit(), embedding_dim=8),
    ...     text_tower=TextTower(vocabulary_size=32, sequence_length=4,
    ...         embedding_dim=8, hidden_dim=16, num_layers=1, num_heads=2,
    ...         intermediate_dim=32),
    ...     third_tower=ThirdTower(vit(), embedding_dim=8))
    >>> model.compile()
    >>> history = model.fit(toy_batch(8, image_size=16, seed=0), verbose=0)
    >>> sorted(history.history)[:4]
    ['logit_scale_image_text', 'logit_scale_image_third', 'logit_scale_text_third', 'loss']
    """

    # Registered in `keras_3t/model/__init__.py`: name -> preset dict.
    presets = {}

    def __init__(
        self,
        image_tower,
        text_tower,
        third_tower=None,
        objective="3t",
        loss="softmax",
        pair_weights=None,
        shared_logit_scale=False,
        logit_scale_init=math.log(10.0),
        logit_scale_max=math.log(100.0),
        logit_bias_init=-10.0,
        adaptor_input="pooled",
        local_loss=False,
        preprocessor=None,
        image_converter=None,
        third_towers=None,
        **kwargs,
    ):
        frozen_towers = check_arguments(
            image_tower,
            text_tower,
            third_tower,
            third_towers,
            objective,
            loss,
            adaptor_input,
        )
        pairs = pair_names(frozen_towers)
        pair_weights = check_pair_weights(pair_weights, pairs)
        super().__init__(**kwargs)

        # === Towers and heads ===
        # The frozen towers and the main towers' adaptor heads, by name. One
        # `third_tower` keeps the attribute names and tracking order it has
        # always had: Keras saves a weight under the first attribute (sorted
        # by name) that holds it, and the optimizer's slots follow the
        # variables' order, so one-tower weights and checkpoints keep their layout.
        image_adaptors, text_adaptors = adaptor_heads(frozen_towers, third_tower is not None)
        self.image_tower = image_tower
        self.text_tower = text_tower
        self.third_tower = third_tower
        self.preprocessor = preprocessor
        self.image_converter = image_converter or _default_image_converter(image_tower)
        if third_tower is not None:
            self.image_adaptor = image_adaptors[SINGLE_TOWER_NAME]
            self.text_adaptor = text_adaptors[SINGLE_TOWER_NAME]
        self.third_towers = frozen_towers
        self.image_adaptors = image_adaptors
        self.text_adaptors = text_adaptors

        # === Config ===
        self.objective = objective
        self.loss_type = loss
        self.pair_weights = pair_weights
        self.shared_logit_scale = shared_logit_scale
        self.logit_scale_init = float(logit_scale_init)
        self.logit_scale_max = float(logit_scale_max)
        self.logit_bias_init = float(logit_bias_init)
        self.adaptor_input = adaptor_input
        self.local_loss = bool(local_loss)
        self.accumulation_steps = 1
        self.pairs = pairs

        # === Logit scales (and biases), one per pair or one shared ===
        self._scale_names = {pair: "" if shared_logit_scale else f"_{pair}" for pair in self.pairs}
        self.logit_scales = {}
        self.logit_biases = {}
        for suffix in sorted(set(self._scale_names.values())):
            self.logit_scales[suffix] = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(self.logit_scale_init),
                constraint=MaxValue(self.logit_scale_max),
                name=f"logit_scale{suffix}",
            )
            if loss == "sigmoid":
                self.logit_biases[suffix] = self.add_weight(
                    shape=(),
                    initializer=keras.initializers.Constant(self.logit_bias_init),
                    name=f"logit_bias{suffix}",
                )

        # === Metrics: every value `compute_objective` returns ===
        metric_names = ["loss"] + [f"loss_{pair}" for pair in self.pairs]
        for suffix in self.logit_scales:
            metric_names.append(f"logit_scale{suffix}")
            if loss == "sigmoid":
                metric_names.append(f"logit_bias{suffix}")
        self.objective_means = ObjectiveMeans(metric_names)
        self.build()

    # --- Building ---------------------------------------------------------

    def build(self, input_shape=None):
        # Towers restored from a saved config arrive built already.
        for tower in (self.image_tower, self.text_tower, *self.third_towers.values()):
            if not tower.built:
                tower.build()
        if self.adaptor_input == "pooled":
            image_dim = self.image_tower.feature_dim
            text_dim = self.text_tower.hidden_dim
        else:
            image_dim = self.image_tower.output_dim
            text_dim = self.text_tower.output_dim
        for name in self.third_towers:
            self.image_adaptors[name].build((None, image_dim))
            self.text_adaptors[name].build((None, text_dim))
        self.built = True

    # --- Training ---------------------------------------------------------

    @property
    def logit_variables(self):
        """The learnable logit scales (and biases) of the pair losses."""
        return list(self.logit_scales.values()) + list(self.logit_biases.values())

    def logit_scale(self, pair="image_text"):
        """The multiplier exp(s) of a pair's cosine similarities."""
        return ops.exp(self.logit_scales[self._scale_names[pair]])

    def _pair_loss(self, pair, a, b, replicas):
        scale = self.logit_scale(pair)
        if self.loss_type == "sigmoid":
            bias = self.logit_biases[self._scale_names[pair]]
            return sigmoid_contrastive_loss(
                a, b, scale, bias, replicas=replicas, local=self.local_loss
            )
        return contrastive_loss(a, b, scale, replicas=replicas, local=self.local_loss)

    def compute_objective(self, batch, training=False):
        """The training objective on one batch, written once for every backend.

        Args:
            batch: dict with `"images"`, `"token_ids"` and `"padding_mask"`,
                and optionally `"third_features"` (the third tower's cached
                pre-logit features of the images, see
                `keras_3t.data.write_third_tower_cache`; with `third_towers`,
                a dict of them by tower name).
            training: bool, whether the trainable towers run in training mode.

        Under data parallelism (`tf.distribute`, `torch.distributed`) the
        batch is this replica's slice; the pair losses gather every
        replica's embeddings, and the values returned average over the
        replicas to the global batch's values.

        Returns:
            A dict of scalars: `"loss"` (the objective), `"loss_<pair>"` for
            each pair, and each `"logit_scale…"` (and `"logit_bias…"`).
        """
        replicas = current_replicas()
        self.check_batch(batch, replicas)
        return self.objective_from_embeddings(self.embed_batch(batch, training=training), replicas)

    def embed_batch(self, batch, training=False):
        """Each contrastive pair's two L2-normalised embeddings of a batch.

        Each frozen tower's backbone runs once (or not at all, when the
        batch carries cached `"third_features"`); both of its heads read the
        same features. Embeddings are float32 whatever the dtype policy, so the
        losses are computed in float32 under `mixed_bfloat16`.

        Returns:
            A dict mapping each pair of `self.pairs` to its `(a, b)`.
        """
        # The frozen tower runs first: run while the trainable towers'
        # activations are held, it measured 40-55 % slower on PyTorch
        # (benchmarks/third_tower_cost.py).
        batch = self.with_third_features(batch)
        image = self.image_tower(batch["images"], training=training)
        text = self.text_tower(batch, training=training)
        embeddings = {
            "image_text": (
                normalized_embedding(image["embedding"]),
                normalized_embedding(text["embedding"]),
            )
        }
        third_features = batch.get("third_features", {})
        for name, features in features_by_name(self, third_features).items():
            third = self.third_towers[name].heads(features)
            embeddings[f"image_{name}"] = (
                normalized_embedding(self.image_adaptors[name](image[self.adaptor_input])),
                normalized_embedding(third["image_head"]),
            )
            embeddings[f"text_{name}"] = (
                normalized_embedding(self.text_adaptors[name](text[self.adaptor_input])),
                normalized_embedding(third["text_head"]),
            )
        return embeddings

    def with_third_features(self, batch):
        """`batch` with the frozen towers' features as `"third_features"`.

        One `third_tower`'s features are a tensor; `third_towers`' are a
        dict of tensors by name. A batch that carries them (from a
        third-tower cache), or a model without a third tower, is returned
        as it is.
        """
        if not self.third_towers or "third_features" in batch:
            return batch
        features = {
            name: tower.features(batch["images"]) for name, tower in self.third_towers.items()
        }
        if self.third_tower is not None:
            features = features[SINGLE_TOWER_NAME]
        return {**batch, "third_features": features}

    def objective_from_embeddings(self, embeddings, replicas):
        """The objective's values from `embed_batch`'s embeddings.

        Args:
            embeddings: dict mapping each pair to its `(a, b)`.
            replicas: the `keras_3t.distributed.Replicas` the step runs in.
        """
        values = {
            f"loss_{pair}": self._pair_loss(pair, a, b, replicas)
            for pair, (a, b) in embeddings.items()
        }
        if len(self.pairs) > 1:
            values["loss"] = sum(
                weight * values[f"loss_{pair}"]
                for weight, pair in zip(self.pair_weights, self.pairs)
            )
        else:
            values["loss"] = values["loss_image_text"]
        for suffix, log_scale in self.logit_scales.items():
            values[f"logit_scale{suffix}"] = ops.exp(log_scale)
        for suffix, bias in self.logit_biases.items():
            values[f"logit_bias{suffix}"] = ops.convert_to_tensor(bias)
        return values

    def check_batch(self, batch, replicas):
        """Raises a ValueError naming what is wrong with a training batch."""
        check_batch(self, batch, replicas)

    # --- Config -----------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_tower": keras.layers.serialize(self.image_tower),
                "text_tower": keras.layers.serialize(self.text_tower),
                "third_tower": (
                    None if self.third_tower is None else keras.layers.serialize(self.third_tower)
                ),
                "objective": self.objective,
                "loss": self.loss_type,
                "pair_weights": list(self.pair_weights),
                "shared_logit_scale": self.shared_logit_scale,
                "logit_scale_init": self.logit_scale_init,
                "logit_scale_max": self.logit_scale_max,
                "logit_bias_init": self.logit_bias_init,
                "adaptor_input": self.adaptor_input,
                "local_loss": self.local_loss,
                "image_converter": keras.layers.serialize(self.image_converter),
                "preprocessor": (
                    None if self.preprocessor is None else keras.layers.serialize(self.preprocessor)
                ),
                # Lets a `.keras` file or preset refuse to load in an older
                # keras-3t, which might build it differently.
                VERSION_KEY: current_version(),
            }
        )
        # Only a model with several frozen towers has the key, so a
        # one-tower config reads as it always has.
        if self.third_towers and self.third_tower is None:
            config["third_towers"] = {
                name: keras.layers.serialize(tower) for name, tower in self.third_towers.items()
            }
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Checked before any tower is built; configs written before the
        # version was recorded have none, and load.
        check_version(config.pop(VERSION_KEY, None), "This ThreeTowerModel config")
        for key in ("image_tower", "text_tower", "third_tower", "preprocessor", "image_converter"):
            if isinstance(config.get(key), dict):
                config[key] = keras.layers.deserialize(config[key])
        if config.get("third_towers"):
            config["third_towers"] = {
                name: keras.layers.deserialize(tower)
                for name, tower in config["third_towers"].items()
            }
        return cls(**config)

    # --- Presets ----------------------------------------------------------

    def save_to_preset(self, preset_dir, overwrite=False, metadata=None):
        """Saves the model as a preset folder that `from_preset` reloads.

        keras-hub's layout: `config.json`, `model.weights.h5`, the
        preprocessor and tokenizer (`preprocessor.json`, `tokenizer.json`,
        `assets/tokenizer/`) and `metadata.json`. The folder is written
        beside the target and moved in at the end, so a failed save leaves an
        earlier preset intact.

        Args:
            preset_dir: the folder to write.
            overwrite: bool. Replace an existing non-empty folder; otherwise
                that is a `FileExistsError`.
            metadata: optional dict added to `metadata.json` (e.g. the
                command that trained the model, its evaluation results).
        """
        return save_to_preset(self, preset_dir, overwrite=overwrite, metadata=metadata)

    export_encoders = export_encoders  # the encoders for serving: keras_3t.export

    @classmethod
    def from_preset(cls, name_or_path, safe_mode=True, **kwargs):
        """`keras_3t.presets.load`: a registered name or a saved folder.

        Args:
            name_or_path: a registered preset name or a preset folder.
            safe_mode: bool. Refuse a folder whose config carries Python code
                (a `Lambda` layer's function); False only for folders you
                trust.
            **kwargs: the other arguments of `keras_3t.presets.load`.
        """
        return load_preset(cls, name_or_path, safe_mode=safe_mode, **kwargs)


def _default_image_converter(image_tower):
    """Converts to the backbone's input size and channels (any size if unset)."""
    height, width, channels = tuple(image_tower.backbone.input_shape[1:])
    size = None if height is None or width is None else (height, width)
    return ImageConverter(image_size=size, channels=channels or 3)
