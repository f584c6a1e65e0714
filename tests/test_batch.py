"""`privacy-anon anonymize-batch` on Apache Beam's DirectRunner with 2 worker processes:
outputs, per-file manifests, a failure recorded, and resume after a killed run.

Beam cannot share an environment with TensorFlow 2.20 (it upgrades protobuf and pillow), so
the pipeline runs in a runtime-only venv built by `.ci/beam_venv.sh` (CI builds it first and
sets PRIVACY_ANON_BEAM_PYTHON); the bundle is exported here, with TensorFlow.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage.data import astronaut

ROOT = Path(__file__).resolve().parents[1]
CLIPS = 6
FRAMES = 12


@pytest.fixture(scope="module")
def beam_python():
    python = os.environ.get("PRIVACY_ANON_BEAM_PYTHON")
    if python:
        return python
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "privacy-anon" / "beam-venv"
    done = subprocess.run(["bash", str(ROOT / ".ci" / "beam_venv.sh"), str(cache)],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from test_export import face_crops, tiny_modifier

    from privacy_anon.export import export_bundle

    out = tmp_path_factory.mktemp("batch") / "bundle"
    export_bundle(tiny_modifier(), out, quantize="int8", representative=face_crops(), min_psnr=25,
                  verbose=False)
    return out


def _clip(path, shift):
    """A lossless 160x120 clip panning over a half-size astronaut(): a ~55 px face at
    x 65..120 - shift, y 33..88 in every frame, the bottom rows free of it."""
    img = cv2.resize(astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as c:
        v = c.add_stream("ffv1", rate=10)
        v.width, v.height, v.pix_fmt = 160, 120, "bgr0"
        for i in range(FRAMES):
            x = 20 + shift + i
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[0:120, x:x + 160]), format="rgb24")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode(None))


def _frames(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _batch(beam_python, archive, out, bundle, **popen):
    cmd = [beam_python, "-m", "privacy_anon.cli", "anonymize-batch",
           str(archive / "**" / "*.mkv"), str(archive / "photos" / "*.png"), str(archive / "bad.mp4"),
           "-o", str(out), "--bundle", str(bundle), "--workers", "2"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, **popen)


@pytest.mark.timeout(1800)  # minutes on a loaded 2-core machine
def test_beam_batch_outputs_manifests_and_resume_after_kill(beam_python, bundle, tmp_path):
    archive = tmp_path / "archive"
    for i in range(CLIPS):
        (archive / f"day{i % 2}").mkdir(parents=True, exist_ok=True)
        _clip(archive / f"day{i % 2}" / f"clip{i}.mkv", shift=5 * i)
    (archive / "photos").mkdir()
    cv2.imwrite(str(archive / "photos" / "portrait.png"), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    (archive / "bad.mp4").write_bytes(b"not a video at all" * 100)
    out = tmp_path / "out"
    outputs = [out / f"day{i % 2}" / f"clip{i}.mkv" for i in range(CLIPS)] + [out / "photos" / "portrait.png"]

    # 1. killed as soon as the first file is complete
    proc = _batch(beam_python, archive, out, bundle, start_new_session=True)
    try:
        deadline = time.time() + 600
        while not list(out.rglob("*.mkv.manifest.json")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    complete = [p for p in outputs if Path(str(p) + ".manifest.json").is_file()]
    assert 1 <= len(complete) < len(outputs), "the kill came too late to test resuming"
    # nothing half-written where the user looks: every output with a manifest is there, and
    # one without (killed between its rename into place and its manifest, the design's one
    # window) is whole; the rerun redoes it, as it has no manifest
    visible = [p for p in out.rglob("*") if p.is_file() and not p.name.endswith(".manifest.json")
               and not any(part.startswith(".") for part in p.relative_to(out).parts)]
    assert set(complete) <= set(visible), (visible, complete)
    for p in set(visible) - set(complete):
        if p.suffix == ".mkv":
            assert len(_frames(p)) == FRAMES, p
        else:
            assert cv2.imread(str(p)) is not None, p
    before = {p: Path(str(p) + ".manifest.json").stat().st_mtime_ns for p in complete}

    # 2. the rerun resumes: the complete files are skipped, the rest done, the bad one failed
    proc = _batch(beam_python, archive, out, bundle)
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 2, stderr[-3000:]
    total = CLIPS + 2
    assert (f"{total} file(s): {len(outputs) - len(complete)} anonymized, {len(complete)} "
            f"already complete, 1 failed") in stdout, stdout + stderr[-2000:]
    failed = [line for line in stderr.splitlines() if line.startswith("privacy-anon anonymize-batch: failed:")]
    assert len(failed) == 1 and "bad.mp4" in failed[0]
    for p in complete:  # skipped, not redone
        assert Path(str(p) + ".manifest.json").stat().st_mtime_ns == before[p]
    bad = json.loads((out / "bad.mp4.manifest.json").read_text())
    assert bad["status"] == "failed" and bad["error"] and not (out / "bad.mp4").exists()

    for i in range(CLIPS):
        src, dst = archive / f"day{i % 2}" / f"clip{i}.mkv", outputs[i]
        manifest = json.loads(Path(str(dst) + ".manifest.json").read_text())
        assert manifest["status"] == "ok" and manifest["input"] == str(src)
        assert manifest["frames"] == FRAMES and manifest["failed_frames"] == 0
        assert manifest["faces"] >= FRAMES  # the astronaut's face, in every frame
        assert manifest["output_bytes"] == dst.stat().st_size
        a, b = _frames(src), _frames(dst)
        assert len(b) == FRAMES
        diff = np.abs(a[0].astype(int) - b[0].astype(int)).sum(-1)
        # the face rewritten; below its (enlarged) box only the codec's noise (x264, CRF 18)
        assert diff.max() > 100 and diff[110:].mean() < 15
    photo = json.loads((out / "photos" / "portrait.png.manifest.json").read_text())
    assert photo["status"] == "ok" and photo["type"] == "image" and photo["faces"] >= 1
    assert not list(out.rglob(".*")), "temporary files left behind"
