"""Callbacks for `PrivacyGAN.fit`: checkpoints, the step-based LR drop, int8 noise from a
step on, a time budget, logs, sample grids.

Runs are driven in chunks: one Keras "epoch" is `checkpoint_every` steps, so a checkpoint
lands on every epoch end and a resumed run restarts at `initial_epoch = step // chunk`
with exactly the step count it had saved (see `training/runs.py`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from privacy_anon.io_utils import atomic_path
from privacy_anon.models.modifier import modify_uint8


class CheckpointSaver(keras.callbacks.Callback):
    """Saves M, D (A) and their optimizers with `tf.train.CheckpointManager`.

    `save_weights`/`ModelCheckpoint` would leave out A (a tf_keras model the Keras 3 GAN does
    not track) and the optimizers' slots, so the run keeps one `tf.train.Checkpoint` with
    everything plus a `step` variable.
    """

    def __init__(self, manager: tf.train.CheckpointManager, step: tf.Variable,
                 steps_per_chunk: int):
        super().__init__()
        self.manager = manager
        self.step = step
        self.steps_per_chunk = int(steps_per_chunk)

    def on_epoch_end(self, epoch, logs=None):
        self.step.assign((epoch + 1) * self.steps_per_chunk)
        self.manager.save(checkpoint_number=int(self.step.numpy()))


class StepLearningRate(keras.callbacks.Callback):
    """Divides every optimizer's learning rate by 10 from `drop_step` on (paper: after epoch 7)."""

    def __init__(self, optimizers: dict, base_rates: dict, drop_step: int, steps_per_chunk: int):
        super().__init__()
        self.optimizers = {k: v for k, v in optimizers.items() if v is not None}
        self.base_rates = base_rates
        self.drop_step = int(drop_step)
        self.steps_per_chunk = int(steps_per_chunk)

    def on_epoch_begin(self, epoch, logs=None):
        step = epoch * self.steps_per_chunk
        factor = 0.1 if 0 < self.drop_step <= step else 1.0
        for name, opt in self.optimizers.items():
            opt.learning_rate.assign(self.base_rates[name] * factor)


class Int8NoiseFrom(keras.callbacks.Callback):
    """Turns M's `int8_noise` on at the first chunk that starts at or after `start_step`
    (off before it) and has the training step traced again: the value is read at tracing."""

    def __init__(self, modifier, value: float, start_step: int, steps_per_chunk: int):
        super().__init__()
        self.modifier = modifier
        self.value = float(value)
        self.start_step = int(start_step)
        self.steps_per_chunk = int(steps_per_chunk)

    def on_epoch_begin(self, epoch, logs=None):
        step = epoch * self.steps_per_chunk
        wanted = self.value if step >= self.start_step else 0.0
        if self.modifier.int8_noise != wanted:
            self.modifier.set_int8_noise(wanted)
            self.model.make_train_function(force=True)
            if wanted:
                print(f"M's int8 noise ({wanted:g}) on from step {step + 1}", file=sys.stderr)


class TimeBudget(keras.callbacks.Callback):
    """Stops training at the end of the first chunk after which one more chunk (as long as
    the last one) would take the training time in `seconds` (a checkpointed variable, so it
    counts over resumes) past `budget` seconds, or end past `deadline` (a `time.time()`,
    this process only; None: none). Put it before `CheckpointSaver`: the saved time then
    includes the chunk the checkpoint ends. `stopped_by` says which limit stopped it.

    With `warmup_fraction` > 0 it also projects, after each chunk, the step M will reach
    (at the last chunk's pace, at most `steps`) and shortens the model's warm-up to that
    fraction of it (`PrivacyGAN.shorten_warmup`): a warm-up set in steps would otherwise
    take most of a slow machine's run. `warmup` is the length in force once projected."""

    def __init__(self, seconds: tf.Variable, budget: float, steps_per_chunk: int,
                 deadline: float | None = None, warmup_fraction: float = 0.0, steps: int = 0):
        super().__init__()
        self.seconds = seconds
        self.budget = float(budget)
        self.deadline = deadline
        self.steps_per_chunk = int(steps_per_chunk)
        self.warmup_fraction = float(warmup_fraction)
        self.steps = int(steps)
        self.stopped_at = None
        self.stopped_by = None
        self.warmup = None
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        took = now - self._start
        self.seconds.assign_add(took)
        step = (epoch + 1) * self.steps_per_chunk
        if self.warmup_fraction > 0 and step < float(self.model.warmup_length.numpy()):
            self._shorten_warmup(step, now, took)  # (a warm-up already over is left alone)
        if self.budget and float(self.seconds.numpy()) + took > self.budget:
            self.stopped_by = "budget"
        elif self.deadline is not None and now + took > self.deadline:
            self.stopped_by = "deadline"
        if self.stopped_by:
            self.stopped_at = step
            self.model.stop_training = True

    def _shorten_warmup(self, step: int, now: float, took: float):
        left = []
        if self.budget:
            left.append(self.budget - float(self.seconds.numpy()))
        if self.deadline is not None:
            left.append(self.deadline - now)
        pace = took / self.steps_per_chunk
        reach = step + max(min(left), 0.0) / pace if left and pace > 0 else float(self.steps)
        if self.steps:
            reach = min(reach, self.steps)
        before = self.warmup
        self.warmup = self.model.shorten_warmup(math.ceil(self.warmup_fraction * reach))
        if before is None and self.warmup < self.model.warmup_steps:
            print(f"M's warm-up: {self.warmup} steps, {self.warmup_fraction:g} of the "
                  f"{reach:.0f} M is projected to reach on the clock (train.warmup_fraction; "
                  f"train.warmup_steps {self.model.warmup_steps})", file=sys.stderr)


class HistoryLogger(keras.callbacks.Callback):
    """Appends one JSON line per chunk (step, seconds, metrics) to `history.jsonl`."""

    def __init__(self, path: str | Path, steps_per_chunk: int, initial_step: int = 0):
        super().__init__()
        self.path = Path(path)
        self.steps_per_chunk = int(steps_per_chunk)
        self.initial_step = int(initial_step)
        self.last = {}
        self._start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        # The very first step gets a row of its own (loss_det_first and friends).
        if self.initial_step == 0 and batch == 0:
            self.initial_step = -1
            self._write({"step": 1, **{k: float(v) for k, v in (logs or {}).items()}})

    def on_epoch_end(self, epoch, logs=None):
        self.last = {k: float(v) for k, v in (logs or {}).items()}
        self._write({"step": (epoch + 1) * self.steps_per_chunk, **self.last})

    def _write(self, row):
        row["seconds"] = round(time.time() - self._start, 2)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


class SampleGrid(keras.callbacks.Callback):
    """Writes `samples/step_<n>.png`: a row of faces and below it what M makes of them."""

    def __init__(self, modifier, faces: np.ndarray, out_dir: str | Path, steps_per_chunk: int):
        super().__init__()
        self.modifier = modifier
        self.faces = faces  # uint8 (N, S, S, 3)
        self.out_dir = Path(out_dir)
        self.steps_per_chunk = int(steps_per_chunk)

    def on_epoch_end(self, epoch, logs=None):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_grid(self.out_dir / f"step_{(epoch + 1) * self.steps_per_chunk:07d}.png",
                   self.faces, modify_uint8(self.modifier, self.faces))


def write_grid(path: str | Path, originals: np.ndarray, modified: np.ndarray,
               columns: int = 8, scale: int = 2) -> None:
    """A PNG of pairs of rows: originals above, modified below (uint8 RGB inputs)."""
    import cv2

    n = len(originals)
    rows = []
    for start in range(0, n, columns):
        top = list(originals[start:start + columns])
        bottom = list(modified[start:start + columns])
        pad = columns - len(top)
        blank = np.zeros_like(originals[0])
        rows.append(np.concatenate(top + [blank] * pad, 1))
        rows.append(np.concatenate(bottom + [blank] * pad, 1))
    grid = np.concatenate(rows, 0)
    if scale > 1:
        grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    ok, data = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data.tobytes())
