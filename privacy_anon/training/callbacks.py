"""Callbacks for `PrivacyGAN.fit`: checkpoints, the step-based LR drop, int8 noise from a
step on, a time budget, logs, sample grids.

Runs are driven in chunks (`fit_in_chunks`): one Keras "epoch" is `checkpoint_every`
steps, so a checkpoint lands on every epoch end and a resumed run restarts at
`initial_epoch = step // chunk` with exactly the step count it had saved. A chunk of
another length (up to the grid after a resume off it, or the last one a clock leaves time
for) is a `fit` of its own; every callback here counts steps through `ChunkCallback`.
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


class ChunkCallback(keras.callbacks.Callback):
    """A callback that counts steps in chunks: epoch e of `fit` begins at step
    `first_step + e * steps_per_chunk` (`set_chunks` moves both for a chunk of its own)."""

    def __init__(self, steps_per_chunk: int, first_step: int = 0):
        super().__init__()
        self.steps_per_chunk = int(steps_per_chunk)
        self.first_step = int(first_step)

    def step_at(self, epoch: int) -> int:
        """The step count when epoch `epoch` begins (and epoch - 1 has ended)."""
        return self.first_step + epoch * self.steps_per_chunk


def set_chunks(callbacks, first_step: int, steps_per_chunk: int) -> None:
    for callback in callbacks:
        if isinstance(callback, ChunkCallback):
            callback.first_step, callback.steps_per_chunk = int(first_step), int(steps_per_chunk)


def fit_in_chunks(model, dataset_from, callbacks, done: int, steps: int, chunk: int,
                  timer: "TimeBudget | None" = None, verbose="auto") -> int:
    """Trains `model` from step `done` to `steps` in Keras epochs of `chunk` steps, each
    ending at a checkpoint; returns the step reached.

    A run resumed off the chunk grid (a partial last chunk, or `--steps` extended) first
    trains up to the grid. When `timer` stops the run because one more whole chunk would
    pass its clock, a last, shorter chunk trains the steps that still fit
    (`TimeBudget.steps_that_fit`): on a slow machine a whole chunk is a large share of the
    run. Each `fit` reads `dataset_from(step)`, a dataset reshuffled for the step it starts
    at (as a resume does): another pass over the first one would replay its batches.
    """
    def run(first, per_chunk, epochs, initial=0):
        set_chunks(callbacks, first - initial * per_chunk, per_chunk)
        history = model.fit(dataset_from(first), epochs=epochs, initial_epoch=initial,
                            steps_per_epoch=per_chunk, callbacks=callbacks, verbose=verbose,
                            shuffle=False)
        return first + len(history.epoch) * per_chunk

    def stopped():
        return timer is not None and timer.stopped_by is not None

    if done % chunk and done < steps:
        done = run(done, min(chunk - done % chunk, steps - done), 1)
    if done < steps and not stopped():
        done = run(done, chunk, math.ceil(steps / chunk), initial=done // chunk)
    if done < steps and stopped():
        fill = min(timer.steps_that_fit(), steps - done)
        if fill > 0:
            print(f"a last chunk of {fill} steps fills the time left on the clock",
                  file=sys.stderr)
            done = run(done, fill, 1)
            timer.filled = fill
    return done


class CheckpointSaver(ChunkCallback):
    """Saves M, D (A) and their optimizers with `tf.train.CheckpointManager`.

    `save_weights`/`ModelCheckpoint` would leave out A (a tf_keras model the Keras 3 GAN does
    not track) and the optimizers' slots, so the run keeps one `tf.train.Checkpoint` with
    everything plus a `step` variable.
    """

    def __init__(self, manager: tf.train.CheckpointManager, step: tf.Variable,
                 steps_per_chunk: int):
        super().__init__(steps_per_chunk)
        self.manager = manager
        self.step = step

    def on_epoch_end(self, epoch, logs=None):
        self.step.assign(self.step_at(epoch + 1))
        self.manager.save(checkpoint_number=int(self.step.numpy()))


class StepLearningRate(ChunkCallback):
    """Divides every optimizer's learning rate by 10 from `drop_step` on (paper: after epoch 7)."""

    def __init__(self, optimizers: dict, base_rates: dict, drop_step: int, steps_per_chunk: int):
        super().__init__(steps_per_chunk)
        self.optimizers = {k: v for k, v in optimizers.items() if v is not None}
        self.base_rates = base_rates
        self.drop_step = int(drop_step)

    def on_epoch_begin(self, epoch, logs=None):
        step = self.step_at(epoch)
        factor = 0.1 if 0 < self.drop_step <= step else 1.0
        for name, opt in self.optimizers.items():
            opt.learning_rate.assign(self.base_rates[name] * factor)


class Int8NoiseFrom(ChunkCallback):
    """Turns M's `int8_noise` on at the first chunk that starts at or after `start_step`
    (off before it) and has the training step traced again: the value is read at tracing."""

    def __init__(self, modifier, value: float, start_step: int, steps_per_chunk: int):
        super().__init__(steps_per_chunk)
        self.modifier = modifier
        self.value = float(value)
        self.start_step = int(start_step)

    def on_epoch_begin(self, epoch, logs=None):
        step = self.step_at(epoch)
        wanted = self.value if step >= self.start_step else 0.0
        if self.modifier.int8_noise != wanted:
            self.modifier.set_int8_noise(wanted)
            self.model.make_train_function(force=True)
            if wanted:
                print(f"M's int8 noise ({wanted:g}) on from step {step + 1}", file=sys.stderr)


class TimeBudget(ChunkCallback):
    """Stops training at the end of the first chunk after which one more whole chunk (the
    `steps_per_chunk` it is made with, at the last chunk's pace) would take the time in
    `seconds` (a checkpointed variable, so it counts over resumes) past `budget` seconds, or
    end past `deadline` (a `time.time()`, this process only; None: none). Put it before
    `CheckpointSaver`: the saved time then includes the chunk the checkpoint ends.
    `stopped_by` says which limit stopped it; `steps_that_fit` what is left of the clock
    (`fit_in_chunks` trains them as a last chunk, `filled`).

    With `warmup_fraction` > 0 it also projects, after each chunk, the step M will reach
    (at the last chunk's pace, at most `steps`) and shortens the model's warm-up to that
    fraction of it (`PrivacyGAN.shorten_warmup`): a warm-up set in steps would otherwise
    take most of a slow machine's run. `warmup` is the length in force once projected."""

    def __init__(self, seconds: tf.Variable, budget: float, steps_per_chunk: int,
                 deadline: float | None = None, warmup_fraction: float = 0.0, steps: int = 0):
        super().__init__(steps_per_chunk)
        self.chunk = int(steps_per_chunk)  # the whole chunk (steps_per_chunk is this fit's)
        self.seconds = seconds
        self.budget = float(budget)
        self.deadline = deadline
        self.warmup_fraction = float(warmup_fraction)
        self.steps = int(steps)
        self.stopped_at = None
        self.stopped_by = None
        self.warmup = None
        self.pace = None  # seconds a step, over the last chunk
        self.filled = 0
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        took = now - self._start
        self.seconds.assign_add(took)
        self.pace = took / self.steps_per_chunk
        step = self.step_at(epoch + 1)
        if self.warmup_fraction > 0 and step < float(self.model.warmup_length.numpy()):
            self._shorten_warmup(step, now)  # (a warm-up already over is left alone)
        whole = self.pace * self.chunk
        # when the next chunk would pass both limits, the tighter one stopped M (the stop
        # message names it); a last chunk after the stop keeps that first verdict
        left = self._limits_left(now)
        passed = [name for name, seconds in left.items() if whole > seconds]
        if passed and self.stopped_by is None:
            self.stopped_by = min(passed, key=left.get)
        if self.stopped_by:
            self.stopped_at = step
            self.model.stop_training = True

    def _limits_left(self, now: float) -> dict:
        """Seconds each limit in force ("budget", "deadline") has left."""
        left = {}
        if self.budget:
            left["budget"] = self.budget - float(self.seconds.numpy())
        if self.deadline is not None:
            left["deadline"] = self.deadline - now
        return left

    def _seconds_left(self, now: float) -> float | None:
        left = self._limits_left(now)
        return max(min(left.values()), 0.0) if left else None

    def steps_that_fit(self, spare: float = 0.05) -> int:
        """The steps both limits still hold at the last chunk's pace, `spare` of the time
        left kept (steps vary by a few percent, and the chunk ends in a checkpoint)."""
        left = self._seconds_left(time.time())
        if left is None or not self.pace:
            return 0
        return math.floor((1 - spare) * left / self.pace)

    def _shorten_warmup(self, step: int, now: float):
        left, pace = self._seconds_left(now), self.pace
        reach = step + left / pace if left is not None and pace > 0 else float(self.steps)
        if self.steps:
            reach = min(reach, self.steps)
        before = self.warmup
        self.warmup = self.model.shorten_warmup(math.ceil(self.warmup_fraction * reach))
        if before is None and self.warmup < self.model.warmup_steps:
            print(f"M's warm-up: {self.warmup} steps, {self.warmup_fraction:g} of the "
                  f"{reach:.0f} M is projected to reach on the clock (train.warmup_fraction; "
                  f"train.warmup_steps {self.model.warmup_steps})", file=sys.stderr)


class HistoryLogger(ChunkCallback):
    """Appends one JSON line per chunk (step, seconds, metrics) to `history.jsonl`."""

    def __init__(self, path: str | Path, steps_per_chunk: int, initial_step: int = 0):
        super().__init__(steps_per_chunk)
        self.path = Path(path)
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
        self._write({"step": self.step_at(epoch + 1), **self.last})

    def _write(self, row):
        row["seconds"] = round(time.time() - self._start, 2)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


class SampleGrid(ChunkCallback):
    """Writes `samples/step_<n>.png`: a row of faces and below it what M makes of them."""

    def __init__(self, modifier, faces: np.ndarray, out_dir: str | Path, steps_per_chunk: int):
        super().__init__(steps_per_chunk)
        self.modifier = modifier
        self.faces = faces  # uint8 (N, S, S, 3)
        self.out_dir = Path(out_dir)

    def on_epoch_end(self, epoch, logs=None):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_grid(self.out_dir / f"step_{self.step_at(epoch + 1):07d}.png",
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
