"""Videos as phones and broken disks deliver them: rotation metadata, decoding that fails part-way.

Rotation: the test videos store a real face (the astronaut) turned, with a display matrix
(or a legacy `rotate` tag) that turns it back upright for display. OpenCV's FFmpeg backend,
which applies the display matrix itself (`CAP_PROP_ORIENTATION_AUTO`), plays the player and
checks both the test input and the output, independently of the code under test.

Partial output: an MJPEG video with one garbage packet in the middle (the first frames decode,
then FFmpeg raises) and an MP4 cut short (its index lists frames past the end of the file).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from privacy_anon.cli import QUIET_ENV
from privacy_anon.errors import InputError
from privacy_anon.runtime import Anonymizer
from privacy_anon.runtime.video import Orientation, partial_path

ROOT = Path(__file__).resolve().parents[1]
W, H = 120, 160  # the upright (portrait) picture, as a phone shows it


@pytest.fixture(scope="module")
def upright():
    """A portrait crop of the astronaut: her face upright, about 55 px."""
    return cv2.resize(np.ascontiguousarray(astronaut()[0:320, 80:320]), (W, H), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def anonymizer():
    return Anonymizer(method="mask")


@pytest.fixture(scope="module")
def face_box(anonymizer, upright):
    """Where the face is in the upright picture (the detector on the upright frame)."""
    boxes, _ = anonymizer.detect(upright)
    assert len(boxes) == 1
    return boxes[0].round().astype(int)


def _write(path, frames, codec="libx264", rate=10, rotation=None, tags=None, bad_packet=None):
    """Encodes RGB frames; `rotation`: display matrix, counter-clockwise degrees; `bad_packet`:
    the index of a packet replaced by garbage (the container stays valid, the codec data not)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12"}
        else:  # MJPEG: FFmpeg's default 200 kb/s smears the picture
            stream.bit_rate = 8_000_000
        if rotation is not None:
            stream.set_display_rotation(rotation)
        stream.metadata.update(tags or {})
        count = 0
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                if count == bad_packet:
                    garbage = av.Packet(b"\x00" * 600)
                    garbage.pts, garbage.dts, garbage.time_base = packet.pts, packet.dts, packet.time_base
                    garbage.stream, garbage.is_keyframe = stream, True
                    packet = garbage
                out.mux(packet)
                count += 1
        out.mux(stream.encode(None))


def _played(path) -> list[np.ndarray]:
    """RGB frames as a player shows them: OpenCV applies the display matrix."""
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_ORIENTATION_AUTO) == 1
    frames = []
    ok, bgr = capture.read()
    while ok:
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        ok, bgr = capture.read()
    capture.release()
    return frames


def _decoded(path) -> list:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def _diff(a, b) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def _assert_upright_and_anonymized(frames, upright, box):
    """Every frame shows the upright picture, except the face, which is masked."""
    x0, y0, x1, y1 = box
    outside = np.ones(upright.shape[:2], bool)
    outside[max(0, y0 - 25):y1 + 25, max(0, x0 - 25):x1 + 25] = False  # the enlarged box, with margin
    assert frames
    for frame in frames:
        assert frame.shape == upright.shape
        assert _diff(frame[outside], upright[outside]) < 8  # the same picture, the same way up
        face = frame[y0 + 8:y1 - 8, x0 + 8:x1 - 8]
        assert face.mean() < 20 and upright[y0 + 8:y1 - 8, x0 + 8:x1 - 8].mean() > 60  # masked black


# ----------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("rotation", [-90, 90, 180])  # -90: a phone held upright (ffprobe's figure)
def test_rotated_video_is_anonymized_upright(tmp_path, anonymizer, upright, face_box, rotation):
    k = rotation // 90
    stored = np.ascontiguousarray(np.rot90(upright, -k))  # what the phone's sensor wrote
    src, dst = tmp_path / "phone.mp4", tmp_path / "out.mp4"
    _write(src, [stored] * 6, rotation=rotation)
    assert _decoded(src)[0].rotation % 360 == rotation % 360  # FFmpeg reads 180 as -180
    assert _diff(_played(src)[0], upright) < 6  # the test input does display upright

    records = []
    summary = anonymizer.anonymize_video(src, dst, progress=False, on_frame=records.append)

    assert (summary["width"], summary["height"], summary["rotation"] % 360) == (W, H, rotation % 360)
    assert len(records) == summary["frames_in"] == 6
    assert all(len(f["detections"]) == 1 for f in records)
    out = _decoded(dst)
    assert len(out) == 6 and all(f.rotation == 0 and (f.width, f.height) == (W, H) for f in out)
    _assert_upright_and_anonymized(_played(dst), upright, face_box)  # what a player shows
    # upright frames with no display matrix: a player that ignores rotation shows the same
    _assert_upright_and_anonymized([f.to_ndarray(format="rgb24") for f in out], upright, face_box)


def test_upside_down_face_is_missed_without_the_rotation(anonymizer, upright):
    """Why the rotation matters: the detector misses the stored (upside-down) face."""
    assert len(anonymizer.detect(upright)[0]) == 1
    assert len(anonymizer.detect(np.ascontiguousarray(np.rot90(upright, 2)))[0]) == 0


def test_legacy_rotate_tag(tmp_path, anonymizer, upright, face_box):
    """A Matroska file remuxed by an old FFmpeg: a `rotate` tag (clockwise), no display matrix."""
    stored = np.ascontiguousarray(np.rot90(upright, 2))
    src, dst = tmp_path / "old.mkv", tmp_path / "out.mkv"
    _write(src, [stored] * 4, tags={"rotate": "180"})
    assert _decoded(src)[0].rotation == 0
    summary = anonymizer.anonymize_video(src, dst, progress=False)
    assert summary["rotation"] % 360 == 180
    _assert_upright_and_anonymized([f.to_ndarray(format="rgb24") for f in _decoded(dst)], upright, face_box)


def test_orientation_from_display_matrices(tmp_path):
    """Each matrix PyAV writes, turned as FFmpeg's own player turns it (corner marks)."""
    image = np.zeros((4, 6, 1), np.uint8)
    image[0, 0], image[0, 5] = 1, 2  # top-left, top-right
    cases = {  # (rotation, hflip): (displayed shape, where 1 and 2 land)
        (0, False): ((4, 6), (0, 0), (0, 5)),
        (90, False): ((6, 4), (5, 0), (0, 0)),  # counter-clockwise: the top-left goes bottom-left
        (-90, False): ((6, 4), (0, 3), (5, 3)),
        (180, False): ((4, 6), (3, 5), (3, 0)),
        (0, True): ((4, 6), (0, 5), (0, 0)),
        (90, True): ((6, 4), (5, 3), (0, 3)),  # FFmpeg: transpose=clock_flip
    }
    for (rotation, hflip), (shape, one, two) in cases.items():
        shown = Orientation(_display_matrix(tmp_path, rotation, hflip)).apply(image)[..., 0]
        assert shown.shape == shape, (rotation, hflip)
        assert tuple(np.argwhere(shown == 1)[0]) == one and tuple(np.argwhere(shown == 2)[0]) == two, (rotation, hflip)
    assert Orientation(_display_matrix(tmp_path, 90, False)).size(6, 4) == (4, 6)


def _display_matrix(folder, rotation, hflip):
    """The matrix PyAV's `set_display_rotation` stores, read back from a written file."""
    path = folder / f"matrix{rotation}{hflip}.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        stream.set_display_rotation(rotation, hflip=hflip)
        out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")))
        out.mux(stream.encode(None))
    frame = _decoded(path)[0]
    side = next((s for s in frame.side_data if s.type == av.sidedata.sidedata.Type.DISPLAYMATRIX), None)
    return None if side is None else np.frombuffer(bytes(side), np.int32)[:9].tolist()  # none: identity


# ----------------------------------------------------------------------------- decode error part-way


def _moving(upright, n):
    """n frames of the upright picture, shifted a little each (so every frame differs)."""
    return [np.ascontiguousarray(np.roll(upright, i, axis=1)) for i in range(n)]


def _run_cli(cwd: Path, argv):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for name in QUIET_ENV:  # the command itself must silence start-up logs
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "privacy_anon.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_corrupt_packet_keeps_a_partial_output(tmp_path, upright, face_box):
    src = tmp_path / "corrupt.mkv"
    _write(src, [upright] * 16, codec="mjpeg", bad_packet=8)
    decoded = 0
    with pytest.raises(av.FFmpegError):  # the input really decodes 8 frames, then fails
        with av.open(str(src)) as container:
            for _ in container.decode(video=0):
                decoded += 1
    assert decoded == 8

    proc = _run_cli(tmp_path, ["anonymize", "corrupt.mkv", "-o", "out.mkv", "--method", "mask"])

    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("privacy-anon anonymize: error: corrupt.mkv: "), proc.stderr
    assert "decoding failed at frame 8" in lines[0] and "out.partial.mkv" in lines[0]
    assert not (tmp_path / "out.mkv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.mkv", "out.partial.mkv"]  # no temp files
    frames = [f.to_ndarray(format="rgb24") for f in _decoded(tmp_path / "out.partial.mkv")]
    assert len(frames) == 8
    _assert_upright_and_anonymized(frames, upright, face_box)  # no face got through


def test_file_cut_short_keeps_a_partial_output(tmp_path, anonymizer, upright, face_box):
    """An MP4 with its index at the front (`faststart`, as phones and web uploads write it)
    cut at 80%: FFmpeg stops after 7 frames, with or without an error (by thread count)."""
    whole, src, dst = tmp_path / "whole.mp4", tmp_path / "cut.mp4", tmp_path / "out.mp4"
    frames = _moving(upright, 20)
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt, stream.options = W, H, "yuv420p", {"crf": "12"}
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
    data = whole.read_bytes()
    src.write_bytes(data[:int(len(data) * 0.8)])
    with av.open(str(src)) as container:
        assert container.streams.video[0].frames == 20  # the index still lists all 20

    with pytest.raises(InputError, match=r"cut\.mp4: video decoding failed at frame \d+ .*out\.partial\.mp4"):
        anonymizer.anonymize_video(src, dst, progress=False)

    assert not dst.exists() and partial_path(dst) == tmp_path / "out.partial.mp4"
    kept = [f.to_ndarray(format="rgb24") for f in _decoded(partial_path(dst))]
    assert 0 < len(kept) < 20
    # frame i shows the picture moved i pixels right: moved back, the face is masked where it was
    _assert_upright_and_anonymized([np.roll(f, -i, axis=1) for i, f in enumerate(kept)], upright, face_box)


def test_whole_files_are_not_cut_short(tmp_path, anonymizer, upright):
    """The cut-short check against the container's index passes complete files of each layout."""
    for name, options in (("plain.mp4", {}), ("front.mp4", {"movflags": "faststart"}), ("x.avi", None)):
        src = tmp_path / name
        if options is None:
            _write(src, _moving(upright, 5), codec="mjpeg")
        else:
            with av.open(str(src), "w", options=options) as out:
                stream = out.add_stream("libx264", rate=10)
                stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
                for image in _moving(upright, 5):
                    out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
                out.mux(stream.encode(None))
        summary = anonymizer.anonymize_video(src, tmp_path / f"out-{name}", progress=False)
        assert summary["written"] == 5 and not partial_path(tmp_path / f"out-{name}").exists()
