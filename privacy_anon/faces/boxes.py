"""Box math shared by training, the face detector and the on-device runtime (numpy only).

Boxes are `float32` `[x1, y1, x2, y2]` in pixels. Functions take one box `(4,)` or many
`(N, 4)` and return the same shape where that makes sense.

Example:
    >>> boxes = np.array([[10, 10, 30, 30]], np.float32)
    >>> clip_boxes(enlarge_boxes(boxes, 1.6), width=32, height=32)
    array([[ 4.,  4., 32., 32.]], dtype=float32)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BoxTracker",
    "clip_boxes",
    "enlarge_boxes",
    "iou_matrix",
    "nms",
    "weighted_nms",
]


def _as_boxes(boxes, name: str = "boxes") -> np.ndarray:
    """Returns `boxes` as a float32 (N, 4) array; a single (4,) box becomes (1, 4)."""
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.ndim == 1 and arr.shape[0] == 4:
        return arr[None]
    if arr.size == 0:
        return np.zeros((0, 4), np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) or (4,), got {arr.shape}")
    return arr


def enlarge_boxes(boxes, factor: float) -> np.ndarray:
    """Scales boxes about their centres (the paper enlarges face boxes x1.6).

    Args:
        boxes: `(4,)` or `(N, 4)` `[x1, y1, x2, y2]`.
        factor: scale of width and height, > 0.

    Returns:
        float32 boxes of the same shape as `boxes`.
    """
    if not factor > 0:
        raise ValueError(f"factor must be > 0, got {factor!r}")
    arr = _as_boxes(boxes)
    centre = (arr[:, :2] + arr[:, 2:]) / 2
    half = (arr[:, 2:] - arr[:, :2]) * (factor / 2)
    out = np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)
    return out.reshape(np.shape(boxes)) if np.ndim(boxes) == 1 else out


def clip_boxes(boxes, width: float, height: float) -> np.ndarray:
    """Clips boxes to the image `[0, width] x [0, height]`.

    Args:
        boxes: `(4,)` or `(N, 4)`.
        width, height: image size in pixels, > 0.
    """
    if not (width > 0 and height > 0):
        raise ValueError(f"width and height must be > 0, got {width!r} x {height!r}")
    arr = _as_boxes(boxes).copy()
    arr[:, 0::2] = np.clip(arr[:, 0::2], 0, width)
    arr[:, 1::2] = np.clip(arr[:, 1::2], 0, height)
    return arr.reshape(np.shape(boxes)) if np.ndim(boxes) == 1 else arr


def _areas(arr: np.ndarray) -> np.ndarray:
    return np.clip(arr[:, 2] - arr[:, 0], 0, None) * np.clip(arr[:, 3] - arr[:, 1], 0, None)


def iou_matrix(a, b) -> np.ndarray:
    """Intersection over union of every box in `a` with every box in `b`.

    Args:
        a: `(N, 4)` boxes. b: `(M, 4)` boxes.

    Returns:
        float32 `(N, M)`; 0 where the union is empty.
    """
    a = _as_boxes(a, "a")
    b = _as_boxes(b, "b")
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = _areas(a)[:, None] + _areas(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou.astype(np.float32)


def nms(boxes, scores, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: `(N, 4)`. scores: `(N,)`.
        iou: a box is dropped when its IoU with a higher-scoring kept box is above this.

    Returns:
        int64 indices of the kept boxes, highest score first.
    """
    boxes = _as_boxes(boxes)
    scores = np.asarray(scores, np.float32).reshape(-1)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"got {boxes.shape[0]} boxes but {scores.shape[0]} scores")
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        overlap = iou_matrix(boxes[best:best + 1], boxes[order[1:]])[0]
        order = order[1:][overlap <= iou]
    return np.asarray(keep, np.int64)


def weighted_nms(boxes, scores, iou: float, points=None):
    """Weighted non-maximum suppression (BlazeFace / MediaPipe "WEIGHTED" mode).

    Each cluster (the best remaining box and every box overlapping it by more than `iou`)
    becomes one box: the score-weighted mean of the cluster's boxes (and points), with the
    best score. Averaging steadies boxes that jitter between neighbouring anchors.

    Args:
        boxes: `(N, 4)`. scores: `(N,)`. iou: clustering threshold.
        points: optional `(N, K, 2)` keypoints averaged like the boxes.

    Returns:
        `(boxes (M, 4), scores (M,), points (M, K, 2) or None)`, highest score first.
    """
    boxes = _as_boxes(boxes)
    scores = np.asarray(scores, np.float32).reshape(-1)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"got {boxes.shape[0]} boxes but {scores.shape[0]} scores")
    if not 0.0 <= iou < 1.0:
        raise ValueError(f"iou must be in [0, 1), got {iou!r}")
    if points is not None:
        points = np.asarray(points, np.float32)
    order = np.argsort(-scores, kind="stable")
    out_boxes, out_scores, out_points = [], [], []
    while order.size:
        overlap = iou_matrix(boxes[order[:1]], boxes[order])[0]
        overlap[0] = 1.0  # the best box leads its cluster even if it has zero area
        members = order[overlap > iou]
        weights = scores[members] / max(float(scores[members].sum()), 1e-12)
        out_boxes.append((boxes[members] * weights[:, None]).sum(0))
        out_scores.append(scores[order[0]])
        if points is not None:
            out_points.append((points[members] * weights[:, None, None]).sum(0))
        order = order[overlap <= iou]
    m_boxes = np.asarray(out_boxes, np.float32).reshape(-1, 4)
    m_scores = np.asarray(out_scores, np.float32)
    m_points = None
    if points is not None:
        m_points = np.asarray(out_points, np.float32).reshape((-1,) + points.shape[1:])
    return m_boxes, m_scores, m_points


class BoxTracker:
    """Keeps faces anonymized across frames where the detector blinks, and steadies boxes.

    Each call to `update` takes this frame's detections and returns the boxes to anonymize:
    every detection (smoothed against its matched track, then grown back to contain the raw
    detection so smoothing can never uncover part of a face), plus every track that has gone
    unmatched for at most `hold_frames` frames.

    Args:
        hold_frames: frames a lost face keeps being returned (>= 0).
        smoothing: weight of the track's previous box in the smoothed box, in [0, 1);
            0 means no smoothing.
        match_iou: minimum IoU between a detection and a track to be the same face, in (0, 1].

    Example:
        >>> tracker = BoxTracker(hold_frames=5)
        >>> tracker.update([[10, 10, 50, 50]]).shape
        (1, 4)
        >>> tracker.update(np.zeros((0, 4))).shape  # detector missed it: still returned
        (1, 4)
    """

    def __init__(self, hold_frames: int = 5, smoothing: float = 0.5, match_iou: float = 0.3):
        if int(hold_frames) != hold_frames or hold_frames < 0:
            raise ValueError(f"hold_frames must be an integer >= 0, got {hold_frames!r}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        if not 0.0 < match_iou <= 1.0:
            raise ValueError(f"match_iou must be in (0, 1], got {match_iou!r}")
        self.hold_frames = int(hold_frames)
        self.smoothing = float(smoothing)
        self.match_iou = float(match_iou)
        self.reset()

    def reset(self) -> None:
        """Forgets all tracks (e.g. at a scene cut or a new video)."""
        self._boxes = np.zeros((0, 4), np.float32)  # smoothed box per track
        self._missed = np.zeros((0,), np.int64)  # frames since the track was last matched

    def __len__(self) -> int:
        return len(self._boxes)

    def update(self, boxes, scores=None) -> np.ndarray:
        """Feeds this frame's detections; returns the `(M, 4)` float32 boxes to anonymize.

        Args:
            boxes: `(N, 4)` detections of this frame (N may be 0).
            scores: optional `(N,)`; higher-scoring detections are matched first.
        """
        dets = _as_boxes(boxes)
        if scores is None:
            scores = np.ones(len(dets), np.float32)
        scores = np.asarray(scores, np.float32).reshape(-1)
        if scores.shape[0] != dets.shape[0]:
            raise ValueError(f"got {dets.shape[0]} boxes but {scores.shape[0]} scores")

        track_of_det = self._match(dets, scores)
        out, new_boxes, new_missed = [], [], []
        matched_tracks = set()
        for d, t in enumerate(track_of_det):
            raw = dets[d]
            if t < 0:
                smooth = raw
            else:
                matched_tracks.add(t)
                smooth = self.smoothing * self._boxes[t] + (1 - self.smoothing) * raw
            new_boxes.append(smooth)
            new_missed.append(0)
            # the union of smoothed and raw box: never smaller than what was detected
            out.append(np.concatenate([np.minimum(smooth[:2], raw[:2]), np.maximum(smooth[2:], raw[2:])]))
        for t in range(len(self._boxes)):
            if t in matched_tracks:
                continue
            missed = int(self._missed[t]) + 1
            if missed <= self.hold_frames:
                new_boxes.append(self._boxes[t])
                new_missed.append(missed)
                out.append(self._boxes[t])
        self._boxes = np.asarray(new_boxes, np.float32).reshape(-1, 4)
        self._missed = np.asarray(new_missed, np.int64)
        return np.asarray(out, np.float32).reshape(-1, 4)

    def _match(self, dets: np.ndarray, scores: np.ndarray) -> list[int]:
        """Greedy matching, best-scoring detection first; -1 for a detection with no track."""
        result = [-1] * len(dets)
        if not len(dets) or not len(self._boxes):
            return result
        iou = iou_matrix(dets, self._boxes)
        free = np.ones(len(self._boxes), bool)
        for d in np.argsort(-scores, kind="stable"):
            candidates = np.where(free, iou[d], -1.0)
            t = int(np.argmax(candidates))
            if candidates[t] >= self.match_iou:
                result[d] = t
                free[t] = False
        return result
