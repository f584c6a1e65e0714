"""`--boxes-json` is streamed: memory stays flat over a long video, the file has one record per
frame, and an error leaves no half file under its name.

The long clip is 3,000 small frames (48 x 48, FFV1) through the real decode / anonymize
(`mask`) / encode loop and the real `anonymize_paths`, with Python's `tracemalloc` sampled
before every frame. Its detector is a callable returning the clip's known face box (moving a
pixel a frame): BlazeFace costs ~5 ms a call here, 3,000 calls would be the whole test budget,
and detection is not what is measured (the CLI tests run BlazeFace and read the same file).
"""

from __future__ import annotations

import json
import tracemalloc

import av
import cv2
import numpy as np
import pytest
from skimage.data import astronaut
from test_video_input import _write

from privacy_anon.errors import InputError
from privacy_anon.runtime import Anonymizer
from privacy_anon.runtime.boxes_log import boxes_log
from privacy_anon.runtime.video import anonymize_paths, partial_path

FRAMES = 3000
SIZE = 48
FIELDS = {"frame", "status", "detections", "regions"}


class MovingFace:
    """The detector: the face box of the clip below, one pixel further right every 10 frames."""

    def __init__(self):
        self.calls = 0

    def __call__(self, image):
        x = 10 + (self.calls // 10) % 8
        self.calls += 1
        return np.array([[x, 12, x + 24, 36]], np.float32), np.array([0.9], np.float32)


class Sampled:
    """Passes frames on to an `Anonymizer` and records Python's traced memory before each one
    (into an array allocated up front, so the sampling itself does not grow)."""

    def __init__(self, anonymizer, frames, boxes_dir):
        self.anonymizer, self.boxes_dir = anonymizer, boxes_dir
        self.memory = np.zeros(frames, np.int64)
        self.count = 0
        self.lines_at_half = None
        self.name, self.enlarge = anonymizer.name, anonymizer.enlarge

    def reset(self):
        self.anonymizer.reset()

    def process(self, frame):
        self.memory[self.count] = tracemalloc.get_traced_memory()[0]
        if self.count == len(self.memory) // 2:  # the records so far are on disk already
            (tmp,) = [p for p in self.boxes_dir.iterdir() if p.name.startswith(".boxes.json.")]
            self.lines_at_half = tmp.read_text().count("\n")
        self.count += 1
        return self.anonymizer.process(frame)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "long.mkv"
    image = cv2.resize(np.ascontiguousarray(astronaut()[0:256, 100:356]), (SIZE, SIZE),
                       interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "bgr0"
        for i in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(image, i % 8, axis=1)), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_memory_is_flat_in_video_length_and_every_frame_is_in_the_file(long_clip, tmp_path):
    boxes = tmp_path / "boxes.json"
    sampled = Sampled(Anonymizer(method="mask", num_threads=1, detector=MovingFace()), FRAMES, tmp_path)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        summary = anonymize_paths(sampled, long_clip, tmp_path / "out.mkv", codec="ffv1",
                                  boxes_json=boxes, progress=False)
        peak = tracemalloc.get_traced_memory()[1] - start
        before = tracemalloc.get_traced_memory()[0]
        data = json.loads(boxes.read_text())  # what the old code held until the end, about
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    records = data["inputs"][0]["frames"]
    assert sampled.count == FRAMES and len(records) == FRAMES
    assert held > 1_000_000  # ~650 bytes a record: the per-frame list is worth measuring
    # between frame ~500 and the last frames, the old per-frame list grew by ~5/6 of `held`
    early, late = np.median(sampled.memory[400:600]), np.median(sampled.memory[-200:])
    assert late - early < 0.05 * held, (late - early, held)
    # and the old code's peak (the list plus the whole document as one string) was over `held`
    assert peak < 0.5 * held, (peak, held)
    # streamed: at half-way, the records before are in the temporary file, not in memory
    assert sampled.lines_at_half >= FRAMES // 2 - 200, sampled.lines_at_half

    # one record per frame, in order, with what was anonymized where
    assert [r["frame"] for r in records] == list(range(FRAMES))
    for i, record in enumerate(records):
        assert set(record) == FIELDS and record["status"] == "ok", record
        x = 10 + (i // 10) % 8
        assert record["detections"] == [[x, 12, x + 24, 36, 0.9]], record
        (region,) = record["regions"]
        x1, y1, x2, y2 = region
        assert x1 <= x and y1 <= 12 and x2 >= x + 24 and y2 >= 36, record  # enlarged around the box
    entry = data["inputs"][0]
    assert (data["method"], entry["type"], entry["input"]) == ("mask", "video", str(long_clip))
    totals = {k: entry[k] for k in ("frames_in", "written", "masked", "dropped", "faces", "frames_with_faces")}
    assert totals == {"frames_in": FRAMES, "written": FRAMES, "masked": 0, "dropped": 0,
                      "faces": FRAMES, "frames_with_faces": FRAMES}
    # the return value carries the totals, not the records
    assert summary["inputs"][0] == {k: v for k, v in entry.items() if k != "frames"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boxes.json", "out.mkv"]  # no temp file


def test_an_error_part_way_leaves_no_boxes_file(tmp_path):
    """A folder whose second video fails to decode at frame 8: the first video's records and
    the second's first 8 were streamed to the temporary file; it goes, with the new folder."""
    image = cv2.resize(np.ascontiguousarray(astronaut()[0:320, 80:320]), (120, 160), interpolation=cv2.INTER_AREA)
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder / "a.mkv", [image] * 4, codec="mjpeg")
    _write(folder / "b.mkv", [image] * 16, codec="mjpeg", bad_packet=8)
    boxes = tmp_path / "logs" / "boxes.json"

    with pytest.raises(InputError, match=r"b\.mkv: video decoding failed at frame 8"):
        anonymize_paths(Anonymizer(method="mask"), folder, tmp_path / "out", boxes_json=boxes, progress=False)

    assert not boxes.parent.exists()  # no boxes.json, no temporary file, no folder made for them
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [partial_path("b.mkv").name]


def test_image_and_video_entries_keep_the_schema(tmp_path):
    """One image and one short video (real BlazeFace): the document `json.load`s into the
    schema the docs give, and the summary returned has the same totals without the records."""
    image = cv2.resize(np.ascontiguousarray(astronaut()[0:320, 80:320]), (120, 160), interpolation=cv2.INTER_AREA)
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    _write(folder / "b.mkv", [np.ascontiguousarray(np.roll(image, i, axis=1)) for i in range(5)], codec="mjpeg")
    boxes = tmp_path / "boxes.json"

    summary = anonymize_paths(Anonymizer(method="blur8"), folder, tmp_path / "out", boxes_json=boxes,
                              progress=False)

    data = json.loads(boxes.read_text())
    assert (data["method"], data["enlarge"]) == ("blur8", 1.6)
    assert [(e["type"], len(e["frames"])) for e in data["inputs"]] == [("image", 1), ("video", 5)]
    for entry, returned in zip(data["inputs"], summary["inputs"]):
        assert returned == {k: v for k, v in entry.items() if k != "frames"}
        assert entry["frames_in"] == len(entry["frames"]) == entry["faces"]  # one face in each frame
        for i, record in enumerate(entry["frames"]):
            assert set(record) == FIELDS and record["frame"] == i and record["status"] == "ok"
            (detection,) = record["detections"]
            (region,) = record["regions"]
            assert len(detection) == 5 and len(region) == 4


def test_the_document_is_valid_json_for_any_number_of_frames(tmp_path):
    """Inputs of 0, 1 and 3 frames, names that need escaping: `json.load` gets back what went in."""
    path = tmp_path / "b.json"
    inputs = [("camera 0", "camera", 0), ('we"ird\\näme.mp4', "video", 1), ("c.png", "image", 3)]
    with boxes_log(path, "blur8", 1.6) as log:
        for name, kind, n in inputs:
            log.begin(input=name, type=kind)
            for i in range(n):
                log.frame({"frame": i, "status": "ok", "detections": [], "regions": []})
            log.end({"input": name, "type": kind, "output": None, "frames_in": n})
    data = json.loads(path.read_text())
    assert data == {"method": "blur8", "enlarge": 1.6, "inputs": [
        {"input": name, "type": kind, "output": None, "frames_in": n,
         "frames": [{"frame": i, "status": "ok", "detections": [], "regions": []} for i in range(n)]}
        for name, kind, n in inputs]}
