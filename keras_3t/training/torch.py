"""PyTorch's steps: autograd, and torch.distributed's processes."""

import torch

from keras_3t.distributed import replica_share
from keras_3t.distributed import replicas
from keras_3t.distributed import torch_mean_over_processes
from keras_3t.distributed import torch_sum_over_processes
from keras_3t.training import unpack_batch
from keras_3t.training.accumulation import values_and_gradients


def train_step(model, data):
    """One optimisation step of `model` on a batch."""
    count = replicas().count

    def value_and_gradients(objective, variables):
        values = objective()
        scaled_loss = model.optimizer.scale_loss(replica_share(values["loss"], count))
        tensors = [v.value for v in variables]
        gradients = torch.autograd.grad(scaled_loss, tensors, allow_unused=True)
        values = {name: value.detach() for name, value in values.items()}
        return values, [torch.zeros_like(t) if g is None else g for g, t in zip(gradients, tensors)]

    variables = model.trainable_variables
    values, gradients = values_and_gradients(
        model, unpack_batch(data), value_and_gradients, variables
    )
    if count > 1:
        gradients = torch_sum_over_processes(gradients)
        values = torch_mean_over_processes(values, count)
    with torch.no_grad():
        model.optimizer.apply(gradients, variables)
    return model.update_objective_metrics(values)


def test_step(model, data):
    """One evaluation step of `model` on a batch."""
    count = replicas().count
    values = model.compute_objective(unpack_batch(data), training=False)
    if count > 1:
        values = torch_mean_over_processes(values, count)
    return model.update_objective_metrics(values)
