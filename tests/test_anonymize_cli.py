"""`privacy-anon anonymize` on generated media: video with audio, images, folders, errors."""

import json
import shutil

import av
import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from privacy_anon.cli import main

FPS = 12
SIZE = (320, 240)  # w, h
FRAMES = 20


def make_video(path, n=FRAMES, fps=FPS, size=SIZE):
    """A lossless (FFV1, RGB) clip panning over astronaut(), with an AAC sine-tone track."""
    img = astronaut()
    w, h = size
    frames = []
    with av.open(str(path), "w") as c:
        v = c.add_stream("ffv1", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "bgr0"
        a = c.add_stream("aac", rate=16000, layout="mono")
        for i in range(n):
            f = np.ascontiguousarray(img[20:20 + h, 60 + 2 * i:60 + 2 * i + w])
            frames.append(f)
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            c.mux(v.encode(vf))
        c.mux(v.encode(None))
        for k in range(0, 16000 * n // fps, 1024):
            tone = (np.sin(np.arange(k, k + 1024) / 7.0) * 6000).astype(np.int16)[None]
            af = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
            af.sample_rate, af.pts = 16000, k
            c.mux(a.encode(af))
        c.mux(a.encode(None))
    return frames


def read_video(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {"fps": v.average_rate, "size": (v.codec_context.width, v.codec_context.height),
                "audio": [(s.codec_context.name, s.rate) for s in c.streams.audio]}
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        info["audio_packets"] = sum(1 for p in c.demux(audio=0) if p.dts is not None) if c.streams.audio else 0
    return frames, info


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    from test_export import face_crops, tiny_modifier

    from privacy_anon.export import export_bundle

    out = tmp_path_factory.mktemp("cli") / "bundle"
    export_bundle(tiny_modifier(), out, quantize="int8", representative=face_crops(), min_psnr=25, verbose=False)
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "clip.mkv"
    return path, make_video(path)


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_video_keeps_frames_fps_size_audio_and_changes_only_faces(bundle_dir, video, tmp_path, capsys):
    src, frames_in = video
    out = tmp_path / "anon.mkv"
    boxes = tmp_path / "boxes.json"
    code, _, err = run(["anonymize", str(src), "-o", str(out), "--bundle", str(bundle_dir),
                        "--codec", "ffv1", "--boxes-json", str(boxes), "--no-progress"], capsys)
    assert code == 0, err
    frames_out, info = read_video(out)
    _, info_in = read_video(src)
    assert len(frames_out) == FRAMES
    assert info["fps"] == FPS and info["size"] == SIZE
    assert info["audio"] == info_in["audio"] == [("aac", 16000)]
    assert info["audio_packets"] == info_in["audio_packets"] > 0
    log = json.loads(boxes.read_text())["inputs"][0]["frames"]
    assert len(log) == FRAMES
    for i, (a, b, entry) in enumerate(zip(frames_in, frames_out, log)):
        assert entry["status"] == "ok" and len(entry["regions"]) == 1, i
        x1, y1, x2, y2 = entry["regions"][0]
        inside = np.zeros(a.shape[:2], bool)
        inside[y1:y2, x1:x2] = True
        np.testing.assert_array_equal(b[~inside], a[~inside])  # lossless codec: bit-identical
        assert np.abs(b[inside].astype(int) - a[inside]).mean() > 2, f"frame {i}: face not changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anon.mkv", "boxes.json"]  # no temp files


def test_video_to_mp4_with_a_baseline(video, tmp_path, capsys):
    src, _ = video
    out = tmp_path / "anon.mp4"
    code, stdout, err = run(["anonymize", str(src), "-o", str(out), "--method", "blur8", "--no-progress"], capsys)
    assert code == 0, err
    frames, info = read_video(out)
    assert len(frames) == FRAMES and info["size"] == SIZE and info["audio"] == [("aac", 16000)]
    assert "20 frame(s)" in stdout


def test_images_and_folders(tmp_path, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    img = astronaut()
    cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "sub" / "b.png"), cv2.cvtColor(img[:300, :300], cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not media")
    code, _, err = run(["anonymize", str(folder), "-o", str(tmp_path / "out"), "--method", "mask",
                        "--no-progress"], capsys)
    assert code == 0, err
    a = cv2.imread(str(tmp_path / "out" / "a.png"))
    assert a.shape == img.shape and (tmp_path / "out" / "sub" / "b.png").is_file()
    assert not a[100:150, 200:250].any()  # the face is masked
    np.testing.assert_array_equal(a[400:], cv2.cvtColor(img, cv2.COLOR_RGB2BGR)[400:])


def one_line_error(code, out_path, err, *fragments):
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("privacy-anon anonymize: error:"), err
    for fragment in fragments:
        assert fragment in err
    assert not out_path.exists()
    assert not [p for p in out_path.parent.iterdir() if p.name.startswith(f".{out_path.name}")]


def test_truncated_bundle(bundle_dir, video, tmp_path, capsys):
    bad = tmp_path / "bundle"
    shutil.copytree(bundle_dir, bad)
    m = bad / "modifier.tflite"
    m.write_bytes(m.read_bytes()[: m.stat().st_size // 2])
    out = tmp_path / "o.mkv"
    code, _, err = run(["anonymize", str(video[0]), "-o", str(out), "--bundle", str(bad)], capsys)
    one_line_error(code, out, err, "modifier.tflite", "sha256 mismatch")


def test_incompatible_bundle_version(bundle_dir, video, tmp_path, capsys):
    bad = tmp_path / "bundle"
    shutil.copytree(bundle_dir, bad)
    manifest = json.loads((bad / "bundle.json").read_text())
    manifest["format_version"] = 2
    (bad / "bundle.json").write_text(json.dumps(manifest))
    out = tmp_path / "o.mkv"
    code, _, err = run(["anonymize", str(video[0]), "-o", str(out), "--bundle", str(bad)], capsys)
    one_line_error(code, out, err, "bundle.json", "format version 2")


def test_corrupt_video(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    out = tmp_path / "o.mp4"
    code, _, err = run(["anonymize", str(bad), "-o", str(out), "--method", "blur8"], capsys)
    one_line_error(code, out, err, str(bad))


def test_empty_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    code, _, err = run(["anonymize", str(empty), "-o", str(out), "--method", "blur8"], capsys)
    one_line_error(code, out, err, str(empty), "no images or videos")


def test_unwritable_output(video, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    out = blocker / "o.mkv"
    code, _, err = run(["anonymize", str(video[0]), "-o", str(out), "--method", "blur8"], capsys)
    assert code == 2 and err.count("\n") == 1 and "cannot write" in err
    assert blocker.read_text() == "a file, not a folder"


def test_boxes_json_never_overwrites_the_input_or_the_output(video, tmp_path, capsys):
    src = tmp_path / "in.mkv"
    src.write_bytes(video[0].read_bytes())
    before = src.read_bytes()
    out = tmp_path / "o.mkv"
    for boxes, what in ((src, "an input"), (out, "the output")):
        code, _, err = run(["anonymize", str(src), "-o", str(out), "--method", "blur8",
                            "--boxes-json", str(boxes), "--no-progress"], capsys)
        assert code == 2 and err.count("\n") == 1 and str(boxes) in err and what in err, err
        assert src.read_bytes() == before and not out.exists()


def test_pi_runner_without_tensorflow(bundle_dir, video, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "mobile" / "python" / "run.py"
    out = tmp_path / "pi.mkv"
    code = (f"import sys, runpy; sys.modules['tensorflow'] = None; sys.modules['keras'] = None; "
            f"sys.argv = ['run.py', '--bundle', {str(bundle_dir)!r}, '--input', {str(video[0])!r}, "
            f"'--output', {str(out)!r}, '--threads', '2']; runpy.run_path({str(script)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "fps" in done.stderr
    frames, info = read_video(out)
    assert len(frames) == FRAMES and info["audio"] == [("aac", 16000)]
