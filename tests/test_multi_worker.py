"""`train --multi-worker`: two worker processes on loopback ports under
MultiWorkerMirroredStrategy (TF_CONFIG) end with identical weights, and the run resumes."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from privacy_anon import cli

ROOT = Path(__file__).resolve().parents[1]
SMALL = """
data:
  num_identities: 4
  images_per_identity: 8
train:
  face_batch_size: 8
  checkpoint_every: 2
"""


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _classifier(tmp_path):
    """An (untrained) D to start from: the test is about the workers, not D's training."""
    from privacy_anon.config import load_config
    from privacy_anon.models.face_classifier import build_classifier

    path = tmp_path / "d.keras"
    if not path.is_file():
        config = tmp_path / "small.yaml"
        config.write_text(SMALL)
        build_classifier(load_config("tiny", config).classifier, 4).save(path)
    return path


def _run_workers(tmp_path, run, steps):
    """Starts 2 workers (TF_CONFIG on 127.0.0.1), waits, returns their stderr texts."""
    d = _classifier(tmp_path)
    config = tmp_path / "small.yaml"
    cluster = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path / f"tmp{index}"),
                   TF_CPP_MIN_LOG_LEVEL="2",
                   TF_CONFIG=json.dumps({"cluster": {"worker": cluster},
                                         "task": {"type": "worker", "index": index}}))
        Path(env["TMPDIR"]).mkdir(exist_ok=True)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "privacy_anon.cli", "train", "--preset", "tiny",
             "--config", str(config), "--stage", "adversarial", "--multi-worker",
             "--classifier-checkpoint", str(d), "--steps", str(steps), "--out", str(run)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    errs = []
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=900)
            assert proc.returncode == 0, err[-3000:]
            errs.append(err)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return errs


def _digest(err, worker, step):
    found = re.findall(rf"worker {worker}: step {step} weights sha256 ([0-9a-f]{{64}})", err)
    assert found, err[-2000:]
    return found[-1]


@pytest.mark.timeout(1800)  # minutes on a loaded 2-core machine
def test_two_workers_train_identically_and_resume(tmp_path):
    run = tmp_path / "run"
    errs = _run_workers(tmp_path, run, steps=2)
    first = [_digest(err, i, 2) for i, err in enumerate(errs)]
    assert first[0] == first[1], "the workers' weights differ after training"
    # the chief wrote the run; the other worker wrote only its scratch copy
    assert (run / "checkpoints" / "ckpt-2.index").is_file() and (run / "modifier.keras").is_file()
    assert not list((tmp_path / "tmp0").iterdir())
    assert [json.loads(l)["step"] for l in (run / "history.jsonl").read_text().splitlines()] == [1, 2]

    # a time budget far below one chunk's time would stop each worker by its own clock (and
    # strand the other in the all-reduce): it is not applied, and both say so
    (tmp_path / "small.yaml").write_text(SMALL + "  max_minutes: 0.001\n")
    errs = _run_workers(tmp_path, run, steps=4)
    for i, err in enumerate(errs):
        assert f"resuming {run} at step 2" in err, err[-2000:]
        assert "train.max_minutes (0.001) is not applied with --multi-worker" in err, err[-2000:]
    second = [_digest(err, i, 4) for i, err in enumerate(errs)]
    assert second[0] == second[1] and second[0] != first[0]
    assert (run / "checkpoints" / "ckpt-4.index").is_file()
    assert json.loads((run / "metrics.json").read_text())["steps"] == 4


def test_multi_worker_needs_tf_config(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    code = cli.main(["train", "--stage", "classifier", "--multi-worker", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--multi-worker needs TF_CONFIG" in err[0]
    assert not (tmp_path / "r").exists()
