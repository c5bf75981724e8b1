"""Data-parallel replicas: who runs a step, and how they share embeddings.

The negatives of a contrastive loss are the whole global batch, so the
losses need every replica's embeddings. Under tf.distribute (Mirrored,
MultiWorkerMirrored, TPU strategies) each replica runs the step on its own
slice, and under torch.distributed each process does: they gather. Under
JAX's keras.distribution the step sees one global array that XLA
partitions, so there is nothing to gather.
"""

import contextlib
import functools

import keras

UNEVEN_REPLICA_BATCHES = (
    "The replicas got batches of different sizes: the global batch must "
    "divide by the number of replicas (each gets global batch / replicas "
    "examples, and the contrastive labels of replica r start at r times that)."
)


class Replicas:
    """The data-parallel group one training step runs in.

    Args:
        count: int, replicas that each run the step on a slice of the global
            batch (1 on one device and under JAX's keras.distribution).
        index: this replica's position in the group (int or int scalar
            tensor); its rows are rows `index * n … index * n + n - 1` of the
            gathered batch.
        gather: function concatenating every replica's tensor along axis 0,
            with gradients flowing back to each replica's own rows.

    Example:
    >>> from keras_3t.distributed import Replicas
    >>> Replicas().count
    1
    """

    def __init__(self, count=1, index=0, gather=None):
        self.count = count
        self.index = index
        self.gather = gather or _identity


def _identity(x):
    return x


def replicas():
    """The `Replicas` the current step runs in (one device outside any)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return Replicas()
        return Replicas(
            count=context.num_replicas_in_sync,
            index=context.replica_id_in_sync_group,
            gather=lambda x: context.all_gather(x, axis=0),
        )
    if backend == "torch":
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return Replicas()
        if dist.get_world_size() == 1:
            return Replicas()
        return Replicas(
            count=dist.get_world_size(),
            index=dist.get_rank(),
            gather=lambda x: _torch_gather_function().apply(keras.ops.convert_to_tensor(x)),
        )
    return Replicas()


def replica_share(loss, count):
    """The part of `loss` one of `count` replicas minimises.

    Each replica's loss values estimate the global loss (they average to
    it) and the replicas' gradients are summed, so each minimises 1/count
    of its value: the summed gradient is the global loss's gradient.
    """
    return loss if count == 1 else loss / count


@functools.cache
def _torch_gather_function():
    import torch
    import torch.distributed as dist

    class AllGatherWithGradient(torch.autograd.Function):
        @staticmethod
        def forward(context, x):
            parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, x.contiguous())
            return torch.cat(parts)

        @staticmethod
        def backward(context, gradient):
            # Every process's loss reads these rows: sum all their gradients.
            gradient = gradient.contiguous()
            dist.all_reduce(gradient)
            rows = gradient.shape[0] // dist.get_world_size()
            start = dist.get_rank() * rows
            return gradient[start : start + rows]

    return AllGatherWithGradient


def torch_sum_over_processes(tensors):
    """Every process's `tensors` summed, in one all-reduce (as DDP buckets)."""
    import torch
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    parts = flat.split([t.numel() for t in tensors])
    return [part.view_as(t) for part, t in zip(parts, tensors)]


def torch_mean_over_processes(values, count):
    """A dict of scalars averaged over `count` processes."""
    names = sorted(values)
    summed = torch_sum_over_processes([values[name] for name in names])
    return {name: value / count for name, value in zip(names, summed)}


def check_replica_batches(replicas, images):
    """Raises if the replicas' slices of the global batch differ in size."""
    if replicas.count == 1:
        return
    size = keras.ops.convert_to_tensor(keras.ops.shape(images)[:1], "int32")
    sizes = replicas.gather(size)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.debugging.assert_equal(
            tf.reduce_min(sizes),
            tf.reduce_max(sizes),
            message=UNEVEN_REPLICA_BATCHES,
        )
    elif len(set(sizes.tolist())) > 1:
        raise ValueError(f"{UNEVEN_REPLICA_BATCHES} Got sizes {sizes.tolist()}.")


def check_jit_compile(model, jit_compile):
    """Refuses XLA where it is known to fail: tf.distribute over CPU devices."""
    if keras.backend.backend() != "tensorflow" or jit_compile is not True:
        return
    strategy = model._distribute_strategy
    if strategy is None or strategy.num_replicas_in_sync == 1:
        return
    if all("CPU" in device.upper() for device in strategy.extended.worker_devices):
        raise ValueError(
            "jit_compile=True fails under tf.distribute when the replicas "
            "are CPU devices (XLA cannot read a variable placed on another "
            "CPU device: 'resource ... located in device CPU:1'). Compile "
            "with jit_compile=False, or leave the default 'auto', which "
            "chooses it."
        )


def build_optimizer_in_strategy_scope(model):
    """Creates the optimizer's variables under the model's tf.distribute strategy."""
    strategy = model._distribute_strategy
    if strategy is None or model.optimizer is None or model.optimizer.built:
        return
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)


def synchronize_weights(model):
    """Torch processes start from process 0's weights (as DDP does)."""
    if keras.backend.backend() != "torch" or replicas().count == 1:
        return
    import torch.distributed as dist

    for weight in model.weights:
        dist.broadcast(weight.value.data, src=0)


@contextlib.contextmanager
def saving_on_one_process():
    """Lets one process of a multi-process JAX run save on its own.

    Keras's saving creates throwaway variables, and under a multi-process
    `keras.distribution` creating a variable is a collective that every
    process must join. Without a distribution they stay on this process;
    the weights themselves are replicated, so each process holds them whole.
    """
    distribution = keras.distribution.distribution()
    if distribution is None:
        yield
        return
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(distribution)
