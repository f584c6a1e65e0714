"""Joint training (Algorithm 1 with A): L_det reaches M; the joint CLI run; resume."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

from privacy_anon.config import get_preset
from privacy_anon.data.actions import make_dataset, synthetic_actions
from privacy_anon.faces import geometry
from privacy_anon.models.action_detector import ActionDetector
from privacy_anon.models.modifier import build_modifier


def test_detection_loss_alone_has_a_gradient_on_m():
    cfg = get_preset("tiny")
    m = build_modifier(cfg.modifier)
    detector = ActionDetector(cfg.detector)
    size = (cfg.detector.image_height, cfg.detector.image_width)
    data = synthetic_actions(2, size, cfg.detector.num_classes - 1, seed=0)
    batch = next(iter(make_dataset(data, 2, size, shuffle=False)))
    assert int(tf.reduce_sum(batch["num_faces"])) >= 2
    with tf.GradientTape() as tape:
        frames = geometry.modify_frames(batch["images"], batch["face_boxes"], batch["num_faces"],
                                        m, m.input_size, 1.6, training=True)
        loss = detector.losses(frames, batch["boxes"], batch["classes"])["total"]
    grads = tape.gradient(loss, m.trainable_variables)
    norms = [0.0 if g is None else float(tf.norm(g)) for g in grads]
    # M starts as the identity (zero head), so its head receives L_det's gradient first.
    assert max(norms) > 0, "L_det does not reach M"


SMALL = textwrap.dedent("""
    data:
      num_identities: 6
      images_per_identity: 12
      synthetic_frames: 8
    train:
      face_batch_size: 12
      checkpoint_every: 2
      classifier_steps: 40
""")


def test_joint_cli_run_logs_and_resumes(tmp_path):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL)
    run = tmp_path / "joint"
    base = [sys.executable, "-m", "privacy_anon.cli", "train", "--preset", "tiny", "--config", str(cfg),
            "--stage", "joint", "--data", "synthetic", "--out", str(run)]
    first = subprocess.run(base + ["--steps", "2"], capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("loss_det_first", "loss_det_last", "loss_adv_last", "loss_l1_last",
                "d_accuracy_original", "d_accuracy_modified", "frame_map_modified"):
        assert key in metrics, key
    assert np.isfinite(metrics["loss_det_first"]) and metrics["loss_det_first"] > 0
    assert (run / "checkpoints" / "checkpoint").is_file()

    again = subprocess.run(base + ["--steps", "4"], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming {run} at step 2" in again.stderr
    rows = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 4]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 4
