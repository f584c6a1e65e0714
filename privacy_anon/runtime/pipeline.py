"""Per frame: detect faces -> track (hold lost faces) -> enlarge -> crop -> modify -> paste back.

No face leaks: a face the detector loses keeps being anonymized for `hold` frames (the
tracker also steadies the boxes), and a frame on which the detector or the modifier fails is
returned fully masked, or dropped (`on_failure="drop"`), never as it came in.
No TensorFlow here.

Example:
    >>> anonymizer = Anonymizer("bundle/")            # or Anonymizer(method="blur8")
    >>> result = anonymizer.process(frame)            # RGB uint8 (H, W, 3)
    >>> result.image, result.regions, result.status
    >>> anonymizer.anonymize_video("in.mp4", "out.mp4")
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from privacy_anon.baselines import anonymize_frame, face_regions, get_modifier
from privacy_anon.errors import InputError
from privacy_anon.faces.boxes import BoxTracker
from privacy_anon.runtime.bundle import Bundle, load_bundle, quiet_native_stderr

ON_FAILURE = ("mask", "drop")
DEFAULT_HOLD = 5  # frames a lost face stays anonymized (~0.2 s at 25 fps)
# BlazeFace calls per frame: 640x360 keeps all its 8 windows (faces from 40 px); larger
# frames get larger tiles (1280x720: faces from ~65 px, 1080p ~95 px, 4K ~185 px) instead of
# a cost growing with the frame's area (issue 13)
DEFAULT_MAX_CALLS = 16


@dataclass
class FrameResult:
    """One processed frame.

    Attributes:
        image: the anonymized RGB uint8 frame, or None when the frame is dropped.
        status: "ok", "masked" (a failure: whole frame masked) or "dropped".
        detections: (N, 4) float32 boxes the detector found in this frame.
        scores: (N,) their scores.
        regions: (M, 4) int64 pixel regions that were replaced (enlarged, clipped; includes
            held faces the detector missed).
        error: what failed, for "masked" / "dropped".
    """

    image: np.ndarray | None
    status: str
    detections: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    regions: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    error: str = ""

    def to_dict(self, index: int | None = None) -> dict:
        d = {"status": self.status,
             "detections": [[round(float(v), 1) for v in b] + [round(float(s), 3)]
                            for b, s in zip(self.detections, self.scores)],
             "regions": self.regions.astype(int).tolist()}
        if index is not None:
            d = {"frame": index, **d}
        if self.error:
            d["error"] = self.error
        return d


class Anonymizer:
    """The face-anonymization pipeline for frames, images and videos.

    Args:
        bundle: a bundle folder / `.zip` (or a loaded `Bundle`) with the learned M and the
            face detector; or None with `method`.
        method: a baseline name (`blur8`, `mask`, ...; see `baselines.modifier_names()`) or
            a modifier object, used instead of the bundle's M.
        threshold: detector score threshold (default: the bundle's, else 0.6).
        enlarge: face-box enlargement (default: the bundle's, else 1.6).
        hold: frames a face lost by the detector stays anonymized.
        smoothing: box smoothing weight of the tracker, [0, 1).
        on_failure: "mask" (write the frame fully black) or "drop" (leave it out).
        num_threads: interpreter threads (detector and M). In a video, BlazeFace then also
            runs on this many frames at once (`frame_detectors`).
        min_face_size: smallest face to look for, pixels (tiles; 0: whole frame only).
        max_calls: detector calls per frame at most (0: no bound; default: the bundle's,
            else `DEFAULT_MAX_CALLS`); large frames then look for larger faces only.
        detector: optional callable `image -> (boxes (N, 4), scores (N,))` or `list[Face]`
            replacing BlazeFace (tests inject misses with it).
    """

    def __init__(self, bundle=None, method=None, *, threshold: float | None = None,
                 enlarge: float | None = None, hold: int = DEFAULT_HOLD, smoothing: float = 0.5,
                 on_failure: str = "mask", num_threads: int = 2, min_face_size: float | None = None,
                 detector=None, max_calls: int | None = None):
        if (bundle is None) == (method is None):
            raise InputError("give either a bundle or a method (a baseline name), not both or neither")
        if on_failure not in ON_FAILURE:
            raise InputError(f"on_failure must be one of {ON_FAILURE}, got {on_failure!r}")
        if int(hold) != hold or hold < 0:
            raise InputError(f"hold must be an integer >= 0, got {hold!r}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise InputError(f"threshold must be in [0, 1], got {threshold!r}")
        if max_calls is not None and (int(max_calls) != max_calls or max_calls < 0):
            raise InputError(f"max_calls must be an integer >= 0, got {max_calls!r}")
        if enlarge is not None and not enlarge >= 1.0:
            raise InputError(f"enlarge must be >= 1 (a face box is never shrunk), got {enlarge!r}")
        self.bundle: Bundle | None = None
        self.on_failure = on_failure
        self.num_threads = int(num_threads)
        self._frame_detectors: list | None = None
        self.tracker = BoxTracker(hold_frames=int(hold), smoothing=smoothing)
        settings = {}
        with quiet_native_stderr():  # no interpreter INFO lines around our one-line errors
            if bundle is not None:
                self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
                self.modifier = self.bundle.modifier(num_threads=num_threads)
                settings = self.bundle.detector_settings
            else:
                self.modifier = get_modifier(method)
            if detector is None:
                detector = self._blazeface(settings, threshold, num_threads, min_face_size, max_calls)
        self.detector = detector
        self.enlarge = float(enlarge if enlarge is not None else
                             (self.bundle.enlarge if self.bundle else 1.6))

    def _blazeface(self, settings, threshold, num_threads, min_face_size, max_calls=None):
        from privacy_anon.faces.detector import BlazeFace

        return BlazeFace(
            str(self.bundle.detector_path) if self.bundle else None,
            num_threads=num_threads,
            score_threshold=float(threshold if threshold is not None else settings.get("score_threshold", 0.6)),
            nms_iou=float(settings.get("nms_iou", 0.3)),
            min_face_size=float(min_face_size if min_face_size is not None else settings.get("min_face_size", 40)),
            zoom_out=float(settings.get("zoom_out", 2.0)),
            max_calls=int(max_calls if max_calls is not None else settings.get("max_calls", DEFAULT_MAX_CALLS)),
        )

    @property
    def name(self) -> str:
        return self.modifier.name

    def reset(self) -> None:
        """Forget tracked faces (call between unrelated videos)."""
        self.tracker.reset()

    def detect(self, image) -> tuple[np.ndarray, np.ndarray]:
        return _as_boxes(self.detector(image))

    def frame_detectors(self) -> list:
        """Copies of the detector to run on several frames at once, one per thread, each on
        one interpreter thread: `num_threads` of them; none (`process` detects) with one
        thread or a detector that cannot be copied (an injected one).

        Why: BlazeFace's ~350 small ops gain little from a second interpreter thread (a
        640x360 frame's 8 calls take 26 ms of CPU on one thread, 43 ms on two, mostly
        thread-pool waits); two frames at once on one thread each keep both cores busy.
        Detection depends on the frame alone, so the output is the same.
        """
        if self._frame_detectors is None:
            copy = getattr(self.detector, "copy", None)
            if self.num_threads < 2 or copy is None:
                self._frame_detectors = []
            else:
                with quiet_native_stderr():
                    self._frame_detectors = [copy(num_threads=1) for _ in range(self.num_threads)]
        return self._frame_detectors

    def process(self, frame: np.ndarray, found=None) -> FrameResult:
        """Anonymizes one RGB uint8 frame (in video order: the tracker remembers faces).

        `found`: what a `frame_detectors()` detector returned for this frame (or the
        exception it raised: the frame then fails closed); None: detect here.
        """
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
            raise InputError(f"frame: expected RGB uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        try:
            if isinstance(found, BaseException):
                raise found
            boxes, scores = self.detect(frame) if found is None else _as_boxes(found)
        except Exception as exc:  # noqa: BLE001 - any detector failure must not leak the frame
            return self._failed(frame, f"detector: {type(exc).__name__}: {exc}")
        held = self.tracker.update(boxes, scores)
        try:
            image = anonymize_frame(frame, held, self.modifier, self.enlarge)
        except Exception as exc:  # noqa: BLE001 - same for the modifier
            return self._failed(frame, f"modifier: {type(exc).__name__}: {exc}", boxes, scores)
        regions = face_regions(held, frame.shape[1], frame.shape[0], self.enlarge)
        return FrameResult(image, "ok", boxes, scores, regions)

    def _failed(self, frame, error, boxes=None, scores=None) -> FrameResult:
        result = FrameResult(None, "dropped", error=error.split("\n")[0])
        if boxes is not None:
            result.detections, result.scores = boxes, scores
        if self.on_failure == "mask":
            result.image = np.zeros_like(frame)
            result.status = "masked"
        return result

    def anonymize_image(self, image: np.ndarray) -> np.ndarray | None:
        """One still image (the tracker is reset before and after); None if dropped."""
        self.reset()
        try:
            return self.process(image).image
        finally:
            self.reset()

    def anonymize_video(self, src, dst, **options) -> dict:
        """Anonymizes a video file (audio kept) into `dst`; see `runtime.video.anonymize_video`."""
        from privacy_anon.runtime.video import anonymize_video

        return anonymize_video(self, src, dst, **options)

    def anonymize_path(self, inputs, output, **options) -> dict:
        """Images, videos, folders of either, or a camera index; see `runtime.video.anonymize_paths`."""
        from privacy_anon.runtime.video import anonymize_paths

        return anonymize_paths(self, inputs, output, **options)


def _as_boxes(found) -> tuple[np.ndarray, np.ndarray]:
    """A detector's `(boxes, scores, ...)` or `list[Face]` as `(boxes (N, 4), scores (N,))`."""
    if isinstance(found, tuple):
        boxes, scores = found[0], found[1]
    else:  # list[Face]
        boxes = [f.box for f in found]
        scores = [f.score for f in found]
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32).reshape(-1)
