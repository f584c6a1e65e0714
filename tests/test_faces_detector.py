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
