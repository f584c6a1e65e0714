import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from privacy_anon.config import FaceDetectionConfig
from privacy_anon.errors import InputError
from privacy_anon.faces import BlazeFace, Face, FaceDetector, blazeface_model_path, detect_faces
from privacy_anon.faces.boxes import iou_matrix
from privacy_anon.faces.detector import as_rgb_uint8, landmarks_from_keypoints

# Measured once with the default detector and checked by eye on a crop: forehead to chin,
# ear to ear, in skimage.data.astronaut() (512 x 512).
ASTRONAUT_FACE = np.array([172, 69, 279, 175], np.float32)


def panned_astronaut(n=100, width=640, height=480, min_face=40.0, max_face=300.0):
    """Frames of the astronaut photo panned and scaled so her face grows from 40 to 300 px.

    Returns the frames (RGB uint8) and the face box of each frame.
    """
    photo = skdata.astronaut()
    centre = (ASTRONAUT_FACE[:2] + ASTRONAUT_FACE[2:]) / 2
    half = (ASTRONAUT_FACE[2:] - ASTRONAUT_FACE[:2]) / 2
    frames, boxes = [], []
    for i in range(n):
        t = i / (n - 1)
        scale = min_face * (max_face / min_face) ** t / (2 * half[0])
        cx = width * (0.15 + 0.7 * (0.5 - 0.5 * np.cos(3 * np.pi * t)))  # back and forth
        cy = height * (0.3 + 0.4 * t)
        cx = float(np.clip(cx, half[0] * scale + 2, width - half[0] * scale - 2))
        cy = float(np.clip(cy, half[1] * scale + 2, height - half[1] * scale - 2))
        if scale < 1:  # shrink with area averaging first, as a camera would
            small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            matrix = np.float32([[1, 0, cx - scale * centre[0]], [0, 1, cy - scale * centre[1]]])
            frame = cv2.warpAffine(small, matrix, (width, height), borderValue=(90, 90, 90))
        else:
            matrix = np.float32([[scale, 0, cx - scale * centre[0]], [0, scale, cy - scale * centre[1]]])
            frame = cv2.warpAffine(photo, matrix, (width, height), borderValue=(90, 90, 90))
        frames.append(frame)
        boxes.append(np.array([cx - half[0] * scale, cy - half[1] * scale,
                               cx + half[0] * scale, cy + half[1] * scale], np.float32))
    return frames, boxes


@pytest.fixture(scope="module")
def blaze_detector():
    return FaceDetector(use_mtcnn=False)


@pytest.fixture(scope="module")
def mtcnn_detector():
    return FaceDetector(use_mtcnn=True)


def _best_iou(faces, box):
    if not faces:
        return 0.0
    return float(iou_matrix(box[None], np.stack([f.box for f in faces]))[0].max())


def test_model_path_and_explicit_blazeface():
    path = blazeface_model_path()
    assert os.path.isfile(path) and path.endswith("face_detection_full_range.tflite")
    boxes, scores, keypoints = BlazeFace(model_path=path, num_threads=1)(skdata.astronaut())
    assert boxes.shape == (1, 4) and scores.shape == (1,) and keypoints.shape == (1, 6, 2)
    assert iou_matrix(boxes, ASTRONAUT_FACE[None])[0, 0] > 0.5


def test_blazeface_rejects_other_models(tmp_path):
    with pytest.raises(InputError, match="not found"):
        BlazeFace(model_path=str(tmp_path / "missing.tflite"))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model")
    with pytest.raises(InputError, match="junk.tflite"):
        BlazeFace(model_path=str(junk))
    short_range = os.path.join(os.path.dirname(blazeface_model_path()), "face_detection_short_range.tflite")
    with pytest.raises(InputError, match="not BlazeFace full-range"):
        BlazeFace(model_path=short_range)


def test_astronaut_found_blazeface_only(blaze_detector):
    faces = blaze_detector(skdata.astronaut())
    assert len(faces) == 1
    face = faces[0]
    assert face.box.dtype == np.float32 and face.box.shape == (4,)
    assert iou_matrix(face.box[None], ASTRONAUT_FACE[None])[0, 0] > 0.5
    assert 0.8 < face.score <= 1.0
    assert face.landmarks is None  # landmarks come from MTCNN
    # BlazeFace keypoints: the eye on the image's left comes first
    assert face.keypoints.shape == (6, 2) and face.keypoints[0, 0] < face.keypoints[1, 0]


def test_astronaut_found_with_landmarks(mtcnn_detector):
    faces = mtcnn_detector(skdata.astronaut())
    assert len(faces) == 1
    face = faces[0]
    assert iou_matrix(face.box[None], ASTRONAUT_FACE[None])[0, 0] > 0.5
    marks = face.landmarks
    assert marks.shape == (5, 2) and marks.dtype == np.float32
    x1, y1, x2, y2 = face.box
    assert np.all((marks[:, 0] > x1) & (marks[:, 0] < x2) & (marks[:, 1] > y1) & (marks[:, 1] < y2))
    # MTCNN order: eyes above nose above mouth; image-left before image-right
    assert marks[0, 0] < marks[1, 0] and marks[3, 0] < marks[4, 0]
    assert max(marks[0, 1], marks[1, 1]) < marks[2, 1] < min(marks[3, 1], marks[4, 1])


def test_one_call_entry_point(mtcnn_detector):
    faces = detect_faces(skdata.astronaut())
    assert len(faces) == 1 and faces[0].landmarks is not None
    assert isinstance(faces[0], Face) and isinstance(faces[0].score, float)


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_no_face_in_face_free_photos(name, blaze_detector, mtcnn_detector):
    image = getattr(skdata, name)()
    assert blaze_detector(image) == []
    assert mtcnn_detector(image) == []


def test_panned_astronaut_video_blazeface(blaze_detector):
    frames, boxes = panned_astronaut()
    found = sum(_best_iou(blaze_detector(f), b) > 0.4 for f, b in zip(frames, boxes))
    assert found >= 98, f"face found in {found}/100 frames"


def test_panned_astronaut_video_with_mtcnn(mtcnn_detector):
    frames, boxes = panned_astronaut()
    hits = [[f for f in mtcnn_detector(frame) if _best_iou([f], box) > 0.4] for frame, box in zip(frames, boxes)]
    assert sum(bool(h) for h in hits) >= 98
    assert sum(any(f.landmarks is not None for f in h) for h in hits) >= 95


def test_grayscale_and_rgba_are_converted(blaze_detector):
    rgb = skdata.astronaut()
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    for image in (gray, gray[:, :, None], np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])):
        faces = blaze_detector(image)
        assert _best_iou(faces, ASTRONAUT_FACE) > 0.5


@pytest.mark.parametrize("image, message", [
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((10, 0), np.uint8), "empty"),
    (np.zeros((8, 8, 3), np.float32), "float32"),
    (np.zeros((8, 8, 2), np.uint8), "channels"),
    (np.zeros((2, 8, 8, 3), np.uint8), "shape"),
    (None, "None"),
])
def test_bad_images_raise_input_error(image, message, blaze_detector):
    with pytest.raises(InputError, match=message):
        blaze_detector(image)


def test_odd_frame_sizes_do_not_crash(blaze_detector):
    for shape in [(1, 1, 3), (5, 700, 3), (700, 3, 3), (1080, 1920, 3)]:
        assert blaze_detector(np.full(shape, 128, np.uint8)) == []
    assert as_rgb_uint8(np.zeros((2, 3, 4), np.uint8)).shape == (2, 3, 3)


def test_windows_cover_the_frame():
    detector = BlazeFace(min_face_size=40, zoom_out=2.0)
    windows = detector.windows(640, 480)
    assert windows[:2] == [(0, 0, 640, 480, 640), (0, 0, 640, 480, 1280)]  # letterbox, zoomed out
    covered = np.zeros((480, 640), bool)
    for x0, y0, w, h, side in windows[2:]:
        assert w <= 320 and h <= 320 and x0 + w <= 640 and y0 + h <= 480 and side == max(w, h)
        covered[y0:y0 + h, x0:x0 + w] = True
    assert covered.all()
    assert BlazeFace(min_face_size=0, zoom_out=0).windows(640, 480) == [(0, 0, 640, 480, 640)]


def test_zoomed_out_pass_finds_a_close_up():
    # the face fills the frame: the plain letterbox pass scores it low, the zoomed-out one finds it
    x1, y1, x2, y2 = ASTRONAUT_FACE.astype(int)
    close_up = cv2.resize(skdata.astronaut()[y1 - 10:y2 + 10, x1 - 5:x2 + 5], (240, 260))
    assert FaceDetector(use_mtcnn=False)(close_up)
    assert not FaceDetector(FaceDetectionConfig(zoom_out=0), use_mtcnn=False)(close_up)


def test_thresholds_from_config():
    strict = FaceDetector(FaceDetectionConfig(blazeface_only_threshold=0.99), use_mtcnn=False)
    assert strict(skdata.astronaut()) == []
    with pytest.raises(ValueError, match="0.9"):
        FaceDetector(FaceDetectionConfig(verify_threshold=0.9, keep_threshold=0.8), use_mtcnn=False)


def test_max_faces():
    image = np.hstack([skdata.astronaut(), skdata.astronaut()])
    assert len(FaceDetector(use_mtcnn=False)(image)) == 2
    assert len(FaceDetector(FaceDetectionConfig(max_faces=1), use_mtcnn=False)(image)) == 1


def test_face_dict_round_trip_and_landmark_estimate(blaze_detector):
    face = blaze_detector(skdata.astronaut())[0]
    again = Face.from_dict(face.to_dict())
    np.testing.assert_allclose(again.box, face.box, atol=0.01)
    assert again.landmarks is None and again.keypoints.shape == (6, 2)
    estimate = landmarks_from_keypoints(face.keypoints)
    assert estimate.shape == (5, 2)
    np.testing.assert_allclose(estimate[:3], face.keypoints[:3])
    assert estimate[3, 0] < face.keypoints[3, 0] < estimate[4, 0]


def test_blazeface_path_works_without_tensorflow():
    code = textwrap.dedent("""
        import sys
        sys.modules["tensorflow"] = None  # any `import tensorflow` now raises ImportError
        import numpy as np
        from skimage import data
        import privacy_anon.faces.detector as det
        faces = det.FaceDetector(use_mtcnn=False)(data.astronaut())
        assert len(faces) == 1, faces
        try:
            det.FaceDetector(use_mtcnn=True)(data.astronaut())
        except ImportError as exc:
            assert "use_mtcnn=False" in str(exc), exc
        else:
            raise AssertionError("MTCNN ran without TensorFlow")
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def _faces_on_tile_seams(width=987, height=557, side=320):
    """The astronaut's face (~50-60 px) pasted over the coffee photo across the seams of the
    `side`-px tiles (and one near the far corner): where a mis-placed tile cuts or moves it."""
    photo = skdata.astronaut()
    frame = cv2.resize(skdata.coffee(), (width, height), interpolation=cv2.INTER_AREA)
    cx, cy = (ASTRONAUT_FACE[:2] + ASTRONAUT_FACE[2:]) / 2
    boxes = []
    for x, y, face in ((side // 2, side // 2, 56), (side, side // 2 + 40, 50), (int(1.5 * side), 250, 60),
                       (width - 70, height - 70, 54), (side // 2 + 30, height - 100, 52)):
        scale = face / (ASTRONAUT_FACE[2] - ASTRONAUT_FACE[0])
        small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        r = int(0.9 * face)  # face with some hair and neck around it
        px, py = int(cx * scale), int(cy * scale)
        patch = small[max(0, py - r):py + r, max(0, px - r):px + r]
        y0, x0 = y - (py - max(0, py - r)), x - (px - max(0, px - r))
        frame[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]] = patch[:height - y0, :width - x0]
        boxes.append(np.array([x - face / 2, y - face / 2, x + face / 2, y + face / 2], np.float32))
    return frame, np.stack(boxes)


def _reference_window(interpreter, frame, x0, y0, w, h, side, threshold):
    """The plain way, written out here: crop the window, resize it, letterbox, run, decode."""
    crop = frame[y0:y0 + h, x0:x0 + w]
    scale = 192 / max(side, w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(crop, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.full((1, 192, 192, 3), -1.0, np.float32)
    off_x, off_y = (192 - new_w) // 2, (192 - new_h) // 2
    canvas[0, off_y:off_y + new_h, off_x:off_x + new_w] = small / 127.5 - 1.0
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], canvas)
    interpreter.invoke()
    out = {int(d["shape"][-1]): interpreter.get_tensor(d["index"])[0] for d in interpreter.get_output_details()}
    scores = 1 / (1 + np.exp(-np.clip(out[1][:, 0], -80, 80)))
    keep = scores >= threshold
    grid = (np.arange(48) + 0.5) * 4  # anchor centres in model pixels, row-major
    anchors = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 2)[keep]
    raw = out[16][keep]
    boxes = np.concatenate([anchors + raw[:, :2] - raw[:, 2:4] / 2, anchors + raw[:, :2] + raw[:, 2:4] / 2], axis=1)
    sx, sy = w / new_w, h / new_h
    boxes = (boxes - [off_x, off_y, off_x, off_y]) * [sx, sy, sx, sy] + [x0, y0, x0, y0]
    return boxes.astype(np.float32), scores[keep].astype(np.float32)


def test_tiles_cut_from_the_resized_frame_match_per_window_crops():
    """The detector resizes the frame once per scale and cuts tiles from it; a plain
    reference (each window cropped from the frame, then resized, letterboxed, run and decoded
    on its own) must give the same faces in every window, and every pasted face is found."""
    from ai_edge_litert.interpreter import Interpreter

    from privacy_anon.faces.boxes import weighted_nms
    from privacy_anon.faces.detector import _ScaledFrames

    frame, truth = _faces_on_tile_seams()
    height, width = frame.shape[:2]
    detector = BlazeFace(num_threads=1, score_threshold=0.5, min_face_size=40, zoom_out=2)
    interpreter = Interpreter(model_path=blazeface_model_path(), num_threads=1)
    interpreter.allocate_tensors()
    windows = detector.windows(width, height)
    assert len(windows) > 10 and len({w for _, _, w, _, _ in windows[2:]}) == 2  # two tile levels
    scaled = _ScaledFrames(frame)
    compared = 0
    for x0, y0, w, h, side in windows:
        ref_boxes, ref_scores = _reference_window(interpreter, frame, x0, y0, w, h, side, 0.5)
        boxes, scores, points, seen = detector._detect_window(scaled, x0, y0, w, h, side)
        if len(scores):
            boxes, scores = weighted_nms(boxes, scores, 0.3, points)[:2]
        if len(ref_scores):
            ref_boxes, ref_scores = weighted_nms(ref_boxes, ref_scores, 0.3)[:2]
        unit = max(side, w, h) / 192  # one model pixel, in frame pixels
        assert np.abs(np.array(seen[:4]) - [x0, y0, w, h]).max() <= unit / 2 + 1e-3
        for a, sa, b in ((boxes, scores, ref_boxes), (ref_boxes, ref_scores, boxes)):
            for box in a[sa >= 0.55]:  # clear detections; 0.5 +- rounding may flip
                assert len(b), f"window {(x0, y0, w, h)}: {box} found by one path only"
                assert np.abs(b - box).max(axis=1).min() <= 1.5 * unit, f"window {(x0, y0, w, h)}: {box} vs {b}"
                compared += 1
    assert compared >= 2 * len(truth)  # faces were seen in several windows each
    found, _, _ = detector.detect(frame)
    overlap = iou_matrix(truth, found)
    assert (overlap.max(axis=1) >= 0.4).all(), f"missed faces: {truth[overlap.max(axis=1) < 0.4]}"


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.6, 0.999, 1.0])
def test_logit_prefilter_keeps_exactly_the_scores_above_the_threshold(threshold):
    from privacy_anon.faces.detector import RAW_SCORE_LIMIT, _logit_floor

    logits = np.concatenate([np.random.default_rng(0).normal(0, 8, 20000),
                             np.linspace(-30, 30, 20001)]).astype(np.float32)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
    wanted = scores >= threshold
    candidates = logits >= _logit_floor(threshold)
    assert not (wanted & ~candidates).any()  # nothing the exact test keeps is lost
    assert candidates.sum() - wanted.sum() < 0.02 * len(logits)  # and the filter does filter
