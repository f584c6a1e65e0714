import json
import os

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from privacy_anon import cli
from privacy_anon.data.face_boxes import (
    FaceBoxes,
    detect_faces_in_dataset,
    list_dataset,
    load_face_boxes,
    primary_face,
    video_frame_key,
)
from privacy_anon.errors import DataError, InputError
from privacy_anon.faces.detector import Face, FaceDetector


class CountingDetector:
    """The real BlazeFace detector (no MTCNN), counting calls; optionally interrupted."""

    def __init__(self, detector, stop_after=None):
        self.detector = detector
        self.calls = 0
        self.stop_after = stop_after

    def settings(self):
        return self.detector.settings()

    def __call__(self, image):
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt
        self.calls += 1
        return self.detector(image)


@pytest.fixture(scope="module")
def blaze():
    return FaceDetector(use_mtcnn=False)


def _write(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _face(scale=0.5, shift=0):
    image = cv2.resize(skdata.astronaut(), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return np.roll(image, shift, axis=1)


@pytest.fixture()
def identity_root(tmp_path):
    """Folder-per-identity: two 'people', four face photos and one face-free photo."""
    root = tmp_path / "ids"
    _write(root / "anna" / "1.jpg", _face(0.5))
    _write(root / "anna" / "2.png", _face(0.6, 20))
    _write(root / "anna" / "coffee.jpg", skdata.coffee())
    _write(root / "bob" / "1.jpg", _face(0.45, -10))
    _write(root / "bob" / "2.jpg", _face(0.7))
    return root


def test_folders_cache_and_landmarks_csv(identity_root, tmp_path, blaze):
    from privacy_anon.data.faces import read_landmarks_csv

    cache = tmp_path / "cache"
    lines = []
    summary = detect_faces_in_dataset(identity_root, "folders", cache, blaze, progress=False, log=lines.append)
    assert summary["frames"] == 5 and summary["with_face"] == 4 and summary["without_face"] == 1
    assert (cache / "no_face.txt").read_text().split() == ["anna/coffee.jpg"]
    assert any("without" in line for line in lines)
    boxes = load_face_boxes(cache, identity_root)
    assert isinstance(boxes, FaceBoxes) and sorted(boxes) == sorted(
        ["anna/1.jpg", "anna/2.png", "anna/coffee.jpg", "bob/1.jpg", "bob/2.jpg"])
    assert boxes["anna/coffee.jpg"].shape == (0, 4)
    assert boxes["bob/2.jpg"].shape == (1, 4) and boxes["bob/2.jpg"].dtype == np.float32
    assert boxes.faces("bob/2.jpg")[0].keypoints.shape == (6, 2)
    # the CSV the identity loader reads: one row per image with a face, header as documented
    csv_path = cache / "landmarks.csv"
    assert csv_path.read_text().splitlines()[0] == "path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5"
    marks = read_landmarks_csv(csv_path)
    assert sorted(marks) == ["anna/1.jpg", "anna/2.png", "bob/1.jpg", "bob/2.jpg"]
    box = boxes["bob/2.jpg"][0]
    eyes = marks["bob/2.jpg"][:2]
    assert np.all((eyes[:, 0] > box[0]) & (eyes[:, 0] < box[2]) & (eyes[:, 1] > box[1]) & (eyes[:, 1] < box[3]))
    assert summary["estimated_landmarks"] == 4  # no MTCNN: estimated from BlazeFace keypoints


def test_resume_after_interruption(identity_root, tmp_path, blaze):
    cache = tmp_path / "cache"
    first = CountingDetector(blaze, stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        detect_faces_in_dataset(identity_root, "folders", cache, first, progress=False, flush_seconds=1e9)
    with pytest.raises(DataError, match="incomplete.*privacy-anon detect-faces"):
        load_face_boxes(cache, identity_root)
    second = CountingDetector(blaze)
    summary = detect_faces_in_dataset(identity_root, "folders", cache, second, progress=False, log=lambda s: None)
    assert second.calls == 3 and summary["skipped"] == 2  # the two done before are not redone
    third = CountingDetector(blaze)
    detect_faces_in_dataset(identity_root, "folders", cache, third, progress=False, log=lambda s: None)
    assert third.calls == 0
    assert len(load_face_boxes(cache, identity_root)) == 5


def test_stale_and_missing_cache(identity_root, tmp_path, blaze):
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="missing: run `privacy-anon detect-faces"):
        load_face_boxes(cache, identity_root)
    detect_faces_in_dataset(identity_root, "folders", cache, blaze, progress=False, log=lambda s: None)
    load_face_boxes(cache, identity_root)

    # touched (or copied without keeping times): same bytes, so the same faces
    target = identity_root / "bob" / "1.jpg"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert len(load_face_boxes(cache, identity_root)) == 5
    untouched = CountingDetector(blaze)
    detect_faces_in_dataset(identity_root, "folders", cache, untouched, progress=False,
                            log=lambda s: None)
    assert untouched.calls == 0

    _write(target, _face(0.45, 30))  # new content at the same path
    with pytest.raises(DataError, match=r"stale \(bob/1.jpg changed.*run `privacy-anon detect-faces .* --format folders"):
        load_face_boxes(cache, identity_root)
    counting = CountingDetector(blaze)
    detect_faces_in_dataset(identity_root, "folders", cache, counting, progress=False, log=lambda s: None)
    assert counting.calls == 1  # only the changed file
    load_face_boxes(cache, identity_root)

    _write(identity_root / "carl" / "1.jpg", _face(0.5))
    with pytest.raises(DataError, match="stale"):
        load_face_boxes(cache, identity_root)
    detect_faces_in_dataset(identity_root, "folders", cache, blaze, progress=False, log=lambda s: None)
    (identity_root / "anna" / "2.png").unlink()
    with pytest.raises(DataError, match="anna/2.png removed"):
        load_face_boxes(cache, identity_root)


def test_other_settings_or_dataset_refused(identity_root, tmp_path, blaze):
    cache = tmp_path / "cache"
    detect_faces_in_dataset(identity_root, "folders", cache, blaze, progress=False, log=lambda s: None)
    from privacy_anon.config import FaceDetectionConfig

    other = FaceDetector(FaceDetectionConfig(blazeface_only_threshold=0.7), use_mtcnn=False)
    with pytest.raises(InputError, match="other detector settings"):
        detect_faces_in_dataset(identity_root, "folders", cache, other, progress=False)
    elsewhere = tmp_path / "elsewhere"
    _write(elsewhere / "x" / "1.jpg", _face())
    with pytest.raises(InputError, match="not"):
        detect_faces_in_dataset(elsewhere, "folders", cache, blaze, progress=False)


def test_jhmdb_daly_csv_layouts_and_keys(tmp_path, blaze):
    jhmdb = tmp_path / "jhmdb"
    for i in range(1, 3):
        _write(jhmdb / "Rename_Images" / "wave" / "v1" / f"{i:05d}.png", _face(0.4, 10 * i))
    keys = [f for g in list_dataset(jhmdb, "jhmdb").groups for f in g.files]
    assert keys == ["Rename_Images/wave/v1/00001.png", "Rename_Images/wave/v1/00002.png"]
    with pytest.raises(DataError, match="Rename_Images"):
        list_dataset(tmp_path, "jhmdb")

    daly = tmp_path / "daly"
    _write(daly / "abc" / "000012.jpg", _face(0.5))
    detect_faces_in_dataset(daly, "daly", tmp_path / "c_daly", blaze, progress=False, log=lambda s: None)
    assert load_face_boxes(tmp_path / "c_daly", daly)["abc/000012.jpg"].shape == (1, 4)

    frames = tmp_path / "custom"
    _write(frames / "clips" / "a.jpg", _face(0.5))
    _write(frames / "b.jpg", skdata.chelsea())
    csv_path = frames / "actions.csv"
    csv_path.write_text("frame_path,x1,y1,x2,y2,action\nclips/a.jpg,0,0,10,10,wave\n"
                        "clips/a.jpg,5,5,20,20,run\nb.jpg,0,0,5,5,wave\n")
    summary = detect_faces_in_dataset(csv_path, "csv", tmp_path / "c_csv", blaze, progress=False, log=lambda s: None)
    assert summary["frames"] == 2
    boxes = load_face_boxes(tmp_path / "c_csv", csv_path)
    assert sorted(boxes) == ["b.jpg", "clips/a.jpg"]
    assert boxes["clips/a.jpg"].shape == (1, 4) and boxes["b.jpg"].shape == (0, 4)
    # the action reader takes the cache as its face_boxes mapping
    from privacy_anon.data.actions import read_csv

    actions = read_csv(csv_path, (128, 128), face_boxes=boxes)
    assert any(len(r.face_boxes) == 1 for r in actions)


def _write_video(path, frames, fps=10):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps,
                             (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def test_video_cache_resumes_mid_video(tmp_path, blaze):
    video = tmp_path / "clip.avi"
    frames = [cv2.resize(_face(0.5, 8 * i), (320, 240)) for i in range(6)]
    _write_video(video, frames)
    cache = tmp_path / "cache"
    first = CountingDetector(blaze, stop_after=4)
    with pytest.raises(KeyboardInterrupt):
        detect_faces_in_dataset(video, "video", cache, first, progress=False, flush_seconds=0)
    second = CountingDetector(blaze)
    detect_faces_in_dataset(video, "video", cache, second, progress=False, log=lambda s: None)
    assert second.calls == 2
    boxes = load_face_boxes(cache, video)
    assert sorted(boxes, key=lambda k: int(k.split("#")[1])) == [video_frame_key("clip.avi", i) for i in range(6)]
    assert all(boxes[video_frame_key("clip.avi", i)].shape == (1, 4) for i in range(6))
    group = json.loads(next((cache / "groups").glob("*.json")).read_text())
    assert group["frames_done"] == 6 and group["complete"]


def test_unreadable_image_names_the_file(identity_root, tmp_path, blaze):
    bad = identity_root / "bob" / "3.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match="3.jpg: cannot read image"):
        detect_faces_in_dataset(identity_root, "folders", tmp_path / "cache", blaze, progress=False)


def test_primary_face_prefers_large_central():
    small = Face(np.float32([0, 0, 20, 20]), 0.99)
    big = Face(np.float32([40, 40, 120, 120]), 0.7)
    assert primary_face([small, big], 160, 160) is big
    assert primary_face([], 10, 10) is None


def test_cli_detect_faces(identity_root, tmp_path, capsys):
    out = tmp_path / "cache"
    marks = tmp_path / "marks.csv"
    code = cli.main(["detect-faces", str(identity_root), "--format", "folders", "--out", str(out),
                     "--no-mtcnn", "--threads", "1", "--landmarks-csv", str(marks)])
    assert code == 0
    assert marks.read_text().count("\n") == 5  # header + 4 faces
    assert "1 without" in capsys.readouterr().out

    code = cli.main(["detect-faces", str(tmp_path / "nope"), "--format", "folders", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "nope" in err

    (identity_root / "bob" / "broken.png").write_bytes(b"")
    code = cli.main(["detect-faces", str(identity_root), "--format", "folders", "--out", str(out), "--no-mtcnn"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "broken.png" in err
