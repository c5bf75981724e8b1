"""ThreeTowerModel: 3T, LiT and CLIP in one model and one training loop."""

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_3t import backend
from keras_3t.image_converter import ImageConverter
from keras_3t.image_converter import check_value_range
from keras_3t.losses import contrastive_loss
from keras_3t.losses import l2_normalize
from keras_3t.losses import sigmoid_contrastive_loss
from keras_3t.objective_metrics import ObjectiveMeans
from keras_3t.optimization import default_optimizer
from keras_3t.saving import VERSION_KEY
from keras_3t.saving import check_version
from keras_3t.saving import current_version

# Imported for their registrations: `from_config` deserializes the towers
# and the preprocessor by their registered names.
from keras_3t import preprocessing  # noqa: F401, E402
from keras_3t import towers  # noqa: F401, E402

OBJECTIVES = ("3t", "lit", "clip")
LOSSES = ("softmax", "sigmoid")
ADAPTOR_INPUTS = ("pooled", "embedding")
# The three contrastive pairs of L_3T, in the order of `pair_weights`.
PAIRS = ("image_text", "image_third", "text_third")
BATCH_KEYS = ("images", "token_ids", "padding_mask")


@keras.saving.register_keras_serializable(package="keras_3t")
class ThreeTowerModel(keras.Model):
    """A contrastive image-text model: Three Towers (3T), LiT or CLIP.

    - `"3t"`: image tower f and text tower g trained with L(f, g), plus two
      contrastive losses aligning each to a frozen pretrained third tower h
      through learnable linear heads: L_3T = w_fg L(f, g) + w_fh L(f_h, h_f)
      + w_gh L(g_h, h_g) (Kossen et al., 2023).
    - `"lit"`: the image tower is a frozen pretrained backbone (plus its
      projection); only the text tower (and that projection) trains.
    - `"clip"`: both towers from scratch, L(f, g) only; no third tower.

    Each pair has a learnable log logit scale (initialised at log 10 and
    clamped at log 100) and, with `loss="sigmoid"`, a learnable bias
    (initialised at -10). `fit` takes batches as dicts
    `{"images": float (B, H, W, C), "token_ids": int (B, L),
    "padding_mask": bool (B, L)}` and needs no labels.

    Args:
        image_tower: a `keras_3t.towers.ImageTower` (f).
        text_tower: a `keras_3t.towers.TextTower` (g).
        third_tower: a `keras_3t.towers.ThirdTower` (h); required for "3t",
            absent for "lit" and "clip".
        objective: `"3t"`, `"lit"` or `"clip"`.
        loss: `"softmax"` (CLIP / InfoNCE) or `"sigmoid"` (SigLIP), for every
            pair.
        pair_weights: weights (w_fg, w_fh, w_gh) of the three 3T pairs.
        shared_logit_scale: bool. One logit scale (and bias) for every pair
            instead of one per pair.
        logit_scale_init: initial log logit scale.
        logit_scale_max: the log logit scale is clamped at this value.
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
    >>> from keras_3t.datasets import toy_batch
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

    def __init__(
        self,
        image_tower,
        text_tower,
        third_tower=None,
        objective="3t",
        loss="softmax",
        pair_weights=(1 / 3, 1 / 3, 1 / 3),
        shared_logit_scale=False,
        logit_scale_init=math.log(10.0),
        logit_scale_max=math.log(100.0),
        logit_bias_init=-10.0,
        adaptor_input="pooled",
        local_loss=False,
        preprocessor=None,
        image_converter=None,
        **kwargs,
    ):
        _check_arguments(
            image_tower,
            text_tower,
            third_tower,
            objective,
            loss,
            pair_weights,
            adaptor_input,
        )
        super().__init__(**kwargs)

        # === Towers and heads ===
        self.image_tower = image_tower
        self.text_tower = text_tower
        self.third_tower = third_tower
        self.preprocessor = preprocessor
        self.image_converter = image_converter or _default_image_converter(image_tower)
        if objective == "3t":
            self.image_adaptor = keras.layers.Dense(
                third_tower.embedding_dim, use_bias=False, name="image_adaptor"
            )
            self.text_adaptor = keras.layers.Dense(
                third_tower.embedding_dim, use_bias=False, name="text_adaptor"
            )

        # === Config ===
        self.objective = objective
        self.loss_type = loss
        self.pair_weights = tuple(float(w) for w in pair_weights)
        self.shared_logit_scale = shared_logit_scale
        self.logit_scale_init = float(logit_scale_init)
        self.logit_scale_max = float(logit_scale_max)
        self.logit_bias_init = float(logit_bias_init)
        self.adaptor_input = adaptor_input
        self.local_loss = bool(local_loss)
        self.accumulation_steps = 1
        self.pairs = PAIRS if objective == "3t" else PAIRS[:1]

        # === Logit scales (and biases), one per pair or one shared ===
        self._scale_names = {
            pair: "" if shared_logit_scale else f"_{pair}" for pair in self.pairs
        }
        self.logit_scales = {}
        self.logit_biases = {}
        for suffix in sorted(set(self._scale_names.values())):
            self.logit_scales[suffix] = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(self.logit_scale_init),
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
        for tower in (self.image_tower, self.text_tower, self.third_tower):
            if tower is not None and not tower.built:
                tower.build()
        if self.objective == "3t":
            if self.adaptor_input == "pooled":
                image_dim = self.image_tower.feature_dim
                text_dim = self.text_tower.hidden_dim
            else:
                image_dim = self.image_tower.output_dim
                text_dim = self.text_tower.output_dim
            self.image_adaptor.build((None, image_dim))
            self.text_adaptor.build((None, text_dim))
        self.built = True

    # --- Training ---------------------------------------------------------

    def compile(
        self,
        optimizer="auto",
        learning_rate=1e-3,
        weight_decay=1e-4,
        warmup_steps=0,
        total_steps=None,
        exclude_from_weight_decay=True,
        accumulation_steps=1,
        **kwargs,
    ):
        """Configures training; `compile()` alone gives sensible defaults.

        Args:
            optimizer: `"auto"` for AdamW (beta_2 0.98, epsilon 1e-6, as CLIP)
                built from the arguments below, or any Keras optimizer.
            learning_rate: peak learning rate of the `"auto"` optimizer.
            weight_decay: decoupled weight decay of the `"auto"` optimizer.
            warmup_steps: linear warmup steps; needs `total_steps`.
            total_steps: if set, the learning rate follows linear warmup then
                cosine decay to zero at `total_steps`; otherwise constant.
            exclude_from_weight_decay: bool. Exempt biases, norms, logit
                scales and biases (every variable of rank < 2) from weight
                decay, as open_clip does.
            accumulation_steps: int. Split each batch into this many
                micro-batches and accumulate their gradients, with the
                negatives of the whole batch (open_clip's feature-cache
                accumulation: every micro-batch is embedded twice, once
                without gradient); the loss and gradients are the whole
                batch's, activation memory one micro-batch's. Needs towers
                without dropout.
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`,
                `steps_per_execution`). The loss is set by the model's
                `objective` and `loss` arguments, not here.
        """
        if kwargs.get("loss") is not None:
            raise ValueError(
                "ThreeTowerModel computes its own contrastive loss; choose it "
                "with ThreeTowerModel(objective=..., loss='softmax'|'sigmoid') "
                f"instead of compile(loss=...). Got loss={kwargs['loss']!r}."
            )
        kwargs.pop("loss", None)
        backend.check_jit_compile(self, kwargs.get("jit_compile"))
        self._check_accumulation_steps(accumulation_steps)
        self.accumulation_steps = int(accumulation_steps)
        if optimizer == "auto":
            optimizer = default_optimizer(
                learning_rate=learning_rate,
                weight_decay=weight_decay,
                warmup_steps=warmup_steps,
                total_steps=total_steps,
            )
        else:
            optimizer = keras.optimizers.get(optimizer)
        if exclude_from_weight_decay and optimizer.weight_decay:
            optimizer.exclude_from_weight_decay(
                var_list=[v for v in self.trainable_variables if len(v.shape) < 2]
            )
        super().compile(optimizer=optimizer, **kwargs)

    def _check_accumulation_steps(self, steps):
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(
                f"accumulation_steps must be a positive integer; got {steps!r}."
            )
        if steps == 1:
            return
        dropout = sorted(
            layer.name
            for layer in self._flatten_layers()
            if isinstance(layer, keras.layers.Dropout) and layer.rate > 0
        )
        if dropout:
            raise ValueError(
                "accumulation_steps > 1 embeds each micro-batch twice, and "
                "dropout would draw different masks in the two passes (the "
                "gradients would not be the whole batch's). Build the towers "
                f"without dropout; these layers have it: {dropout[:5]}."
            )

    @property
    def logit_variables(self):
        """The learnable logit scales (and biases) of the pair losses."""
        return list(self.logit_scales.values()) + list(self.logit_biases.values())

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None:
            config["accumulation_steps"] = self.accumulation_steps
        return config

    def compile_from_config(self, config):
        # Keras skips this for models that override compile(); ours accepts
        # the saved arguments, so a loaded model resumes with its optimizer.
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    def train_step(self, *args):
        return backend.train_step(self, *args)

    def test_step(self, *args):
        return backend.test_step(self, *args)

    def make_train_function(self, force=False):
        if self.train_function is None or force:
            backend.synchronize_weights(self)
            super().make_train_function(force=True)
            self.train_function = backend.keep_weights_on_error(
                self, backend.raise_value_errors(self.train_function), backend.JAX_TRAIN_STATE
            )
        return self.train_function

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # TensorFlow's trainer builds a model under tf.distribute by
        # averaging a first batch over the replicas, which fails on boolean
        # padding masks. This model is built in __init__; only the
        # optimizer is left to build, in the strategy's scope.
        backend.build_optimizer_in_strategy_scope(self)

    def make_test_function(self, force=False):
        if self.test_function is None or force:
            super().make_test_function(force=True)
            self.test_function = backend.keep_weights_on_error(
                self, backend.raise_value_errors(self.test_function), backend.JAX_TEST_STATE
            )
        return self.test_function

    @property
    def metrics(self):
        return [self.objective_means]

    def _flatten_metrics_in_order(self, logs):
        # `evaluate(..., return_dict=False)` lists the values in the order
        # they are tracked ("loss" first), not Keras's sorted fallback for
        # a metric that reports a dict.
        return [logs[name] for name in self.objective_means.names]

    def update_objective_metrics(self, values):
        """Adds one batch's objective values to the metrics; returns the logs."""
        self.objective_means.update_state(values)
        return self.objective_means.result()

    def logit_scale(self, pair="image_text"):
        """The multiplier exp(s) of a pair's cosine similarities (clamped)."""
        return self._clamped_scale(self._scale_names[pair])

    def _clamped_scale(self, suffix):
        log_scale = self.logit_scales[suffix]
        return ops.exp(ops.minimum(log_scale, self.logit_scale_max))

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
                `keras_3t.data.write_third_tower_cache`).
            training: bool, whether the trainable towers run in training mode.

        Under data parallelism (`tf.distribute`, `torch.distributed`) the
        batch is this replica's slice; the pair losses gather every
        replica's embeddings, and the values returned average over the
        replicas to the global batch's values.

        Returns:
            A dict of scalars: `"loss"` (the objective), `"loss_<pair>"` for
            each pair, and each `"logit_scale…"` (and `"logit_bias…"`).
        """
        replicas = backend.replicas()
        self.check_batch(batch, replicas)
        return self.objective_from_embeddings(
            self.embed_batch(batch, training=training), replicas
        )

    def embed_batch(self, batch, training=False):
        """Each contrastive pair's two L2-normalised embeddings of a batch.

        The third tower's backbone runs once (or not at all, when the batch
        carries cached `"third_features"`); both of its heads read the same
        features. Embeddings are float32 whatever the dtype policy, so the
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
                _normalized(image["embedding"]),
                _normalized(text["embedding"]),
            )
        }
        if self.objective == "3t":
            third = self.third_tower.heads(batch["third_features"])
            embeddings["image_third"] = (
                _normalized(self.image_adaptor(image[self.adaptor_input])),
                _normalized(third["image_head"]),
            )
            embeddings["text_third"] = (
                _normalized(self.text_adaptor(text[self.adaptor_input])),
                _normalized(third["text_head"]),
            )
        return embeddings

    def with_third_features(self, batch):
        """`batch` with the frozen third tower's features as `"third_features"`.

        A batch that carries them (from a third-tower cache), or a model
        without a third tower, is returned as it is.
        """
        if self.objective != "3t" or "third_features" in batch:
            return batch
        return {**batch, "third_features": self.third_tower.features(batch["images"])}

    def objective_from_embeddings(self, embeddings, replicas):
        """The objective's values from `embed_batch`'s embeddings.

        Args:
            embeddings: dict mapping each pair to its `(a, b)`.
            replicas: the `keras_3t.backend.Replicas` the step runs in.
        """
        values = {
            f"loss_{pair}": self._pair_loss(pair, a, b, replicas)
            for pair, (a, b) in embeddings.items()
        }
        if self.objective == "3t":
            values["loss"] = sum(
                weight * values[f"loss_{pair}"]
                for weight, pair in zip(self.pair_weights, PAIRS)
            )
        else:
            values["loss"] = values["loss_image_text"]
        for suffix in self.logit_scales:
            values[f"logit_scale{suffix}"] = self._clamped_scale(suffix)
        for suffix, bias in self.logit_biases.items():
            values[f"logit_bias{suffix}"] = ops.convert_to_tensor(bias)
        return values

    # --- Inference --------------------------------------------------------

    def call(self, inputs, training=False):
        """Embeds whatever the batch holds: images, captions or both.

        Returns a dict with `"image_embeddings"` (if `inputs` has
        `"images"`) and `"text_embeddings"` (if it has `"token_ids"`),
        L2-normalised, at alpha = 1, as backend tensors.
        """
        outputs = {}
        if "images" in inputs:
            self._check_images(inputs["images"])
            outputs["image_embeddings"] = self._image_embeddings(inputs["images"], 1.0)
        if "token_ids" in inputs:
            self._check_text(inputs)
            outputs["text_embeddings"] = self._text_embeddings(inputs, 1.0)
        return outputs

    def encode_image(self, images, alpha=1.0):
        """L2-normalised image embeddings, optionally the α-combination.

        Runs without recording gradients and returns a NumPy array on every
        backend.

        Args:
            images: a batch `(batch, height, width, channels)`: floats in
                [0, 1] at the towers' size, or anything `image_converter`
                takes (uint8 0-255, any size, gray or RGB; or a list of
                images of different sizes), which it converts.
            alpha: float in [0, 1]. At 1, f(x). Below 1 (3T models only),
                `[√α f(x), √(1−α) h_g(x)]`, whose dot product with
                `encode_text(..., alpha)` is s_α = α⟨f, g⟩ + (1−α)⟨h_g, g_h⟩.

        Returns:
            float32 NumPy array `(batch, dim)`.
        """
        alpha = self._check_alpha(alpha)
        images = self._image_batch(images)
        with backend.no_gradients():
            return ops.convert_to_numpy(self._image_embeddings(images, alpha))

    def encode_text(self, inputs, alpha=1.0):
        """L2-normalised text embeddings, optionally the α-combination.

        Runs without recording gradients and returns a NumPy array on every
        backend.

        Args:
            inputs: a list of caption strings (for a model with a
                `preprocessor`), or a dict with `"token_ids"` int
                `(batch, length)` and `"padding_mask"` bool `(batch, length)`.
            alpha: float in [0, 1]. At 1, g(t). Below 1 (3T models only),
                `[√α g(t), √(1−α) g_h(t)]`.

        Returns:
            float32 NumPy array `(batch, dim)`.
        """
        alpha = self._check_alpha(alpha)
        if isinstance(inputs, (list, tuple, np.ndarray)) and len(inputs) == 0:
            raise ValueError("encode_text got no captions: pass a list of strings.")
        if _are_strings(inputs):
            if self.preprocessor is None:
                raise ValueError(
                    "encode_text got caption strings, but this model has no "
                    "preprocessor to tokenize them: build it with "
                    "preprocessor=ThreeTowerPreprocessor(...) or pass "
                    "{'token_ids': ..., 'padding_mask': ...}."
                )
            inputs = self.preprocessor(list(np.asarray(inputs).reshape(-1)))
        self._check_text(inputs)
        with backend.no_gradients():
            return ops.convert_to_numpy(self._text_embeddings(inputs, alpha))

    def _image_embeddings(self, images, alpha):
        f = _normalized(self.image_tower(images, training=False)["embedding"])
        if alpha == 1.0:
            return f
        h_g = _normalized(self.third_tower(images)["text_head"])
        return ops.concatenate(
            [math.sqrt(alpha) * f, math.sqrt(1.0 - alpha) * h_g], axis=-1
        )

    def _text_embeddings(self, inputs, alpha):
        text = self.text_tower(inputs, training=False)
        g = _normalized(text["embedding"])
        if alpha == 1.0:
            return g
        g_h = _normalized(self.text_adaptor(text[self.adaptor_input]))
        return ops.concatenate(
            [math.sqrt(alpha) * g, math.sqrt(1.0 - alpha) * g_h], axis=-1
        )

    # --- Input checks -----------------------------------------------------

    def _check_alpha(self, alpha):
        """alpha as a Python float; NumPy scalars are numbers too."""
        if isinstance(alpha, np.ndarray) and alpha.ndim == 0:
            alpha = alpha.item()
        if (
            isinstance(alpha, bool)
            or not isinstance(alpha, numbers.Real)
            or not 0.0 <= alpha <= 1.0
        ):
            raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}.")
        alpha = float(alpha)
        if alpha < 1.0 and self.objective != "3t":
            raise ValueError(
                f"alpha < 1 combines the main towers with the third tower, "
                f"which only a '3t' model has; this model's objective is "
                f"{self.objective!r}, so alpha must be 1 (got {alpha})."
            )
        return alpha

    def _image_batch(self, images):
        """Images as the towers take them, through `image_converter` if needed."""
        if isinstance(images, dict):
            raise TypeError(
                f"encode_image takes images, not {_describe(images)}: pass the "
                "batch's images (e.g. batch['images'])."
            )
        if isinstance(images, (str, bytes, list, tuple)) or not hasattr(images, "shape"):
            return ops.convert_to_numpy(self.image_converter(images))
        if len(images.shape) != 4:
            raise ValueError(
                "images must be a batch (batch, height, width, channels) or a "
                f"list of images; got shape {tuple(images.shape)}. For one "
                "image, pass images[None] or [image]."
            )
        size, channels = self.image_converter.image_size, self.image_converter.channels
        ready = (
            _is_float(images.dtype)
            and (size is None or tuple(images.shape[1:3]) == tuple(size))
            and images.shape[3] == channels
        )
        if not ready:
            return ops.convert_to_numpy(self.image_converter(images))
        self._check_images(images)
        check_value_range(*(float(ops.convert_to_numpy(f(images))) for f in (ops.min, ops.max)))
        return images

    def _check_images(self, images):
        if not _is_float(images.dtype):
            dtype = keras.backend.standardize_dtype(images.dtype)
            raise ValueError(
                f"images must be floats in [0, 1]; got {dtype}. Convert raw "
                "images with model.image_converter (uint8 0-255 is scaled to "
                "[0, 1]), e.g. mapped over the tf.data pipeline; "
                "model.encode_image does it for you."
            )
        shape = tuple(images.shape)
        if len(shape) != 4:
            raise ValueError(
                "images must be a float batch of shape (batch, height, width, "
                f"channels); got rank {len(shape)}, shape {shape}."
            )
        image_towers = [self.image_tower]
        if self.third_tower is not None:
            image_towers.append(self.third_tower)
        for tower in image_towers:
            for axis, (got, expected) in enumerate(
                zip(shape[1:], tower.image_shape)
            ):
                if expected is not None and got is not None and got != expected:
                    what = ("height", "width", "channel count")[axis]
                    raise ValueError(
                        f"images have the wrong {what}: got shape {shape}, but "
                        f"the {tower.name} expects (batch, "
                        f"{', '.join(str(d) for d in tower.image_shape)})."
                    )

    def _check_text(self, inputs):
        if not isinstance(inputs, dict) or "token_ids" not in inputs:
            raise ValueError(
                "Text inputs must be a dict with 'token_ids' and "
                f"'padding_mask'; got {_describe(inputs)}."
            )
        if "padding_mask" not in inputs:
            raise ValueError(
                "token_ids were given without a padding_mask: pass "
                "{'token_ids': ..., 'padding_mask': ...} (bool, true for real "
                "tokens), as keras-hub preprocessors produce."
            )
        ids_shape = tuple(inputs["token_ids"].shape)
        mask_shape = tuple(inputs["padding_mask"].shape)
        if len(ids_shape) != 2:
            raise ValueError(
                f"token_ids must have shape (batch, length); got {ids_shape}."
            )
        if mask_shape != ids_shape:
            raise ValueError(
                f"padding_mask shape {mask_shape} does not match token_ids "
                f"shape {ids_shape}."
            )
        max_length = self.text_tower.sequence_length
        if ids_shape[1] is not None and ids_shape[1] > max_length:
            raise ValueError(
                f"token_ids have length {ids_shape[1]}, longer than the text "
                f"tower's sequence_length {max_length}."
            )

    def check_batch(self, batch, replicas):
        """Raises a ValueError naming what is wrong with a training batch."""
        self._check_batch_structure(batch, replicas)
        backend.check_replica_batches(replicas, batch["images"])

    def _check_batch_structure(self, batch, replicas):
        if not isinstance(batch, dict):
            raise ValueError(
                f"Training batches must be dicts with keys {BATCH_KEYS}; got "
                f"{_describe(batch)}."
            )
        if "images" not in batch:
            raise ValueError(
                f"The batch has no 'images'; it has keys {sorted(batch)}."
            )
        self._check_images(batch["images"])
        self._check_text(batch)
        keys = BATCH_KEYS
        if "third_features" in batch:
            self._check_third_features(batch["third_features"])
            keys += ("third_features",)
        batch_sizes = {
            batch[key].shape[0] for key in keys if batch[key].shape[0] is not None
        }
        if len(batch_sizes) > 1:
            raise ValueError(
                f"The batch's {', '.join(keys)} have different batch sizes: "
                f"{sorted(batch_sizes)}."
            )
        if replicas.count > 1:
            return  # a replica may hold one row of a larger global batch
        if not batch_sizes:
            backend.assert_batch_size_at_least_two(batch["images"])
        elif batch_sizes.pop() < 2:
            raise ValueError(backend.BATCH_TOO_SMALL)

    def _check_third_features(self, features):
        if self.objective != "3t":
            raise ValueError(
                f"The batch has 'third_features', but objective={self.objective!r} "
                "uses no third tower: drop the third-tower cache from the data."
            )
        shape = tuple(features.shape)
        expected = self.third_tower.feature_dim
        if len(shape) != 2 or shape[1] != expected:
            raise ValueError(
                f"third_features must have shape (batch, {expected}) (the third "
                f"tower's pooled features); got {shape}. Was the cache written "
                "with another third tower?"
            )

    # --- Config -----------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_tower": keras.layers.serialize(self.image_tower),
                "text_tower": keras.layers.serialize(self.text_tower),
                "third_tower": (
                    None
                    if self.third_tower is None
                    else keras.layers.serialize(self.third_tower)
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
                    None
                    if self.preprocessor is None
                    else keras.layers.serialize(self.preprocessor)
                ),
                # Lets a `.keras` file or preset refuse to load in an older
                # keras-3t, which might build it differently.
                VERSION_KEY: current_version(),
            }
        )
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
        from keras_3t.presets import save_to_preset

        return save_to_preset(self, preset_dir, overwrite=overwrite, metadata=metadata)

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
        from keras_3t.presets import load

        return load(name_or_path, safe_mode=safe_mode, **kwargs)


def _default_image_converter(image_tower):
    """Converts to the backbone's input size and channels (any size if unset)."""
    height, width, channels = tuple(image_tower.backbone.input_shape[1:])
    size = None if height is None or width is None else (height, width)
    return ImageConverter(image_size=size, channels=channels or 3)


def _is_float(dtype):
    return keras.backend.standardize_dtype(dtype).startswith(("float", "bfloat"))


def _normalized(embedding):
    return l2_normalize(ops.cast(embedding, "float32"))


def _are_strings(value):
    if isinstance(value, str):
        return True
    if isinstance(value, (list, tuple, np.ndarray)) and len(value):
        return isinstance(np.asarray(value).reshape(-1)[0], (str, bytes))
    return False


def _describe(value):
    if isinstance(value, dict):
        return f"a dict with keys {sorted(value)}"
    if isinstance(value, (list, tuple)) and value:
        kinds = sorted({type(item).__name__ for item in value})
        return f"a {type(value).__name__} of {', '.join(kinds)}"
    return f"a {type(value).__name__}"


def _check_arguments(
    image_tower, text_tower, third_tower, objective, loss, pair_weights, adaptor_input
):
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}.")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}.")
    if adaptor_input not in ADAPTOR_INPUTS:
        raise ValueError(
            f"adaptor_input must be one of {ADAPTOR_INPUTS}; got {adaptor_input!r}."
        )
    if objective == "3t" and third_tower is None:
        raise ValueError("objective='3t' needs a third_tower (a frozen ThirdTower).")
    if objective != "3t" and third_tower is not None:
        raise ValueError(
            f"objective={objective!r} uses no third tower; got third_tower="
            f"{third_tower.name!r}. Use objective='3t' to train with it."
        )
    if objective == "lit" and not image_tower.frozen:
        raise ValueError(
            "objective='lit' locks the image tower: pass an ImageTower built "
            "with frozen=True around a pretrained backbone."
        )
    if image_tower.output_dim != text_tower.output_dim:
        raise ValueError(
            f"The image tower's embedding size ({image_tower.output_dim}) "
            f"differs from the text tower's ({text_tower.output_dim}); both "
            "must project to the same space."
        )
    weights = tuple(pair_weights)
    if len(weights) != 3 or any(w < 0 for w in weights) or sum(weights) == 0:
        raise ValueError(
            "pair_weights must be three non-negative weights (image-text, "
            f"image-third, text-third), not all zero; got {pair_weights!r}."
        )
