"""Issue 13's throughput pieces: overlapped decode/encode, bounded detector calls, the
export form of mirror padding. Speed itself is measured in benchmarks/, not here."""

import threading

import av
import numpy as np
import pytest
from skimage.data import astronaut

from privacy_anon.faces.detector import BlazeFace
from privacy_anon.runtime import Anonymizer
from privacy_anon.runtime.overlap import BackgroundWriter, map_ahead, prefetch
from privacy_anon.runtime.video import anonymize_video


# ----------------------------------------------------------------------------- overlap


def test_prefetch_keeps_order_and_raises_where_the_producer_failed():
    threads = set()

    def items():
        for i in range(50):
            threads.add(threading.current_thread().name)
            yield i

    assert list(prefetch(items(), depth=3)) == list(range(50))
    assert threads == {"privacy-anon-reader"}  # produced on the reader thread

    def broken():
        yield 1
        yield 2
        raise ValueError("corrupt packet")

    got = []
    with pytest.raises(ValueError, match="corrupt packet"):
        for item in prefetch(broken(), depth=4):
            got.append(item)
    assert got == [1, 2]


def test_prefetch_stops_its_thread_when_the_consumer_stops():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    for item in prefetch(endless(), depth=2):
        if item == 5:
            break
    before = len(produced)
    assert before <= 5 + 1 + 2 + 1  # at most the queue and one more item ahead
    assert not [t for t in threading.enumerate() if t.name == "privacy-anon-reader"]


def test_background_writer_keeps_order_and_reports_errors():
    seen = []
    with BackgroundWriter(seen.append, depth=2) as writer:
        for i in range(100):
            writer.put(i)
    assert seen == list(range(100))

    def fail_on_3(item):
        if item == 3:
            raise OSError("disk full")
        seen.append(item)

    seen.clear()
    with pytest.raises(OSError, match="disk full"):
        with BackgroundWriter(fail_on_3, depth=2) as writer:
            for i in range(20):
                writer.put(i)
    assert seen == [0, 1, 2]


def test_map_ahead_keeps_order_gives_each_worker_one_thread_and_hands_back_failures():
    busy = set()

    def worker(name):
        def work(value):
            assert name not in busy, "a worker ran on two threads at once"
            busy.add(name)
            try:
                if value == 13:
                    raise RuntimeError("bad frame")
                return value * value
            finally:
                busy.discard(name)
        return work

    items = [(i, None if i % 5 == 4 else i) for i in range(40)]  # every 5th: no work (audio)
    got = list(map_ahead(items, [worker("a"), worker("b")], key=lambda item: item[1], depth=3))
    assert [item for item, _ in got] == items
    for (i, value), result in got:
        if value is None:
            assert result is None
        elif i == 13:
            assert isinstance(result, RuntimeError) and "bad frame" in str(result)
        else:
            assert result == i * i
    # no workers: results None, the caller does the work
    assert list(map_ahead([1, 2], [])) == [(1, None), (2, None)]


def test_map_ahead_yields_what_came_before_a_failing_source_then_raises():
    def broken():
        yield from range(6)
        raise ValueError("corrupt packet")

    got = []
    with pytest.raises(ValueError, match="corrupt packet"):
        for item, result in map_ahead(broken(), [lambda v: -v, lambda v: -v], depth=4):
            got.append((item, result))
    assert got == [(i, -i) for i in range(6)]
    # a consumer that stops early does not hang, and stops the source
    for item, _ in map_ahead(iter(range(1000)), [abs, abs], depth=4):
        if item == 3:
            break
    assert not [t for t in threading.enumerate() if t.name.startswith("privacy-anon-detect")]


def make_clip(path, n=16, size=(320, 240)):
    """Lossless (FFV1) clip panning over astronaut(): one face."""
    img = astronaut()
    w, h = size
    with av.open(str(path), "w") as c:
        v = c.add_stream("ffv1", rate=12)
        v.width, v.height, v.pix_fmt = w, h, "bgr0"
        for i in range(n):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[20:20 + h, 60 + 3 * i:60 + 3 * i + w]),
                                            format="rgb24")
            vf.pts = i
            c.mux(v.encode(vf))
        c.mux(v.encode(None))


def decode(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_overlapped_video_is_identical_to_the_sequential_one(tmp_path):
    src = tmp_path / "in.mkv"
    make_clip(src)
    outputs = {}
    for depth in (0, 3):
        anonymizer = Anonymizer(method="blur8", num_threads=2)
        assert len(anonymizer.frame_detectors()) == 2  # depth 3: two frames detected at once
        records = []
        anonymize_video(anonymizer, src, tmp_path / f"out{depth}.mkv", codec="ffv1",
                        progress=False, overlap=depth, on_frame=records.append)
        outputs[depth] = (decode(tmp_path / f"out{depth}.mkv"), records)
    frames0, log0 = outputs[0]
    frames3, log3 = outputs[3]
    assert len(frames0) == len(frames3) == 16
    assert all(np.array_equal(a, b) for a, b in zip(frames0, frames3))
    assert log0 == log3
    assert sum(bool(f["regions"]) for f in log3) == 16  # the face was anonymized in every frame
    assert not np.array_equal(frames3[0], decode(src)[0])


class FailsOnFrame5(BlazeFace):
    """The real detector, made to crash on the frame panned 5 steps (its left edge)."""

    def detect(self, image):
        if np.array_equal(image[:, 0], astronaut()[20:260, 75]):
            raise RuntimeError("detector crashed")
        return super().detect(image)


def test_a_detector_crash_on_a_worker_thread_masks_that_frame_only(tmp_path):
    src = tmp_path / "in.mkv"
    make_clip(src)
    anonymizer = Anonymizer(method="blur8", num_threads=2, detector=FailsOnFrame5())
    assert len(anonymizer.frame_detectors()) == 2
    records = []
    anonymize_video(anonymizer, src, tmp_path / "out.mkv", codec="ffv1", progress=False,
                    on_frame=records.append)
    frames = decode(tmp_path / "out.mkv")
    assert len(frames) == 16
    assert [r["status"] for r in records] == ["ok"] * 5 + ["masked"] + ["ok"] * 10
    assert "detector crashed" in records[5]["error"]
    assert not frames[5].any()  # fail closed: nothing of that frame is written
    assert all(r["regions"] for i, r in enumerate(records) if i != 5)


# ----------------------------------------------------------------------------- detector calls


@pytest.mark.parametrize("max_calls", [12, 16])
def test_detector_calls_per_frame_are_bounded(max_calls):
    detector = BlazeFace(min_face_size=40, max_calls=max_calls)
    unbounded = BlazeFace(min_face_size=40)
    sizes = [(640, 360), (1280, 720), (1920, 1080), (3840, 2160), (1080, 1920)]
    for w, h in sizes:
        assert len(detector.windows(w, h)) <= max_calls
    assert len(unbounded.windows(3840, 2160)) > 300  # what the bound is for
    # a small frame keeps every window (and so its 40 px faces); larger ones look for larger
    # faces, in proportion to the frame
    assert detector.windows(640, 360) == unbounded.windows(640, 360)
    smallest = [detector.smallest_face(w, h) for w, h in sizes[:4]]
    assert smallest[0] == 40 and smallest == sorted(smallest)
    assert smallest[3] / 3840 < 2 * smallest[1] / 1280
    # every pixel is still inside a tile of the finest level
    tiles = detector.windows(1920, 1080)[2:]
    finest = min(t[2] for t in tiles)
    cover = np.zeros((1080, 1920), bool)
    for x0, y0, tw, th, _ in tiles:
        if tw == finest:
            cover[y0:y0 + th, x0:x0 + tw] = True
    assert cover.all()


def test_bounded_detector_still_finds_faces_in_a_large_frame():
    import cv2

    face = cv2.resize(astronaut(), (240, 240))  # face ~50 px wide
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[600:840, 1500:1740] = face
    boxes, scores, _ = BlazeFace(min_face_size=40, max_calls=16)(frame)
    assert len(boxes) >= 1
    cx, cy = (boxes[0, 0] + boxes[0, 2]) / 2, (boxes[0, 1] + boxes[0, 3]) / 2
    assert 1500 < cx < 1740 and 600 < cy < 840


def test_anonymizer_default_bounds_detector_calls():
    a = Anonymizer(method="blur8", num_threads=1)
    assert 0 < len(a.detector.windows(3840, 2160)) <= 16
    b = Anonymizer(method="blur8", num_threads=1, max_calls=0)
    assert len(b.detector.windows(3840, 2160)) > 300


# ----------------------------------------------------------------------------- export padding


def test_mirror_pad_by_slices_equals_reflect_padding():
    from keras import ops

    from privacy_anon.models.modifier import reflect_by_slices

    x = np.random.default_rng(0).normal(size=(2, 9, 7, 3)).astype(np.float32)
    for p in (1, 3):
        ref = np.pad(x, [(0, 0), (p, p), (p, p), (0, 0)], mode="reflect")
        np.testing.assert_array_equal(np.asarray(reflect_by_slices(ops.convert_to_tensor(x), p)), ref)
