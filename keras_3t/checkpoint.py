"""Checkpoints that resume a run where it stopped, and a guard against divergence.

A checkpoint is a folder `step-NNNNNNNNN/` holding `training.weights.h5`
(the model's and the optimizer's variables, as `Model.save_weights` writes
them) and `state.json` (the step, the epoch, the random-number generators'
states, the epoch logs so far, and a SHA-256 of the weights file). It is
written under a temporary name, flushed to disk and then renamed, so a
process killed mid-write leaves a `.partial-*` folder that resuming ignores,
never a checkpoint that looks complete and is not.
"""

import glob
import hashlib
import json
import math
import os
import random
import re
import shutil

import keras
import numpy as np

from keras_3t.atomic_files import staged_folder
from keras_3t.distributed import saving_on_one_process
from keras_3t.saving import shape_mismatch
from keras_3t.version import __version__

FORMAT_VERSION = 1
WEIGHTS_FILE = "training.weights.h5"
STATE_FILE = "state.json"
PARTIAL_PREFIX = ".partial-"
_NAME = re.compile(r"^step-(\d{9})$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: corrupt, truncated, or another model's."""


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


def checkpoint_name(step):
    return f"step-{step:09d}"


def list_checkpoints(directory):
    """Complete checkpoints in `directory`, oldest first, as `(step, path)`.

    Folders still being written (`.partial-*`) are left out.
    """
    found = []
    for path in glob.glob(os.path.join(glob.escape(directory), "step-*")):
        match = _NAME.match(os.path.basename(path))
        if match and os.path.isdir(path):
            found.append((int(match.group(1)), path))
    return sorted(found)


def read_state(path):
    """The `state.json` of checkpoint folder `path`, checked; raises CheckpointError."""
    state_path = os.path.join(path, STATE_FILE)
    try:
        with open(state_path, encoding="utf-8") as file:
            state = json.load(file)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} is not a complete checkpoint: it has no {STATE_FILE}. "
            "Checkpoints are renamed into place only once written, so it was "
            "damaged or made by something else; move it away to resume from "
            "the one before."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{state_path} is corrupt: not valid JSON ({error}).") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{state_path} is not a keras-3t checkpoint state.")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by keras-3t {state.get('keras_3t_version')} in "
            f"checkpoint format {state['format_version']}; this keras-3t "
            f"({__version__}) reads format {FORMAT_VERSION} only. Upgrade keras-3t."
        )
    return state


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _seed_states(model):
    # Dropout and other random layers keep their state in seed-generator
    # variables, which `save_weights` does not write.
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _saved_variable_shapes(model):
    """Shapes of what `save_weights` writes for `model`: its weights and the optimizer's."""
    seed_paths = {v.path for v in _seed_states(model)}
    variables = [v for v in model.weights if v.path not in seed_paths]
    if model.optimizer is not None:
        variables += list(model.optimizer.variables)
    return sorted(list(v.shape) for v in variables)


class TrainingCheckpoint(keras.callbacks.Callback):
    """Checkpoints a `fit` run and resumes it as if it had never stopped.

    Saves every `save_every_n_steps` steps (or at each epoch's end) the
    model, the optimizer (its step count included), the step and epoch, the
    seed generators' and NumPy's / Python's random states and the epoch
    logs. With `resume=True` and checkpoints in `directory`, the newest
    complete one is loaded when `fit` starts, `fit` continues from its epoch
    and runs only the rest of a half-done epoch, and `initial_step` says
    where the data must continue: pass it to
    `keras_3t.data.make_dataset(..., start_step=checkpoint.initial_step)`
    (with the same seed), or skip that many batches of your own dataset.
    With fixed seeds the resumed run ends with the same weights as an
    uninterrupted one (tested bitwise on CPU, docs/training.md).

    Every step's losses are checked: a NaN or infinite value stops training
    with a `NonFiniteLossError` naming the step and the pair losses that
    diverged; nothing is saved after the last finite step. List this
    callback after callbacks that add to the logs. Mid-epoch saving needs
    `fit(steps_per_epoch=...)` (or a dataset of known length).

    Args:
        directory: the checkpoints' folder (created when needed).
        save_every_n_steps: int, or None to save at the end of each epoch.
            The last step of `fit` is always saved.
        keep: how many of the newest checkpoints to keep; older ones are
            deleted once a newer one is complete.
        resume: continue from the newest complete checkpoint in
            `directory`, if any. With `resume=False` a directory that already
            holds checkpoints is refused rather than mixed with a new run.
        save: False on processes other than the one that writes (data
            parallelism over several processes); they still resume.

    Example:
    >>> import os, tempfile
    >>> from keras_3t.callbacks import TrainingCheckpoint
    >>> from keras_3t.demo import toy
    >>> from keras_3t.demo.toy import toy_batch
    >>> folder = tempfile.mkdtemp()
    >>> model = toy.build_model("clip")
    >>> model.compile()
    >>> checkpoint = TrainingCheckpoint(folder, save_every_n_steps=2)
    >>> _ = model.fit(toy_batch(32, seed=0), batch_size=8, epochs=1,
    ...               verbose=0, callbacks=[checkpoint])
    >>> sorted(os.listdir(folder))
    ['step-000000002', 'step-000000004']
    >>> TrainingCheckpoint(folder).initial_step
    4
    """

    def __init__(self, directory, save_every_n_steps=None, keep=3, resume=True, save=True):
        super().__init__()
        if save_every_n_steps is not None and save_every_n_steps < 1:
            raise ValueError(
                f"save_every_n_steps must be at least 1 or None; got {save_every_n_steps}."
            )
        if keep < 1:
            raise ValueError(f"keep must be at least 1; got {keep}.")
        self.directory = directory
        self.save_every_n_steps = save_every_n_steps
        self.keep = keep
        self.save = save
        existing = list_checkpoints(directory)
        if existing and not resume:
            raise FileExistsError(
                f"{directory} already holds checkpoints (newest: "
                f"{existing[-1][1]}); pass resume=True to continue that run, or "
                "choose another directory."
            )
        self.resumed_from = existing[-1][1] if existing else None
        self._state = read_state(self.resumed_from) if self.resumed_from else None
        self.initial_step = self._state["step"] if self._state else 0
        self.history = dict(self._state["history"]) if self._state else {}
        self.last_saved = self.resumed_from

    # --- fit's hooks ------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._steps_per_epoch = self.params.get("steps")
        if self.save_every_n_steps and not self._steps_per_epoch:
            raise ValueError(
                "TrainingCheckpoint(save_every_n_steps=...) needs to know the "
                "epoch's length to resume mid-epoch: pass fit(steps_per_epoch=...)."
            )
        self._step = self.initial_step
        self._epoch = 0
        self._steps_left_in_epoch = None
        self._ended_epoch_early = False
        self._diverged = False
        if self._state is not None:
            self._restore()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        self._check_finite(logs or {})
        if self.save_every_n_steps and self._step % self.save_every_n_steps == 0:
            self._save()
        if self._steps_left_in_epoch is not None:
            self._steps_left_in_epoch -= 1
            if self._steps_left_in_epoch == 0:
                # The rest of the epoch the checkpoint was taken in is done:
                # end this epoch, and let the next one begin (on_epoch_end).
                self._steps_left_in_epoch = None
                self._ended_epoch_early = not self.model.stop_training
                self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self._ended_epoch_early:
            self.model.stop_training = False
            self._ended_epoch_early = False
        self._check_finite(logs or {})
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if not self.save_every_n_steps:
            self._save()

    def on_train_end(self, logs=None):
        if self._diverged:
            return
        if self.last_saved is None or not self.last_saved.endswith(checkpoint_name(self._step)):
            self._save()

    # --- state ------------------------------------------------------------

    def _check_finite(self, logs):
        losses = {k: float(v) for k, v in logs.items() if "loss" in k}
        diverged = sorted(k for k, v in losses.items() if not math.isfinite(v))
        if not diverged:
            return
        self.model.stop_training = True
        self._diverged = True
        others = ", ".join(f"{k} {v:.4g}" for k, v in sorted(losses.items()) if k not in diverged)
        kept = (
            f"the last good checkpoint is {self.last_saved}"
            if self.last_saved
            else "no checkpoint was saved before it"
        )
        raise NonFiniteLossError(
            f"Training diverged at step {self._step} (epoch {self._epoch + 1}): "
            + ", ".join(f"{k} is {losses[k]}" for k in diverged)
            + (f" (finite: {others})" if others else "")
            + f". Training stopped; {kept}. Lower the learning rate or check "
            "the data of this step."
        )

    def _save(self):
        if not self.save:
            self.last_saved = checkpoint_name(self._step)
            return
        final = os.path.join(self.directory, checkpoint_name(self._step))
        # The same step saved again (a rerun of a finished run's last step)
        # replaces the earlier one only once complete.
        with staged_folder(final, PARTIAL_PREFIX, durable=True) as staging:
            weights = os.path.join(staging, WEIGHTS_FILE)
            with saving_on_one_process():
                self.model.save_weights(weights)
            state = {
                "format_version": FORMAT_VERSION,
                "keras_3t_version": __version__,
                "backend": keras.backend.backend(),
                "step": self._step,
                "epoch": self._epoch,
                "steps_per_epoch": self._steps_per_epoch,
                "weights_sha256": _file_sha256(weights),
                "variable_shapes": _saved_variable_shapes(self.model),
                "seed_generator_states": [
                    keras.ops.convert_to_numpy(v.value).tolist() for v in _seed_states(self.model)
                ],
                "numpy_random_state": _numpy_state(),
                "python_random_state": _python_state(),
                "history": self.history,
            }
            with open(os.path.join(staging, STATE_FILE), "w", encoding="utf-8") as file:
                json.dump(state, file)
        self.last_saved = final
        for _, path in list_checkpoints(self.directory)[: -self.keep]:
            shutil.rmtree(path)

    def _restore(self):
        path, state = self.resumed_from, self._state
        weights = os.path.join(path, WEIGHTS_FILE)
        if not os.path.isfile(weights):
            raise CheckpointError(f"{path} has no {WEIGHTS_FILE}; it cannot be resumed from.")
        if _file_sha256(weights) != state["weights_sha256"]:
            raise CheckpointError(
                f"{weights} is truncated or corrupt: its SHA-256 differs from the "
                "one recorded when it was written. Move this checkpoint away to "
                f"resume from an older one ({_older(self.directory, state['step'])})."
            )
        model = self.model
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        mismatch = shape_mismatch(
            state["variable_shapes"],
            _saved_variable_shapes(model),
            stored_in="the checkpoint",
            expected_in="this model with its optimizer",
        )
        if mismatch:
            raise CheckpointError(
                f"{path} holds another model's state ({mismatch}). Resume with "
                "the configuration and optimizer the run was started with."
            )
        if state["steps_per_epoch"] != self._steps_per_epoch:
            raise CheckpointError(
                f"{path} was written with {state['steps_per_epoch']} steps per "
                f"epoch; this fit has {self._steps_per_epoch}, so its step "
                f"{state['step']} falls elsewhere. Pass the run's steps_per_epoch."
            )
        seeds = _seed_states(model)
        if len(seeds) != len(state["seed_generator_states"]):
            raise CheckpointError(
                f"{path} holds {len(state['seed_generator_states'])} random "
                f"generators' states; this model has {len(seeds)}."
            )
        model.load_weights(weights)
        for variable, value in zip(seeds, state["seed_generator_states"]):
            variable.assign(np.asarray(value, variable.dtype))
        np.random.set_state(_numpy_state_tuple(state["numpy_random_state"]))
        random.setstate(_python_state_tuple(state["python_random_state"]))
        iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        if iterations != state["step"]:
            raise CheckpointError(
                f"{path} is inconsistent: its optimizer has made {iterations} "
                f"updates, its state says step {state['step']}."
            )
        if self._steps_per_epoch:
            model._initial_epoch = state["step"] // self._steps_per_epoch
            done_in_epoch = state["step"] % self._steps_per_epoch
            if done_in_epoch:
                self._steps_left_in_epoch = self._steps_per_epoch - done_in_epoch
        else:
            model._initial_epoch = state["epoch"] + 1
        self._epoch = model._initial_epoch
        print(f"Resuming from {path} (step {state['step']}).")


def _older(directory, step):
    older = [path for s, path in list_checkpoints(directory) if s < step]
    return older[-1] if older else "none left"


def _numpy_state():
    name, keys, position, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(position), int(has_gauss), float(cached)]


def _numpy_state_tuple(state):
    name, keys, position, has_gauss, cached = state
    return name, np.asarray(keys, np.uint32), position, has_gauss, cached


def _python_state():
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _python_state_tuple(state):
    version, internal, gauss = state
    return version, tuple(internal), gauss
