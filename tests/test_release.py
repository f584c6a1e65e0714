"""The product command on real photos, CI-sized: `train --preset mobile` from a bare photo
folder finds faces, holds people out, trains D then M, exports the int8 bundle and measures it
with the yardstick (dlib as the attacker, MTCNN as the face check) on the held-out people.

It reads 30 people of `../shared/data/celeba-mini` in place (research use; nothing is copied:
the test links their folders into a temporary directory). The margins below held for each of
11 draws of this exact configuration (benchmarks/RESULTS.md, "Fifth pass").
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CELEBA = ROOT.parent / "shared" / "data" / "celeba-mini"
PEOPLE = 30
# `mobile`, shortened: D barely matters to M now (its terms are 0 in `mobile`), so it gets 100
# steps; M gets 120 steps of 16 faces, with FaceNet's weight 5 instead of 2, because at 2 a
# run this short stays at the identity (measured: FaceNet's cosine 0.94 after 120 steps,
# benchmarks/RESULTS.md "Fourth pass"); the full run leaves it after 50-150 steps. The 11
# draws behind the margins had the paper's 7x7 outer convs at full resolution and no warm-up,
# which `mobile` has since left: those stay pinned here until this size is re-drawn.
SMALL = """\
data: {holdout_identities: 0.34}
modifier: {outer_kernel: 7, pixel_shuffle: false}
train: {classifier_steps: 100, steps_per_epoch: 120, checkpoint_every: 40, face_batch_size: 16,
        lambda_recognizer: 5.0, warmup_steps: 0}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory, need):
    import importlib.util

    need(CELEBA.is_dir(), f"{CELEBA} is not here")
    need(importlib.util.find_spec("dlib") is not None, "dlib (eval extra) is not installed")
    tmp = tmp_path_factory.mktemp("release")
    photos = tmp / "photos"
    photos.mkdir()
    for person in sorted(p for p in CELEBA.iterdir() if p.is_dir())[:PEOPLE]:
        (photos / person.name).symlink_to(person, target_is_directory=True)
    (tmp / "small.yaml").write_text(SMALL)
    out = tmp / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "privacy_anon.cli", "train", "--preset", "mobile", "--stage",
         "adversarial", "--data", str(photos), "--config", str(tmp / "small.yaml"), "--out", str(out)],
        capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "metrics.json").read_text())


def test_run_holds_people_out_and_hands_over_a_bundle(run):
    out, metrics = run
    held = (out / "heldout_identities.txt").read_text().split()
    assert len(held) == round(PEOPLE * 0.34)
    config = (out / "config.yaml").read_text()
    assert str(out / "faces" / "landmarks.csv") in config  # faces were found inside the run
    for name in ("modifier.tflite", "face_detector.tflite", "bundle.json"):
        assert (out / "bundle" / name).is_file()
    assert metrics["bundle"]["psnr_vs_keras"] >= 30  # int8 stays faithful to the Keras M
    for name in ("report.json", "privacy_plane.png", "before_after.png", "yardstick.md"):
        assert (out / "yardstick" / name).is_file()


def _row(m: dict) -> str:
    return (f"re-id {m['reid_accuracy']:.3f}, face {m['face_found']:.3f}, ssim {m['ssim']:.3f}, "
            f"saturation {m['saturation_added']:+.1f}")


def test_strangers_are_harder_to_reidentify_and_still_faces(run):
    _, metrics = run
    y = metrics["yardstick"]
    none = y["none"]
    assert none["reid_accuracy"] > 0.85  # dlib knows these people on the originals
    # The margins hold for all 11 draws of this run (RESULTS.md, "Fifth pass"): 10 here and
    # the one CI drew. The run is short (M leaves the identity with a jump) and not bit-reproducible:
    # the same seed twice on one machine gave saturation -1.4 and +6.3, so the margins are wide.
    for method in ("learned", "bundle"):
        m = y[method]
        where = f"{method}: {_row(m)}; none: {_row(none)}; blur8: {_row(y['blur8'])}"
        # people M never saw, a recognizer it never trained against (dlib; M trained against
        # FaceNet), told where the face is: seen 14.5-28.4 points lost (a do-nothing M: 0)
        assert m["reid_accuracy"] <= none["reid_accuracy"] - 0.10, where
        # ... while a detector it never trained against still finds a face far more often
        # than after blur8 (seen 55-93% against 4%), the box keeps its structure (SSIM
        # 0.64-0.74 against blur8's 0.37) and M paints no strong colour (seen -6.0 to +10.1;
        # the full `mobile` run -2.0 to +0.8; the recipe before FaceNet +13 to +18)
        assert m["face_found"] >= y["blur8"]["face_found"] + 0.35, where
        assert m["ssim"] >= 0.6, where
        assert abs(m["saturation_added"]) <= 12, where
