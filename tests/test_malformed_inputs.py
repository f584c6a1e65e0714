"""A corpus of malformed inputs, one per row, run through the real `privacy-anon` command.

Each must give exit code 2, exactly one line on stderr (no TensorFlow/absl/LiteRT start-up
noise, no traceback) naming the offending input, and leave no output behind (no output file
or folder, no temporary file beside it). The commands run as subprocesses, a few at a time,
so the start-up logging of a fresh interpreter is part of what is checked.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from privacy_anon.cli import QUIET_ENV

ROOT = Path(__file__).resolve().parents[1]
UNWRITABLE = "/proc/privacy-anon-test/out"  # cannot be created, even by root


class Payload:
    """Unpickling this runs `touch MARKER`: a pickle carrying a code payload."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _png(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def _video(path, n=12, size=(160, 120)):
    img = astronaut()
    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264" if path.suffix == ".mp4" else "ffv1", rate=12)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[i:i + h, i:i + w]), format="rgb24")
            c.mux(s.encode(f))
        c.mux(s.encode(None))


def _broken_image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)


def _faces(root, broken=None):
    """A folder-per-identity root of 3 identities x 3 crops of astronaut(); one broken image."""
    img = astronaut()
    for i in range(3):
        for j in range(3):
            _png(root / f"id{i}" / f"{j}.png", np.ascontiguousarray(img[10 * i + 5 * j:10 * i + 5 * j + 200, 130:330]))
    if broken:
        _broken_image(root / "id1" / broken)


def make_inputs(d: Path) -> None:
    """Writes the malformed inputs (and a few good ones they sit beside) under `d`."""
    img = astronaut()
    _png(d / "astro.png", img)
    (d / "empty.mp4").write_bytes(b"")
    (d / "fake.mp4").write_text("this is a text file, not a video\n")
    _video(d / "good.mp4")
    data = (d / "good.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    _broken_image(d / "broken.png")
    imgs = d / "imgs"
    _png(imgs / "a.png", img)
    _broken_image(imgs / "b.png")
    (d / "no_manifest").mkdir()
    (d / "no_manifest" / "modifier.tflite").write_bytes(b"x")
    (d / "bad_json").mkdir()
    (d / "bad_json" / "bundle.json").write_text("{not json")
    (d / "fake.zip").write_text("not a zip")
    sha = d / "bad_sha"
    sha.mkdir()
    files = {}
    for name in ("modifier.tflite", "face_detector.tflite"):
        (sha / name).write_bytes(b"\0\0\0\0TFL3" + b"\0" * 64)
        files[name] = {"bytes": 72, "sha256": "0" * 64}
    (sha / "bundle.json").write_text(json.dumps({
        "format": "privacy-anon-bundle", "format_version": 1, "files": files,
        "modifier": {"file": "modifier.tflite", "input_size": 64},
        "face_detector": {"file": "face_detector.tflite"}}))
    with zipfile.ZipFile(d / "empty.zip", "w") as z:
        z.writestr("readme.txt", "no bundle here")

    (d / "garbage.keras").write_bytes(bytes(range(256)) * 8)
    (d / "run_without_m").mkdir()
    (d / "run_without_m" / "config.yaml").write_text("{}\n")
    _faces(d / "faces")
    _faces(d / "faces_broken", broken="bad.png")
    (d / "reps").mkdir()
    _broken_image(d / "reps" / "face.png")
    (d / "bad.yaml").write_text("train: {steps: 3\n")
    (d / "unknown.yaml").write_text("train:\n  no_such_field: 1\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "no_d.yaml").write_text("train: {train_classifier: false}\n")
    (d / "landmarks.csv").write_text("path,x1,y1\nid0/0.png,1,2\n")
    (d / "actions.csv").write_text("frame_path,x1,y1,x2,y2,action\nastro.png,10,20,30,40,wave\n"
                                   "frames/missing.png,10,20,30,40,wave\n")
    (d / "pairs.txt").write_text("10\t300\nid0\t1\t2\nnot a pair line at all here\n")
    with open(d / "evil.pkl", "wb") as f:
        pickle.dump(Payload(d / "PWNED"), f)
    _save_models(d)


m = "--method"
# (case, argv run in the inputs folder, outputs that must not exist afterwards, text the line names)
CASES = [
    # anonymize: videos, images, bundles, outputs
    ("anonymize-empty-video", ["anonymize", "empty.mp4", "-o", "o1.mp4", m, "blur8"], ["o1.mp4"], "empty.mp4"),
    ("anonymize-fake-video", ["anonymize", "fake.mp4", "-o", "o2.mp4", m, "blur8"], ["o2.mp4"], "fake.mp4"),
    ("anonymize-truncated-video", ["anonymize", "truncated.mp4", "-o", "o3.mp4", m, "blur8"], ["o3.mp4"],
     "truncated.mp4"),
    ("anonymize-broken-image", ["anonymize", "broken.png", "-o", "o4.png", m, "mask"], ["o4.png"], "broken.png"),
    ("anonymize-folder-with-broken-image", ["anonymize", "imgs", "-o", "o5", m, "mask"], ["o5"], "b.png"),
    ("anonymize-bundle-without-manifest", ["anonymize", "astro.png", "-o", "o6.png", "--bundle", "no_manifest"],
     ["o6.png"], "no_manifest"),
    ("anonymize-bundle-bad-json", ["anonymize", "astro.png", "-o", "o7.png", "--bundle", "bad_json"], ["o7.png"],
     "bundle.json"),
    ("anonymize-bundle-fake-zip", ["anonymize", "astro.png", "-o", "o8.png", "--bundle", "fake.zip"], ["o8.png"],
     "fake.zip"),
    ("anonymize-bundle-zip-without-bundle", ["anonymize", "astro.png", "-o", "o9.png", "--bundle", "empty.zip"],
     ["o9.png"], "empty.zip"),
    ("anonymize-bundle-sha-mismatch", ["anonymize", "astro.png", "-o", "o10.png", "--bundle", "bad_sha"],
     ["o10.png"], "modifier.tflite"),
    ("anonymize-unwritable-output", ["anonymize", "astro.png", "-o", f"{UNWRITABLE}.png", m, "blur8"],
     [f"{UNWRITABLE}.png"], UNWRITABLE),
    # export
    ("export-missing-checkpoint", ["export", "nowhere.keras", "--out", "b1"], ["b1"], "nowhere.keras"),
    ("export-garbage-keras", ["export", "garbage.keras", "--out", "b2"], ["b2"], "garbage.keras"),
    ("export-run-without-modifier", ["export", "run_without_m", "--out", "b3"], ["b3"], "run_without_m"),
    ("export-broken-representative", ["export", "m.keras", "--representative", "reps", "--out", "b4"], ["b4"],
     "face.png"),
    ("export-unwritable-out", ["export", "m.keras", "--out", UNWRITABLE], [UNWRITABLE], UNWRITABLE),
    # train
    ("train-bad-yaml", ["train", "--stage", "classifier", "--config", "bad.yaml", "--out", "r1"], ["r1"],
     "bad.yaml"),
    ("train-unknown-yaml-key", ["train", "--stage", "classifier", "--config", "unknown.yaml", "--out", "r2"],
     ["r2"], "no_such_field"),
    ("train-broken-image-in-data", ["train", "--stage", "classifier", "--data", "faces_broken", "--steps", "1",
                                        "--out", "r3"], ["r3"], "bad.png"),
    ("train-bad-landmarks-csv", ["train", "--stage", "classifier", "--data", "faces", "--landmarks",
                                     "landmarks.csv", "--steps", "1", "--out", "r4"], ["r4"], "landmarks.csv"),
    ("train-garbage-classifier", ["train", "--stage", "adversarial", "--data", "synthetic", "--steps", "1",
                                      "--classifier-checkpoint", "garbage.keras", "--out", "r5"], ["r5"],
     "garbage.keras"),
    ("train-unwritable-out", ["train", "--stage", "classifier", "--data", "synthetic", "--steps", "1",
                                  "--out", UNWRITABLE], [UNWRITABLE], UNWRITABLE),
    # detect-faces
    ("detect-faces-broken-image", ["detect-faces", "faces_broken", "--format", "folders", "--no-mtcnn",
                                       "--out", "c1"], ["c1"], "bad.png"),
    ("detect-faces-bad-csv", ["detect-faces", "actions.csv", "--format", "csv", "--no-mtcnn", "--out", "c2"],
     ["c2"], "missing.png"),
    ("detect-faces-fake-video", ["detect-faces", "fake.mp4", "--format", "video", "--no-mtcnn", "--out", "c3"],
     ["c3"], "fake.mp4"),
    # evaluate
    ("evaluate-bad-pairs", ["evaluate", "--methods", "none", "--faces", "faces", "--pairs", "pairs.txt",
                                "--classifier", "garbage.keras", "--out", "e1"], ["e1"], "pairs.txt"),
    ("evaluate-pickle-payload", ["evaluate", "--methods", "none", "--actions", "imgs", "--actions-format", "daly",
                                     "--daly-annotations", "evil.pkl", "--out", "e2"], ["e2"], "evil.pkl"),
    ("evaluate-broken-image-in-faces", ["evaluate", "--methods", "blur8", "--faces", "faces_broken",
                                            "--classifier", "c.keras", "--out", "e3"], ["e3"], "bad.png"),
    ("evaluate-garbage-modifier", ["evaluate", "--methods", "learned", "--modifier", "garbage.keras",
                                       "--faces", "synthetic", "--out", "e4"], ["e4"], "garbage.keras"),
    ("evaluate-yaml-not-a-mapping", ["evaluate", "--methods", "none", "--faces", "synthetic", "--config",
                                         "list.yaml", "--out", "e5"], ["e5"], "list.yaml"),
    # demo: M plays against the D it pre-trains, so a config without D is refused before it
    ("demo-without-d", ["demo", "--config", "no_d.yaml", "--out", "g1"], ["g1"], "no_d.yaml"),
]


def _save_models(d: Path):
    """A tiny M (m.keras) and D (c.keras), valid files for the cases whose bad input is elsewhere."""
    from test_export import tiny_modifier

    from privacy_anon.config import get_preset
    from privacy_anon.models.face_classifier import build_classifier

    tiny_modifier().save(d / "m.keras")
    build_classifier(get_preset("tiny").classifier, 3).save(d / "c.keras")


def _run(d: Path, argv: list[str]):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for name in QUIET_ENV:  # the command itself must silence start-up logs
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "privacy_anon.cli", *argv], cwd=d, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("malformed")
    make_inputs(d)
    cases = CASES
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = dict(zip([c[0] for c in cases], pool.map(lambda c: _run(d, c[1]), cases)))
    return d, {c[0]: (c, done[c[0]]) for c in cases}


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_malformed_input_is_one_line_exit_2_and_leaves_nothing(corpus, name):
    d, results = corpus
    (_, argv, outputs, needle), proc = results[name]
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"privacy-anon {argv[0]}: error: "), lines[0]
    assert needle in lines[0], lines[0]
    for out in outputs:
        path = d / out
        assert not path.exists(), f"{out} left behind"
        if path.parent.is_dir():
            assert not [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")], "temp left"
    assert not (d / "PWNED").exists(), "a pickle's code payload ran"


def test_corpus_is_large_enough():
    assert len(CASES) >= 20
    assert {c[1][0] for c in CASES} == {"anonymize", "export", "train", "detect-faces", "evaluate", "demo"}


def test_verbose_brings_the_native_logs_back(corpus):
    """The same broken image with --verbose: OpenCV's decoder warnings are shown again."""
    d, _ = corpus
    proc = _run(d, ["anonymize", "broken.png", "-o", "v.png", "--method", "mask", "--verbose"])
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) > 1 and lines[-1].startswith("privacy-anon anonymize: error: broken.png"), proc.stderr


def test_usage_error_is_one_line(tmp_path):
    proc = _run(tmp_path, ["train", "--stage", "nonsense", "--out", "r"])
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("privacy-anon train: error: argument --stage") and not (tmp_path / "r").exists()
