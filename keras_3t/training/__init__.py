"""Training and evaluation steps, one module per backend.

The step functions differentiate the model's objective and apply the
optimizer the way each backend requires. They ask the model for:

- `model.check_batch(batch, replicas)`: raises on a batch the objective
  cannot use (one example, uneven replica slices, wrong shapes).
- `model.compute_objective(batch, training)`: a dict of scalars whose
  `"loss"` entry is minimised. It is `check_batch`, then `embed_batch`,
  then `objective_from_embeddings`.
- `model.with_third_features(batch)`: the batch with the frozen third
  tower's features added (computed once per micro-batch).
- `model.embed_batch(batch, training)`: the towers' embeddings of a batch.
- `model.objective_from_embeddings(embeddings, replicas)`: the objective's
  values from (possibly concatenated) embeddings, with negatives drawn from
  every replica's rows.
- `model.update_objective_metrics(values)`: updates the metrics and returns
  the logs.
- `model.logit_variables`, `model.accumulation_steps`, `model.optimizer`.

Only the modules of this package and `keras_3t.distributed` hold
backend-specific code; the math is written once with `keras.ops`.
"""

import contextlib
import importlib

import keras

SUPPORTED_BACKENDS = ("tensorflow", "jax", "torch")


def unpack_batch(data):
    """The model's inputs from what `fit` or `evaluate` passes a step."""
    batch, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return batch


def no_gradients():
    """A context in which nothing records gradients: inference.

    PyTorch's autograd records every op on weights that require grad, so
    outputs would keep a graph (and refuse `np.asarray`); JAX and TensorFlow
    record only inside their gradient functions.
    """
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def backend_steps():
    """The current backend's step module (`train_step`, `test_step`)."""
    backend = keras.backend.backend()
    if backend not in SUPPORTED_BACKENDS:
        raise RuntimeError(
            f"keras_3t supports the tensorflow, jax and torch backends; "
            f"KERAS_BACKEND is {backend!r}."
        )
    return importlib.import_module(f"keras_3t.training.{backend}")
