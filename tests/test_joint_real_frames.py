"""Algorithm 1 on real frames: the real JHMDB clip loads unchanged, a joint run finds its
faces itself (a face-box cache in the run directory), and L_det reaches M through them.

The clip lives in `../shared/data/jhmdb-sample` (see its NOTE.md); nothing of it is copied
into the repository.
"""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from privacy_anon import cli

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "jhmdb-sample"
VIDEO = "Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"{SAMPLE} not present")


def _yaml(tmp_path, actions, fmt="jhmdb", extra=""):
    path = tmp_path / "real.yaml"
    path.write_text(f"""
data:
  num_identities: 6
  images_per_identity: 12
  actions: {actions}
  actions_format: {fmt}
detector:
  num_classes: 22   # JHMDB's 21 actions + background
train:
  face_batch_size: 12
  checkpoint_every: 2
  classifier_steps: 20
{extra}""")
    return path


@needs_sample
def test_real_jhmdb_clip_loads_unchanged():
    from privacy_anon.data.actions import JHMDB_CLASSES, load_frame, read_jhmdb

    data = read_jhmdb(SAMPLE, "train")
    assert len(data) == 40 and read_jhmdb(SAMPLE, "test").records == []
    assert {int(r.classes[0]) for r in data} == {JHMDB_CLASSES.index("catch") + 1}
    assert data[0].frame_key == f"Rename_Images/catch/{VIDEO}/00001.png"
    # NOTE.md: inclusive 0-based rectangles of part_mask > 0; the loader's boxes are
    # continuous pixel boxes, so they end one pixel after the last mask pixel.
    for t, inclusive in ((1, (257, 91, 313, 202)), (20, (147, 53, 194, 199)), (40, (136, 85, 183, 224))):
        x0, y0, x1, y1 = inclusive
        np.testing.assert_array_equal(data[t - 1].boxes, [[x0, y0, x1 + 1, y1 + 1]])
    frame = load_frame(data[0])
    assert frame["image"].shape == (340, 453, 3)  # shorter side 340, as in the paper
    np.testing.assert_allclose(frame["boxes"][0], np.float32([257, 91, 314, 203]) * np.float32([453 / 320, 340 / 240] * 2),
                               rtol=1e-5)


@pytest.mark.timeout(1800)  # minutes on a loaded 2-core machine
@needs_sample
def test_joint_on_real_jhmdb_clip_finds_faces_and_l_det_reaches_m(tmp_path):
    """No data.face_boxes: the run detects the clip's faces itself, then trains Algorithm 1."""
    import tensorflow as tf

    from privacy_anon.config import load_config
    from privacy_anon.data.actions import make_dataset
    from privacy_anon.faces import geometry
    from privacy_anon.models.action_detector import ActionDetector
    from privacy_anon.training import runs

    run = tmp_path / "joint"
    cmd = [sys.executable, "-m", "privacy_anon.cli", "train", "--preset", "tiny",
           "--config", str(_yaml(tmp_path, SAMPLE)), "--stage", "joint", "--steps", "2",
           "--out", str(run)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no data.face_boxes: detecting the faces" in done.stderr
    cache = run / "face_boxes"
    assert json.loads((cache / "index.json").read_text())["complete"] is True
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train_frames"] == 40
    assert 1 <= metrics["train_frames_with_faces"] < 40  # a goalkeeper, often too small to see
    assert metrics["train_face_boxes"] >= metrics["train_frames_with_faces"]
    assert metrics["trained_frames"] == 2 * 2  # steps x frame_batch_size
    # seed 0 draws a face frame among the 4 trained ones; M rewrote exactly those boxes
    assert metrics["trained_frames_with_faces"] >= 1
    assert metrics["face_boxes_rewritten"] >= metrics["trained_frames_with_faces"]
    # config.yaml is what ran: it names the cache the run built
    cfg = load_config("tiny", run / "config.yaml")
    assert Path(cfg.data.face_boxes) == cache.resolve()

    # L_det's gradient reaches M through the real frames' faces (and only through them).
    modifier = runs.load_keras_part(run, "modifier")
    detector = ActionDetector(cfg.detector)
    detector.load_checkpoint(run / "detector")
    size = (cfg.detector.image_height, cfg.detector.image_width)
    data = runs._action_data(cfg, "train")
    batch = next(b for b in make_dataset(data, 2, size, shuffle=False)
                 if int(tf.reduce_sum(b["num_faces"])) > 0)

    def grad_norm(num_faces):
        with tf.GradientTape() as tape:
            frames = geometry.modify_frames(batch["images"], batch["face_boxes"], num_faces,
                                            modifier, modifier.input_size, 1.6, training=True)
            loss = detector.losses(frames, batch["boxes"], batch["classes"])["total"]
        grads = tape.gradient(loss, modifier.trainable_variables)
        return sum(0.0 if g is None else float(tf.norm(g)) for g in grads)

    assert grad_norm(batch["num_faces"]) > 0, "L_det does not reach M through real frames"
    assert grad_norm(tf.zeros_like(batch["num_faces"])) == 0  # the old, face-less path

    # the cache is resumable: the same config again re-detects nothing
    fresh, lines = load_config("tiny", _yaml(tmp_path, SAMPLE)), []
    counts = runs.ensure_face_boxes(fresh, run, log=lines.append)
    assert any("(40 already cached)" in line for line in lines), lines
    assert counts["train_frames_with_faces"] == metrics["train_frames_with_faces"]


def test_joint_without_any_face_stops_before_training(tmp_path, capsys):
    """A real-format data set whose frames have no face: one line, exit 2, nothing trained."""
    import scipy.io

    root = tmp_path / "jhmdb"
    frames = root / "Rename_Images" / "wave" / "v1"
    frames.mkdir(parents=True)
    image = cv2.resize(skdata.coffee(), (320, 240))
    for t in range(1, 4):
        cv2.imwrite(str(frames / f"{t:05d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    mask = np.zeros((240, 320, 3), np.uint8)
    mask[50:200, 100:220] = 1
    (root / "puppet_mask" / "wave" / "v1").mkdir(parents=True)
    scipy.io.savemat(root / "puppet_mask" / "wave" / "v1" / "puppet_mask.mat", {"part_mask": mask})
    (root / "splits").mkdir()
    (root / "splits" / "wave_test_split1.txt").write_text("v1.avi 1\n")
    run = tmp_path / "run"
    code = cli.main(["train", "--preset", "tiny", "--config", str(_yaml(tmp_path, root)),
                     "--stage", "joint", "--steps", "2", "--out", str(run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("privacy-anon train: error: ") and "no face in any of the 3" in err[-1]
    assert not (run / "checkpoints").exists() and not (run / "classifier").exists()
