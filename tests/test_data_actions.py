"""Action data: fixture files in the published JHMDB / DALY layouts, CSV, synthetic frames."""

import os
import pickle

import cv2
import numpy as np
import pytest
import scipy.io

from privacy_anon.data import actions
from privacy_anon.errors import DataError

H, W = 24, 32  # fixture frames (JHMDB's are 240 x 320: same aspect)


def _write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _frame(value):
    image = np.zeros((H, W, 3), np.uint8)
    image[..., 0] = value
    return image


# ----------------------------------------------------------------------------- JHMDB


def _jhmdb_video(root, action, video, masks):
    for t, _ in enumerate(masks):
        _write_png(root / "Rename_Images" / action / video / f"{t + 1:05d}.png", _frame(10 * t))
    mat = root / "puppet_mask" / action / video / "puppet_mask.mat"
    mat.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(mat), {"part_mask": np.stack(masks, axis=-1).astype(np.uint8)})
    return mat


def _mask(x1, y1, x2, y2):
    m = np.zeros((H, W), np.uint8)
    m[y1:y2, x1:x2] = 1
    return m


@pytest.fixture
def jhmdb(tmp_path):
    root = tmp_path / "JHMDB"
    _jhmdb_video(root, "clap", "clap_a", [_mask(2, 3, 10, 20), _mask(4, 3, 12, 21)])
    _jhmdb_video(root, "clap", "clap_b", [_mask(0, 0, 5, 5)])
    _jhmdb_video(root, "wave", "wave_a", [_mask(10, 2, 30, 24), _mask(11, 2, 31, 24), _mask(1, 1, 2, 2)])
    (root / "splits").mkdir()
    (root / "splits" / "clap_test_split1.txt").write_text("clap_a.avi 1\nclap_b.avi 2\n")
    (root / "splits" / "wave_test_split1.txt").write_text("wave_a.avi 1 \n")
    return root


def test_jhmdb_split1_train_frames_boxes_and_resize(jhmdb):
    key = "Rename_Images/clap/clap_a/00002.png"
    data = actions.read_jhmdb(jhmdb, "train", face_boxes={key: [[4, 4, 8, 8]]})
    assert data.class_names == list(actions.JHMDB_CLASSES) and data.num_classes == 22
    assert [r.frame_key for r in data] == [
        "Rename_Images/clap/clap_a/00001.png", key, "Rename_Images/wave/wave_a/00001.png",
        "Rename_Images/wave/wave_a/00002.png", "Rename_Images/wave/wave_a/00003.png"]
    frame = actions.load_frame(data[1])
    scale = 340 / H
    assert frame["image"].shape == (340, round(W * scale), 3) and frame["image"].dtype == np.uint8
    np.testing.assert_allclose(frame["boxes"], [[4 * scale, 3 * scale, 12 * scale, 21 * scale]], rtol=1e-3)
    assert frame["classes"].tolist() == [actions.JHMDB_CLASSES.index("clap") + 1]
    np.testing.assert_allclose(frame["face_boxes"], [[4 * scale] * 2 + [8 * scale] * 2], rtol=1e-3)
    assert actions.load_frame(data[0])["face_boxes"].shape == (0, 4)
    assert frame["boxes"].dtype == np.float32 and frame["classes"].dtype == np.int32


def test_jhmdb_test_split(jhmdb):
    data = actions.read_jhmdb(jhmdb, "test")
    assert [r.frame_key for r in data] == ["Rename_Images/clap/clap_b/00001.png"]
    np.testing.assert_allclose(data[0].boxes, [[0, 0, 5, 5]])


def test_jhmdb_empty_mask_and_length_mismatch_warn_not_silent(jhmdb):
    _jhmdb_video(jhmdb, "wave", "wave_a", [_mask(1, 1, 5, 5), np.zeros((H, W), np.uint8)])
    _write_png(jhmdb / "Rename_Images/wave/wave_a/00003.png", _frame(0))  # 3 frames, 2 masks
    with pytest.warns(UserWarning) as record:
        data = actions.read_jhmdb(jhmdb, "train")
    messages = " | ".join(str(w.message) for w in record)
    assert "empty mask" in messages and "2 masks for 3 frames" in messages
    assert [r.frame_key for r in data if "wave" in r.frame_key] == ["Rename_Images/wave/wave_a/00001.png"]


def test_jhmdb_malformed_mat_is_one_line_error_naming_file(jhmdb):
    mat = jhmdb / "puppet_mask/clap/clap_a/puppet_mask.mat"
    mat.write_bytes(b"MATLAB 5.0 MAT-file, but truncated")
    with pytest.raises(DataError) as exc:
        actions.read_jhmdb(jhmdb, "train")
    assert str(mat) in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("contents, expected", [
    ({"other": np.zeros((H, W, 2))}, "no variable 'part_mask'"),
    ({"part_mask": np.zeros((H + 1, W, 2))}, f"but the frames are {W}x{H}"),
    ({"part_mask": np.zeros((H, W, 2, 2))}, "must be H x W x T"),
    ({"part_mask": np.array(["text"])}, "not a numeric array"),
])
def test_jhmdb_mat_with_wrong_contents(jhmdb, contents, expected):
    mat = jhmdb / "puppet_mask/clap/clap_a/puppet_mask.mat"
    scipy.io.savemat(str(mat), contents)
    with pytest.raises(DataError, match=expected) as exc:
        actions.read_jhmdb(jhmdb, "train")
    assert str(mat) in str(exc.value)


def test_jhmdb_bad_split_line_names_file_and_line(jhmdb):
    split = jhmdb / "splits/wave_test_split1.txt"
    split.write_text("wave_a.avi 1\nwave_b.avi train\n")
    with pytest.raises(DataError, match="line 2") as exc:
        actions.read_jhmdb(jhmdb, "train")
    assert str(split) in str(exc.value)


def test_jhmdb_missing_layout(tmp_path):
    with pytest.raises(DataError, match="test_split1"):
        actions.read_jhmdb(tmp_path)


# ----------------------------------------------------------------------------- DALY


def _daly_annotation():
    def keyframe(number, box):
        return {"frameNumber": number, "time": number / 25.0, "boundingBox": np.array([box]),
                "objects": np.zeros((0, 7)), "pose": np.zeros((0, 5))}

    flags = {"isSmall": False, "isReflection": False, "isShotcut": False, "isZoom": False,
             "isAmbiguous": False, "isOccluded": False, "isOutsideFOV": False}
    return {
        "labels": ["ApplyingMakeUpOnLips", "BrushingTeeth", "Drinking"],
        "objectList": ["cup"], "joints": ["head"],
        "splits": {0: ["vidB.mp4"]},
        "metadata": {"vidA.mp4": {"duration": 1.0, "nbframes_ffmpeg": 8, "fps": 25.0},
                     "vidB.mp4": {"duration": 1.0, "nbframes_ffmpeg": 8, "fps": 25.0}},
        "annot": {
            "vidA.mp4": {"suggestedClass": "Drinking", "annot": {
                "Drinking": [{"beginTime": 0.0, "endTime": 0.3, "flags": flags,
                              "keyframes": [keyframe(2, [0.1, 0.2, 0.5, 0.9]),
                                            keyframe(5, [0.0, 0.0, 1.0, 1.0])]}],
                "BrushingTeeth": [{"beginTime": 0.0, "endTime": 0.2, "flags": dict(flags, isAmbiguous=True),
                                   "keyframes": [keyframe(2, [0.5, 0.5, 0.75, 1.0])]}]}},
            "vidB.mp4": {"suggestedClass": "ApplyingMakeUpOnLips", "annot": {
                "ApplyingMakeUpOnLips": [{"beginTime": 0.0, "endTime": 0.2, "flags": flags,
                                          "keyframes": [keyframe(3, [0.25, 0.25, 0.75, 0.75])]}]}},
        },
    }


@pytest.fixture
def daly(tmp_path):
    path = tmp_path / "daly1.1.0.pkl"
    path.write_bytes(pickle.dumps(_daly_annotation(), protocol=2))
    frames = tmp_path / "frames"
    for video, number in (("vidA.mp4", 2), ("vidA.mp4", 5), ("vidB.mp4", 3)):
        target = actions.daly_frame_path(frames, video, number)
        target.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(target), np.full((40, 80, 3), 10 * number, np.uint8))
    return path, frames


def test_daly_train_keyframes_merge_instances_and_resize(daly):
    path, frames = daly
    data = actions.read_daly(path, frames, "train", face_boxes={"vidA/000005.jpg": [[8, 4, 16, 12]]})
    assert data.class_names == ["ApplyingMakeUpOnLips", "BrushingTeeth", "Drinking"]
    assert [r.frame_key for r in data] == ["vidA/000002.jpg", "vidA/000005.jpg"]
    np.testing.assert_allclose(data[0].boxes, [[8, 8, 40, 36], [40, 20, 60, 40]])
    assert data[0].classes.tolist() == [3, 2]
    frame = actions.load_frame(data[1])
    assert frame["image"].shape == (600, 800, 3)
    np.testing.assert_allclose(frame["boxes"], [[0, 0, 800, 600]])
    np.testing.assert_allclose(frame["face_boxes"], [[80, 60, 160, 180]])


def test_daly_test_split_and_flag_filter(daly):
    path, frames = daly
    assert [r.frame_key for r in actions.read_daly(path, frames, "test")] == ["vidB/000003.jpg"]
    train = actions.read_daly(path, frames, "train", exclude_flags=("isAmbiguous",))
    assert train[0].classes.tolist() == [3]


@pytest.mark.parametrize("protocol", [4, 5])
def test_daly_pickle_protocols_with_numpy_arrays(tmp_path, protocol):
    path = tmp_path / "a.pkl"
    path.write_bytes(pickle.dumps(_daly_annotation(), protocol=protocol))
    data = actions.load_daly_annotations(path)
    box = data["annot"]["vidA.mp4"]["annot"]["Drinking"][0]["keyframes"][0]["boundingBox"]
    np.testing.assert_allclose(box, [[0.1, 0.2, 0.5, 0.9]])


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_daly_pickle_with_reduce_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    annotation = _daly_annotation()
    annotation["metadata"]["vidA.mp4"]["fps"] = _Payload(marker)
    path = tmp_path / "daly1.1.0.pkl"
    path.write_bytes(pickle.dumps(annotation, protocol=2))
    with pytest.raises(DataError, match="refuses to load") as exc:
        actions.load_daly_annotations(path)
    assert str(path) in str(exc.value) and "system" in str(exc.value) and "\n" not in str(exc.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    pickle.dumps(np.array([1, "x"], dtype=object), protocol=2),  # object arrays hide objects
    b"\x80\x02cbuiltins\neval\nq\x00X\x04\x00\x00\x001+1q\x01\x85q\x02Rq\x03.",
    b"not a pickle",
    pickle.dumps({"labels": ["a"]}, protocol=2)[:-5],  # truncated
])
def test_daly_unsafe_or_broken_pickles(tmp_path, payload):
    path = tmp_path / "bad.pkl"
    path.write_bytes(payload)
    with pytest.raises(DataError) as exc:
        actions.load_daly_annotations(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_daly_bad_box_names_the_entry(tmp_path):
    annotation = _daly_annotation()
    annotation["annot"]["vidB.mp4"]["annot"]["ApplyingMakeUpOnLips"][0]["keyframes"][0]["boundingBox"] = \
        np.array([[0.5, 0.2, 1.4, 0.9]])
    path = tmp_path / "daly.pkl"
    path.write_bytes(pickle.dumps(annotation, protocol=2))
    with pytest.raises(DataError, match=r"\['vidB.mp4'\].*\['keyframes'\]\[0\]: boundingBox"):
        actions.load_daly_annotations(path)


def test_daly_missing_frame_points_to_extraction(daly):
    path, frames = daly
    os.remove(actions.daly_frame_path(frames, "vidA.mp4", 5))
    with pytest.raises(DataError, match="extract_daly_frames"):
        actions.read_daly(path, frames, "train")


def test_extract_daly_frames_reads_the_annotated_frames(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    annotation = _daly_annotation()
    for name in ("vidA.mp4", "vidB.mp4"):
        writer = cv2.VideoWriter(str(videos / name), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
        if not writer.isOpened():
            pytest.skip("OpenCV has no mp4v encoder here")
        for i in range(8):
            writer.write(np.full((48, 64, 3), 25 * i, np.uint8))  # brightness = frame index
        writer.release()
    path = tmp_path / "daly.pkl"
    path.write_bytes(pickle.dumps(annotation, protocol=2))
    frames = tmp_path / "frames"
    assert actions.extract_daly_frames(path, videos, frames) == 3
    assert actions.extract_daly_frames(path, videos, frames) == 0  # already there
    for video, number in (("vidA.mp4", 2), ("vidA.mp4", 5), ("vidB.mp4", 3)):
        image = cv2.imread(str(actions.daly_frame_path(frames, video, number)))
        assert abs(float(image.mean()) - 25 * (number - 1)) < 6
    data = actions.read_daly(path, frames, "all")
    assert len(data) == 3 and data[0].size == (48, 64)


def test_extract_daly_frames_missing_video(daly, tmp_path):
    path, _ = daly
    with pytest.raises(DataError, match="vidA.mp4: video is missing"):
        actions.extract_daly_frames(path, tmp_path / "none", tmp_path / "out")


# ----------------------------------------------------------------------------- CSV


@pytest.fixture
def csv_set(tmp_path):
    _write_png(tmp_path / "img" / "a.png", _frame(50))
    _write_png(tmp_path / "img" / "b.png", _frame(90))
    path = tmp_path / "boxes.csv"
    path.write_text("frame_path,x1,y1,x2,y2,action\n"
                    "img/a.png,1,2,10,20,wave\n"
                    "img/b.png,0,0,32,24,clap\n"
                    "img/a.png,5,5,9,9,clap\n")
    return path


def test_csv_groups_rows_per_frame_and_fits_size(csv_set):
    data = actions.read_csv(csv_set, image_size=(48, 48), face_boxes={"img/b.png": [[1, 1, 5, 5]]})
    assert data.class_names == ["clap", "wave"]
    assert [r.frame_key for r in data] == ["img/a.png", "img/b.png"]
    assert data[0].classes.tolist() == [2, 1]
    frame = actions.load_frame(data[1])
    assert frame["image"].shape == (36, 48, 3)  # 24 x 32 fitted in 48 x 48
    np.testing.assert_allclose(frame["boxes"], [[0, 0, 48, 36]])
    np.testing.assert_allclose(frame["face_boxes"], [[1.5, 1.5, 7.5, 7.5]])


@pytest.mark.parametrize("row, expected", [
    ("img/a.png,1,2,40,20,wave", r"line 3: box \[1, 2, 40, 20\] lies outside the 32x24 frame"),
    ("img/a.png,-1,2,10,20,wave", "line 3: box .* lies outside"),
    ("img/a.png,10,2,10,20,wave", "line 3: box .* is empty"),
    ("img/a.png,1,2,x,20,wave", "line 3: box .* is not 4 numbers"),
    ("img/a.png,1,2,10,20", "line 3: expected 6 fields"),
    ("img/missing.png,1,2,10,20,wave", "line 3: image .*missing.png does not exist"),
])
def test_csv_bad_rows_name_file_and_line(tmp_path, csv_set, row, expected):
    path = tmp_path / "bad.csv"
    path.write_text("frame_path,x1,y1,x2,y2,action\nimg/b.png,0,0,32,24,clap\n" + row + "\n")
    with pytest.raises(DataError, match=expected) as exc:
        actions.read_csv(path, image_size=(48, 48))
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_csv_header_and_unknown_class(tmp_path, csv_set):
    with pytest.raises(DataError, match="line 1: header"):
        bad = tmp_path / "h.csv"
        bad.write_text("path,x1,y1,x2,y2,label\n")
        actions.read_csv(bad, (48, 48))
    with pytest.raises(DataError, match="line 2: action 'wave' is not one of"):
        actions.read_csv(csv_set, (48, 48), class_names=["clap"])


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_actions_are_deterministic_and_consistent():
    a = actions.synthetic_actions(12, 96, num_classes=4, seed=3)
    b = actions.synthetic_actions(12, 96, num_classes=4, seed=3)
    c = actions.synthetic_actions(12, 96, num_classes=4, seed=4)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert not np.array_equal(a[0].image, c[0].image)
    assert a.class_names == ["phoning", "arms_out", "drinking", "waving"]
    assert [int(r.classes[0]) for r in a] == [1, 2, 3, 4] * 3
    for record in a:
        frame = actions.load_frame(record)
        assert frame["image"].shape == (96, 96, 3)
        (x1, y1, x2, y2), = frame["boxes"]
        (f1, g1, f2, g2), = frame["face_boxes"]
        assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96
        assert y2 - y1 >= 0.3 * 96  # a person, not a speck
        assert x1 - 1 <= f1 < f2 <= x2 + 1 and y1 - 1 <= g1 < g2 <= y2 + 1  # face inside person


def test_synthetic_actions_differ_by_pose():
    """Arms out is wider than tall-ish standing; waving reaches above the head."""
    data = actions.synthetic_actions(50, 128, num_classes=5, seed=0)
    aspect = {c: [] for c in range(1, 6)}
    above = {c: [] for c in range(1, 6)}
    for r in data:
        (x1, y1, x2, y2), = r.boxes
        c = int(r.classes[0])
        aspect[c].append((x2 - x1) / (y2 - y1))
        above[c].append((r.face_boxes[0, 1] - y1) / (y2 - y1))
    assert min(aspect[2]) > max(aspect[5])  # arms out vs standing
    assert min(above[4]) > max(above[5])  # waving hand above the head


# ----------------------------------------------------------------------------- tf.data


def test_make_dataset_batches_letterboxed_padded_frames(jhmdb):
    data = actions.read_jhmdb(jhmdb, "train", face_boxes={
        "Rename_Images/clap/clap_a/00001.png": [[1, 1, 3, 3], [4, 4, 6, 6]]})
    ds = actions.make_dataset(data, batch_size=2, image_size=(64, 96), max_boxes=3, max_faces=2,
                              shuffle=False)
    batches = list(ds)
    assert len(batches) == 2  # 5 frames, last one dropped
    batch = batches[0]
    assert batch["images"].shape == (2, 64, 96, 3) and batch["images"].dtype.name == "float32"
    assert -1.0 <= float(batch["images"].numpy().min()) and float(batch["images"].numpy().max()) <= 1.0
    scale = 64 / H  # 24 x 32 -> 340 x 453 -> fitted in 64 x 96: 64 x 85
    np.testing.assert_allclose(batch["boxes"][0].numpy(),
                               [[2 * scale, 3 * scale, 10 * scale, 20 * scale]] + [[-1] * 4] * 2, rtol=0.02)
    assert batch["classes"][0].numpy().tolist() == [3, -1, -1]
    assert batch["num_faces"].numpy().tolist() == [2, 0]
    np.testing.assert_allclose(batch["face_boxes"][0, 1].numpy(), np.float32([4, 4, 6, 6]) * scale, rtol=0.02)
    assert batch["face_boxes"][1].numpy().sum() == 0
    assert np.allclose(batch["images"][0, :, 90:].numpy(), 128 / 127.5 - 1, atol=1e-6)  # grey padding


def test_make_dataset_shuffle_is_seeded_and_limits_are_errors():
    data = actions.synthetic_actions(8, 64, num_classes=2, seed=0)

    def order(seed):
        ds = actions.make_dataset(data, 8, (64, 64), shuffle=True, seed=seed)
        return next(iter(ds))["boxes"].numpy()

    np.testing.assert_array_equal(order(1), order(1))
    assert not np.array_equal(order(1), order(2))
    with pytest.raises(DataError, match="synthetic/000000: 1 face boxes, more than max_faces=0"):
        actions.make_dataset(data, 2, (64, 64), max_faces=0)
