"""The product command on real photos, CI-sized: `train --preset mobile` from a bare photo
folder finds faces, holds people out, trains M (no D: no term of M reads one in `mobile`),
exports the int8 bundle and measures it
with the yardstick (dlib as the attacker, MTCNN as the face check) on the held-out people.

It reads 30 people of `../shared/data/celeba-mini` in place (research use; nothing is copied:
the test links their folders into a temporary directory). The margins below held for each of
the 4 draws of this recipe (benchmarks/RESULTS.md, "Fifteenth pass" LL0-LL1, "Sixteenth pass"
LL2-LL3). faceres, BlazeFace and FaceMesh (the folder PRIVACY_ANON_FACERES names) are what
`mobile` trains against beside FaceNet; dlib, the attacker, and MTCNN, the face check, are
networks M never saw.
A second, seconds-long run checks that an M which never learned ships no bundle.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

# the first test runs the whole product command (its fixture): ~8 min on 2 idle cores, past the
# suite's 900 s when the cores are shared (a clean-clone run beside two training runs timed out)
pytestmark = pytest.mark.timeout(2400)
ROOT = Path(__file__).resolve().parents[1]
CELEBA = ROOT.parent / "shared" / "data" / "celeba-mini"
PEOPLE = 30
# `mobile` (FaceNet and faceres, the face term at 5, FaceMesh at 10, a brightness-only
# residual, 3x3 outer convs, pixel blocks, the warm-up; no D), shortened: M gets 120 steps
# of 16 faces, the image terms ramping up over its first 40 (the draws below trained a D
# beside M, which no term of M read). It keeps the loss `mobile` had until the thirty-fifth
# pass (L1 at 10, the recognizers at 10), whose margins held over 4 draws at this length:
# `mobile`'s R25 loss (SSIM at 10, the recognizers at 25) is made for ~1,000 steps of 32, and
# in its one draw here lost 29 points of dlib re-id but kept a face for MTCNN in only 69% and
# took saturation to -4.4 (RESULTS.md, "Thirty-fifth pass")
SMALL = """\
data: {holdout_identities: 0.34}
train: {steps_per_epoch: 120, checkpoint_every: 40, face_batch_size: 16,
        warmup_steps: 40, lambda_l1: 10, lambda_ssim: 0, lambda_recognizer: 10}
"""


def _link_people(photos: Path, people: int) -> Path:
    """A photo folder of the first `people` celeba-mini identities, linked, not copied."""
    photos.mkdir()
    for person in sorted(p for p in CELEBA.iterdir() if p.is_dir())[:people]:
        (photos / person.name).symlink_to(person, target_is_directory=True)
    return photos


@pytest.fixture(scope="module")
def run(tmp_path_factory, need, faceres_dir):
    import importlib.util

    need(CELEBA.is_dir(), f"{CELEBA} is not here")
    need(importlib.util.find_spec("dlib") is not None, "dlib (eval extra) is not installed")
    tmp = tmp_path_factory.mktemp("release")
    photos = _link_people(tmp / "photos", PEOPLE)
    (tmp / "small.yaml").write_text(SMALL)
    out = tmp / "run"
    # the one command, with the folder of faceres's and BlazeFace's weights
    proc = subprocess.run(
        [sys.executable, "-m", "privacy_anon.cli", "train", "--preset", "mobile", "--stage",
         "adversarial", "--data", str(photos), "--recognizer-weights", str(faceres_dir),
         "--config", str(tmp / "small.yaml"), "--out", str(out)],
        capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "metrics.json").read_text())


def test_run_holds_people_out_and_hands_over_a_bundle(run):
    out, metrics = run
    held = (out / "heldout_identities.txt").read_text().split()
    assert len(held) == round(PEOPLE * 0.34)
    config = (out / "config.yaml").read_text()
    assert str(out / "faces" / "landmarks.csv") in config  # faces were found inside the run
    # no D in the product: none pre-trained, saved or reported
    assert not (out / "classifier").exists() and not (out / "classifier.keras").exists()
    assert "d_accuracy_modified" not in metrics
    for name in ("modifier.tflite", "face_detector.tflite", "bundle.json"):
        assert (out / "bundle" / name).is_file()
    assert metrics["bundle"]["psnr_vs_keras"] >= 30  # int8 stays faithful to the Keras M
    # ... with the norms' variance kept in float
    assert json.loads((out / "bundle" / "bundle.json").read_text())["modifier"]["float_variance"]
    for name in ("report.json", "privacy_plane.png", "before_after.png", "yardstick.md"):
        assert (out / "yardstick" / name).is_file()
    report = json.loads((out / "yardstick" / "report.json").read_text())
    assert report["run"]["faceres_in_training"] is True  # faceres attacks, but M saw it
    assert "re-id % (faceres)" in (out / "yardstick" / "yardstick.md").read_text()


def _row(m: dict) -> str:
    return (f"re-id {m['reid_accuracy']:.3f}, face {m['face_found']:.3f}, ssim {m['ssim']:.3f}, "
            f"saturation {m['saturation_added']:+.1f}")


def test_strangers_are_harder_to_reidentify_and_still_faces(run):
    _, metrics = run
    y = metrics["yardstick"]
    none = y["none"]
    assert none["reid_accuracy"] > 0.85  # dlib knows these people on the originals
    assert none["faceres_reid_accuracy"] > 0.85  # ... and so does faceres
    # The margins held for the 4 draws of this recipe (RESULTS.md, "Fifteenth", "Sixteenth pass"),
    # all but the colour one for the 4 of the RGB residual before it ("Twelfth", "Fourteenth
    # pass") and, with faceres unseen, for FaceNet alone at 5 (14 draws, "Fifth", "Tenth pass").
    # The run is short and not bit-reproducible: the margins are wide.
    for method in ("learned", "bundle"):
        m = y[method]
        where = f"{method}: {_row(m)}; none: {_row(none)}; blur8: {_row(y['blur8'])}"
        # people M never saw, told where the face is. dlib, a recognizer M never trained
        # against: seen 18.5-25.9 points lost here; faceres (M trained against it): 19.2-23.5
        # (a do-nothing M: 0 for both)
        assert m["reid_accuracy"] <= none["reid_accuracy"] - 0.10, where
        assert m["faceres_reid_accuracy"] <= none["faceres_reid_accuracy"] - 0.10, \
            f"{where}; faceres {m['faceres_reid_accuracy']:.3f} against {none['faceres_reid_accuracy']:.3f}"
        # ... while a detector it never trained against still finds a face far more often
        # than after blur8 (seen 97.5-99.4% against 4.4%), the box keeps its structure (SSIM
        # 0.587-0.655 against blur8's 0.37) and the box's saturation moves little (seen -1.9
        # to -3.0, -2.7 and -2.9 for LL2, LL3 with the int8 bias corrected; blur8 -9.9, the
        # recipe before FaceNet +13 to +18)
        assert m["face_found"] >= y["blur8"]["face_found"] + 0.35, where
        assert m["ssim"] >= 0.55, where
        assert abs(m["saturation_added"]) <= 5, where
        # a brightness-only residual paints no colour per pixel either (seen 0.68-0.92 of 255;
        # the RGB residual before it 7.3, blur8 ~6)
        assert m["chroma_shift"] <= 3, f"{where}; chroma {m['chroma_shift']:.2f}"


# An M that never learned: still the identity it starts as (one Adam step at mobile's rate
# already moves it past the 2 px gate)
UNCHANGED = """\
data: {holdout_identities: 0.34}
train: {steps_per_epoch: 1, checkpoint_every: 1, face_batch_size: 8,
        lambda_recognizer: 0.0, lambda_face: 0.0, lambda_landmarks: 0.0,
        lr_modifier: 0.0}
"""


def test_a_run_whose_m_barely_changes_faces_ships_no_bundle(tmp_path, need):
    """Fail closed end to end: `train` exits 2 with one line naming the run, writes no bundle
    (not even a partial one), and keeps M and the reason in metrics.json."""
    need(CELEBA.is_dir(), f"{CELEBA} is not here")
    photos = _link_people(tmp_path / "photos", 3)
    (tmp_path / "unchanged.yaml").write_text(UNCHANGED)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "privacy_anon.cli", "train", "--preset", "mobile", "--stage",
         "adversarial", "--data", str(photos), "--config", str(tmp_path / "unchanged.yaml"),
         "--out", str(out)], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert str(out) in last and "no bundle exported" in last and "--min-change" in last, last
    assert not (out / "bundle").exists()
    assert (out / "modifier.keras").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert "below --min-change" in metrics["bundle"]["refused"]
    assert "yardstick" not in metrics
