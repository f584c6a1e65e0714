"""Training runs: stages through the CLI, checkpoints and resume, MirroredStrategy."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import keras

import privacy_anon.models.face_classifier  # noqa: F401  (registers FaceClassifier for load_model)
import privacy_anon.models.modifier  # noqa: F401  (registers FaceModifier for load_model)
import numpy as np
import pytest

SMALL = textwrap.dedent("""
    data:
      num_identities: 6
      images_per_identity: 12
    train:
      face_batch_size: 12
      checkpoint_every: 10
""")


def _cli(args, tmp_path, **kw):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL)
    return subprocess.run([sys.executable, "-m", "privacy_anon.cli", "train", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=600, **kw)


def test_classifier_then_adversarial_stage(tmp_path):
    d_run, m_run = tmp_path / "d", tmp_path / "m"
    proc = _cli(["--stage", "classifier", "--steps", "60", "--out", str(d_run)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((d_run / "metrics.json").read_text())
    assert metrics["d_accuracy_original"] > 0.5  # 6 identities: chance is 0.17
    assert (d_run / "config.yaml").is_file() and (d_run / "classifier.keras").is_file()
    assert not (d_run / "modifier.keras").exists()  # M is untrained in this stage: nothing to export

    proc = _cli(["--stage", "adversarial", "--steps", "20", "--classifier-checkpoint", str(d_run),
                 "--out", str(m_run)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((m_run / "metrics.json").read_text())
    print({k: v for k, v in metrics.items() if k != "train"})
    # Even 20 steps of the game push D's belief in the true identity down (M's loss, the
    # non-saturating -log(1 - p_id), falls by more than half) while M keeps the structure.
    # The held-out accuracy drop needs the demo's 400 steps (tests/test_demo.py, slow).
    assert metrics["loss_adv_last"] < 0.5 * metrics["loss_adv_first"], metrics
    # M left the identity it starts as (residual output: L1 and 1 - SSIM are exactly 0 there)
    assert metrics["loss_l1_first"] < 1e-4 < 0.005 < metrics["loss_l1_last"], metrics
    assert metrics["ssim_modified"] < 0.995, metrics
    assert metrics["ssim_modified"] > 0.3, metrics
    rows = [json.loads(l) for l in (m_run / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 10, 20]
    assert {"d_acc_original", "d_acc_modified", "loss_adv", "loss_l1"} <= set(rows[-1])
    assert sorted(p.name for p in (m_run / "samples").iterdir())[-1] == "step_0000020.png"
    m = keras.saving.load_model(m_run / "modifier.keras")
    assert m.input_size == 64


def _ckpt_names(run):
    import tensorflow as tf

    return {name.split("/")[0] for name, _ in tf.train.list_variables(tf.train.latest_checkpoint(run / "checkpoints"))}


def test_two_adversaries_one_command_then_two_checkpoints(tmp_path):
    """train.adversaries 2: the one command pre-trains two D's (seeds 0 and 1) and plays M
    against both; two --classifier-checkpoint's work, one is a one-line error (exit 2)."""
    cfg = tmp_path / "k2.yaml"
    cfg.write_text(SMALL + "  classifier_steps: 10\n  adversaries: 2\n")
    base = [sys.executable, "-m", "privacy_anon.cli", "train", "--config", str(cfg), "--stage",
            "adversarial", "--steps", "10"]
    run = lambda *a: subprocess.run([*base, *a], capture_output=True, text=True, timeout=600)
    one = run("--out", str(tmp_path / "m"))
    assert one.returncode == 0, one.stderr[-2000:]
    m = tmp_path / "m"
    d1, d2 = (keras.saving.load_model(m / n / "classifier.keras") for n in ("classifier", "classifier-2"))
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(d1.get_weights(), d2.get_weights())) > 1e-3
    assert "seed: 1" in (m / "classifier-2" / "config.yaml").read_text()
    assert (m / "classifier.keras").is_file() and (m / "classifier-2.keras").is_file()
    assert {"classifier", "classifier_2", "d_optimizer", "d2_optimizer"} <= _ckpt_names(m)
    # D_2 took its own steps in the game: its final weights moved from its pre-trained ones
    played = keras.saving.load_model(m / "classifier-2.keras")
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(played.get_weights(), d2.get_weights())) > 1e-5

    two = run("--classifier-checkpoint", str(m / "classifier"), "--classifier-checkpoint",
              str(m / "classifier-2"), "--out", str(tmp_path / "m2"))
    assert two.returncode == 0, two.stderr[-2000:]
    assert "pre-training" not in two.stderr and (tmp_path / "m2" / "classifier-2.keras").is_file()

    once = run("--classifier-checkpoint", str(m / "classifier"), "--out", str(tmp_path / "m3"))
    assert once.returncode == 2 and not (tmp_path / "m3").exists()
    lines = once.stderr.strip().splitlines()
    assert len(lines) == 1 and "given 1 time(s) but train.adversaries is 2" in lines[0], once.stderr


def test_a_run_without_d_trains_m_and_keeps_no_d(tmp_path):
    """train.train_classifier false (as in `mobile`, where no term of M reads D): no D is
    pre-trained, stepped, checkpointed, saved or reported, while M and the realism critic
    train; a config whose M still reads D, or a D given to such a run, is one line, exit 2."""
    without_d = SMALL + "  train_classifier: false\n  lambda_l1: 1\n  lambda_realism: 1\n"
    cfg = tmp_path / "nod.yaml"
    cfg.write_text(without_d + "  adv_weight: 0\n")
    base = [sys.executable, "-m", "privacy_anon.cli", "train", "--stage", "adversarial", "--steps", "20"]
    run = lambda *a: subprocess.run([*base, *a], capture_output=True, text=True, timeout=600)
    m = tmp_path / "m"
    proc = run("--config", str(cfg), "--out", str(m))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pre-training" not in proc.stderr
    assert not (m / "classifier").exists() and not list(m.glob("classifier*.keras"))
    assert (m / "modifier.keras").is_file()
    names = _ckpt_names(m)
    assert "m_optimizer" in names and not {"classifier", "d_optimizer"} & names, names
    metrics = json.loads((m / "metrics.json").read_text())
    assert not [k for k in metrics if k.startswith(("d_accuracy", "loss_d", "loss_adv"))], metrics
    rows = [json.loads(l) for l in (m / "history.jsonl").read_text().splitlines()]
    assert not {"d_acc_original", "d_acc_modified", "loss_d", "loss_adv"} & set(rows[-1])
    # M left the identity it starts as (the critic's push) and the critic stepped beside it
    assert metrics["loss_l1_first"] < 1e-4 < 0.005 < metrics["loss_l1_last"], metrics
    assert rows[-1]["loss_critic"] > 0

    for bad, expected in ((without_d + "  adv_weight: 0.5\n", "train.adv_weight 0.5"),
                          (cfg.read_text() + "  lambda_identity: 1\n", "train.lambda_identity 1")):
        (tmp_path / "bad.yaml").write_text(bad)
        refused = run("--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "bad"))
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 2 and len(lines) == 1 and expected in lines[0], refused.stderr
        assert not (tmp_path / "bad").exists()
    given = run("--config", str(cfg), "--classifier-checkpoint", str(m), "--out", str(tmp_path / "g"))
    assert given.returncode == 2 and "train.train_classifier is false" in given.stderr
    assert not (tmp_path / "g").exists()
    # a resume that brings D back finds none in the checkpoint: refused before D's pre-training
    (tmp_path / "with_d.yaml").write_text(SMALL + "  classifier_steps: 10\n")
    kept = sorted(p.name for p in (m / "checkpoints").iterdir())
    back = run("--config", str(tmp_path / "with_d.yaml"), "--steps", "30", "--out", str(m))
    lines = back.stderr.strip().splitlines()
    assert back.returncode == 2 and len(lines) == 1 and "hold no D" in lines[0], back.stderr
    assert not (m / "classifier").exists() and sorted(p.name for p in (m / "checkpoints").iterdir()) == kept


def test_steps_round_up_to_whole_checkpoint_chunks_and_say_so(tmp_path):
    """15 steps with a checkpoint every 10: 20 are trained (every chunk ends in a checkpoint),
    and stderr says so instead of training more than asked in silence."""
    run = tmp_path / "r"
    proc = _cli(["--stage", "classifier", "--steps", "15", "--out", str(run)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "training 20 steps: 15 rounded up to whole checkpoint chunks of 10" in proc.stderr
    assert json.loads((run / "metrics.json").read_text())["steps"] == 20
    exact = _cli(["--stage", "classifier", "--steps", "10", "--out", str(tmp_path / "e")], tmp_path)
    assert exact.returncode == 0 and "rounded up" not in exact.stderr


def _m_after_a_short_d(tmp_path, run):
    """Pre-trains D for 10 steps; returns the arguments of a 40-step adversarial run in `run`."""
    d_run = tmp_path / "d"
    assert _cli(["--stage", "classifier", "--steps", "10", "--out", str(d_run)],
                tmp_path).returncode == 0
    return ["--stage", "adversarial", "--steps", "40", "--classifier-checkpoint", str(d_run),
            "--out", str(run)]


def test_max_minutes_stops_m_at_a_checkpoint_and_counts_over_resumes(tmp_path):
    """A budget far below one chunk's time: M stops after its first chunk (10 of 40 steps)
    and says so; the checkpoint keeps the time, so a resume under the same budget trains
    nothing; lifting the budget continues to the step count. The clock also shortens a
    warm-up of 1,000 steps to half the 10 steps it lets M reach (`warmup_fraction`)."""
    run = tmp_path / "m"
    args = _m_after_a_short_d(tmp_path, run)
    budget = tmp_path / "budget.yaml"
    budget.write_text(SMALL + "  max_minutes: 0.001\n  warmup_steps: 1000\n"
                      "  warmup_fraction: 0.5\n")
    first = _cli([*args, "--config", str(budget)], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "M stopped at step 10 of 40: another chunk of 10 steps would pass " \
           "train.max_minutes (0.001;" in first.stderr
    assert "M's warm-up: 5 steps, 0.5 of the 10 M is projected to reach" in first.stderr
    assert "the same command resumes M at step 10 (train.max_minutes counts over resumes: " \
           "0.0 min left; a larger one trains M further; M stops at step 40 at most: --steps " \
           "raises that)\n" in first.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 10 and metrics["steps_ceiling"] == 40
    assert metrics["warmup_steps"] == 5
    assert metrics["m_minutes"] > 0.001
    rows = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 10

    again = _cli([*args, "--config", str(budget)], tmp_path)
    assert again.returncode == 0 and "M's time budget is spent" in again.stderr, again.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 10

    lifted = _cli(args, tmp_path)  # SMALL: no budget
    assert lifted.returncode == 0, lifted.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 40
    assert "M stopped" not in lifted.stderr
    at_ceiling = _cli(args, tmp_path)  # nothing left to train is said, not silent
    assert at_ceiling.returncode == 0, at_ceiling.stderr[-2000:]
    assert "already at step 40 of 40: not trained further (--steps raises the step count)" \
        in at_ceiling.stderr


def test_command_minutes_bounds_the_whole_command_and_a_late_resume_trains_nothing(tmp_path):
    """train.command_minutes counts this invocation from its start: with almost none left
    when M would start, M still trains one chunk (an untrained M is the identity: nothing
    to hand over), stops there and says the command went past; a resume already past it
    keeps M as it is. No max_minutes: the command's clock alone stops M."""
    run = tmp_path / "m"
    args = _m_after_a_short_d(tmp_path, run)
    late = tmp_path / "late.yaml"
    late.write_text(SMALL + "  command_minutes: 0.001\n")
    first = _cli([*args, "--config", str(late)], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "spent before M's first step" in first.stderr, first.stderr[-2000:]
    assert "M stopped at step 10 of 40: another chunk of 10 steps would pass " \
           "train.command_minutes (0.001" in first.stderr
    assert "past train.command_minutes 0.001" in first.stderr
    # no max_minutes: the limits a longer resume meets are this command's clock and the steps
    assert "the same command resumes M at step 10 (train.command_minutes 0.001 bounds each " \
           "invocation: raise it too for a longer one; M stops at step 40 at most: --steps " \
           "raises that)\n" in first.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 10 and metrics["steps_ceiling"] == 40
    assert metrics["end_to_end_minutes"] > 0.001

    again = _cli([*args, "--config", str(late)], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "not trained further at step 10 of 40" in again.stderr
    assert "M's time budget is spent" not in again.stderr
    assert json.loads((run / "metrics.json").read_text())["steps"] == 10

    lifted = _cli(args, tmp_path)  # SMALL: no clock
    assert lifted.returncode == 0, lifted.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 40


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    run = tmp_path / "r"
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL)
    cmd = [sys.executable, "-m", "privacy_anon.cli", "train", "--config", str(cfg),
           "--stage", "classifier", "--steps", "400", "--out", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    state = run / "checkpoints" / "checkpoint"  # the manager's record, written after each save
    while not state.exists() and time.time() < deadline:
        time.sleep(0.2)
        assert proc.poll() is None, "training ended before a checkpoint was written"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # A kill between a save's files and the record's update leaves a newer ckpt-*.index on disk
    # that the manager never recorded; the run rightly resumes from the recorded one.
    saved = int(re.search(r'^model_checkpoint_path: ".*ckpt-(\d+)"', state.read_text(), re.M).group(1))
    assert 10 <= saved < 400 and not (run / "metrics.json").exists()

    done = subprocess.run(cmd[:-4] + ["--steps", str(saved + 10), "--out", str(run)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming {run} at step {saved}" in done.stderr
    rows = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == saved + 10
    assert json.loads((run / "metrics.json").read_text())["steps"] == saved + 10


def test_finished_run_extends_to_more_steps(tmp_path):
    """`--steps 20`, then the same command with `--steps 25`: the run goes on from its step-20
    checkpoint (with the tiny preset's checkpoint_every=50 the two runs' chunks differ)."""
    run = tmp_path / "r"
    cmd = [sys.executable, "-m", "privacy_anon.cli", "train", "--stage", "classifier", "--data", "synthetic",
           "--out", str(run)]
    first = subprocess.run(cmd + ["--steps", "20"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "config changed" not in first.stderr
    # resumed under another config: allowed, and said
    (tmp_path / "lr.yaml").write_text("train: {classifier_lr: 0.0005}\n")
    second = subprocess.run(cmd + ["--steps", "25", "--config", str(tmp_path / "lr.yaml")],
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"resuming {run} at step 20" in second.stderr
    assert "config changed since the last run here: train.classifier_lr" in second.stderr
    assert "-> 0.0005" in second.stderr and second.stderr.count("config changed") == 1
    rows = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 20, 25]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 25
    assert max(int(p.name.split("-")[1].split(".")[0]) for p in (run / "checkpoints").glob("ckpt-*.index")) == 25


MIRRORED = textwrap.dedent("""
    import json, sys, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    from privacy_anon.config import load_config
    from privacy_anon.training import runs
    cfg = load_config("tiny", sys.argv[1])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    m = runs.train(cfg, "classifier", sys.argv[2] + "/d", steps=10, strategy=strategy, verbose=0)
    a = runs.train(cfg, "adversarial", sys.argv[2] + "/m", steps=10, strategy=strategy, verbose=0,
                   classifier_checkpoint=sys.argv[2] + "/d")
    print(json.dumps(a))
""")


def test_adversarial_step_under_mirrored_strategy_with_two_cpus(tmp_path):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL)
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(cfg), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert metrics["steps"] == 10 and np.isfinite(metrics["train"]["loss_adv"])


def test_int8_noise_turns_on_at_its_step_and_the_step_is_traced_again():
    """`train.int8_noise_from`: before the start step M's training pass is clean, from the first
    chunk at or after it the traced step carries the noise (read at tracing, so the callback
    must have the step traced again)."""
    import tensorflow as tf

    from privacy_anon.models.modifier import FaceModifier
    from privacy_anon.training.callbacks import Int8NoiseFrom

    m = FaceModifier(input_size=32, filters=4, num_blocks=1, output_mode="luma",
                     pixel_shuffle=True, int8_noise=1.0)
    m.build()
    m.set_weights([np.random.default_rng(0).normal(0, 0.3, w.shape) for w in m.get_weights()])

    class Probe(keras.Model):
        """Logs how far M's training pass lies from its clean pass."""

        def __init__(self, modifier):
            super().__init__()
            self.modifier = modifier

        def train_step(self, x):
            gap = tf.reduce_max(tf.abs(self.modifier(x, training=True) - self.modifier(x)))
            return {"gap": gap}

    gaps = []
    probe = Probe(m)
    probe.compile()
    x = np.random.default_rng(1).uniform(-1, 1, (8, 4, 32, 32, 3)).astype(np.float32)
    log = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: gaps.append(float(logs["gap"])))
    probe.fit(tf.data.Dataset.from_tensor_slices(x).repeat(), epochs=4, steps_per_epoch=2,
              verbose=0, callbacks=[Int8NoiseFrom(m, 1.0, start_step=3, steps_per_chunk=2), log])
    assert gaps[:2] == [0.0, 0.0] and min(gaps[2:]) > 1e-3, gaps  # on from step 4 (chunk 2)
    assert m.int8_noise == 1.0


def test_when_a_chunk_would_pass_both_clocks_the_tighter_one_is_named():
    """M's budget (train.max_minutes) and the command's deadline (train.command_minutes) can
    both be passed by the next chunk; the stop names the one with less time left, whichever
    it is, and keeps that verdict through the last chunk that fills the time."""
    import tensorflow as tf
    from privacy_anon.training import callbacks as cb

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])

    def stop(budget_left: float, deadline_left: float):
        # a chunk of 10 steps that took 1 s: the next one needs 1 s, more than either holds
        seconds = tf.Variable(4.0, dtype=tf.float64)  # M's time before this chunk
        timer = cb.TimeBudget(seconds, 5.0 + budget_left, 10,
                              deadline=time.time() + deadline_left)
        timer.set_model(model)
        timer.on_epoch_begin(0)
        timer._start -= 1.0
        timer.on_epoch_end(0)
        assert model.stop_training and timer.stopped_at == 10
        first = timer.stopped_by
        timer.on_epoch_begin(1)
        timer.on_epoch_end(1)  # a last chunk: the first verdict stands
        assert timer.stopped_by == first
        return first

    assert stop(budget_left=0.3, deadline_left=0.8) == "budget"
    assert stop(budget_left=0.8, deadline_left=0.3) == "deadline"
    assert stop(budget_left=0.5, deadline_left=5.0) == "budget"
    assert stop(budget_left=5.0, deadline_left=0.5) == "deadline"


def test_a_clock_stop_fills_the_time_left_with_a_last_chunk_and_a_resume_regains_the_grid(
        tmp_path, capsys):
    """`fit_in_chunks` with the real `TimeBudget`, `CheckpointSaver` and `HistoryLogger` on a
    small model whose steps a pacer spaces 0.3 s apart on the wall clock (whatever the
    tracing costs): with a budget of 7.5 s and chunks of 10 (3 s), after step 20 another
    whole chunk would pass it, and the ~1.5 s left hold 4 or 5 more steps (5% spare; the
    callbacks' own time between chunks is not the pacer's), trained as a last chunk that
    ends inside the budget and checkpointed. Resumed with no clock to step 40, the run
    first trains the steps back to the grid, then whole chunks."""
    import tensorflow as tf

    from privacy_anon.training import callbacks as cb

    class Pacer(keras.callbacks.Callback):
        """Batch i (over every fit) ends 0.3 * (i + 1) s after the first one began."""

        def __init__(self):
            super().__init__()
            self.start, self.batches = None, 0

        def on_epoch_begin(self, epoch, logs=None):
            self.start = self.start or time.time()

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            time.sleep(max(0.0, self.start + 0.3 * self.batches - time.time()))

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices((rng.normal(size=(64, 4)).astype(np.float32),
                                               rng.normal(size=(64, 1)).astype(np.float32)))
    seen = []

    def dataset_from(at):
        seen.append(at)
        return data.shuffle(64, seed=at).batch(8).repeat()

    step = tf.Variable(0, dtype=tf.int64)
    seconds = tf.Variable(0.0, dtype=tf.float64)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step, model=model),
                                         tmp_path / "checkpoints", max_to_keep=10)
    history = cb.HistoryLogger(tmp_path / "history.jsonl", 10, initial_step=0)
    timer = cb.TimeBudget(seconds, 7.5, 10)
    callbacks = [Pacer(), history, timer, cb.CheckpointSaver(manager, step, 10)]
    reached = cb.fit_in_chunks(model, dataset_from, callbacks, 0, 40, 10, timer, verbose=0)
    fill = timer.filled
    assert timer.stopped_by == "budget" and 3 <= fill <= 6, (fill, seconds.numpy())
    assert reached == timer.stopped_at == int(step.numpy()) == 20 + fill
    assert f"a last chunk of {fill} steps fills the time left on the clock" in capsys.readouterr().err
    assert float(seconds.numpy()) <= 7.5  # the last chunk kept inside the budget
    assert seen == [0, 20]

    # resumed off the grid (no clock): the steps back onto it, then whole chunks
    reached = cb.fit_in_chunks(model, dataset_from, callbacks[:2] + callbacks[3:], 20 + fill,
                               40, 10, verbose=0)
    assert reached == int(step.numpy()) == 40 and seen == [0, 20, 20 + fill, 30]
    rows = [json.loads(l) for l in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 10, 20, 20 + fill, 30, 40]
    assert manager.checkpoints[-5:] == [str(tmp_path / "checkpoints" / f"ckpt-{n}")
                                         for n in (10, 20, 20 + fill, 30, 40)]


def test_int8_noise_from_half_way_in_a_run(tmp_path):
    """`train.int8_noise_from: 0.5` over 20 steps in chunks of 10: the noise comes on with the
    second chunk, said on stderr, and the M the run saves carries the value (inference and
    the export never add it)."""
    d_run, m_run = tmp_path / "d", tmp_path / "m"
    proc = _cli(["--stage", "classifier", "--steps", "10", "--out", str(d_run)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    noise = tmp_path / "noise.yaml"
    noise.write_text(SMALL + "  int8_noise_from: 0.5\nmodifier:\n  int8_noise: 1.0\n")
    proc = subprocess.run([sys.executable, "-m", "privacy_anon.cli", "train", "--config", str(noise),
                           "--stage", "adversarial", "--steps", "20", "--classifier-checkpoint",
                           str(d_run), "--out", str(m_run)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("int8 noise") == 1 and "M's int8 noise (1) on from step 11" in proc.stderr
    assert keras.saving.load_model(m_run / "modifier.keras").int8_noise == 1.0
