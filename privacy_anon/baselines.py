"""Hand-made face anonymizers (paper section 5.2) behind the one face-modifier interface.

Every face modifier, these baselines and the learned M (Keras or TFLite), has a `.name` and
`.modify_crops(crops) -> crops`: a list of RGB uint8 arrays in, a list of RGB uint8 arrays
of the same sizes out. Evaluation, the video CLI and training take any of them by name:

    >>> m = get_modifier("blur8")
    >>> out = anonymize_frame(frame, face_boxes, m)   # boxes enlarged x1.6, clipped, modified

Baselines (names accepted by `get_modifier`):
    none        un-anonymized: the crop is returned unchanged.
    blur8/16/24 down-sample the crop to 8x8 / 16x16 / 24x24 (area averaging), then up-sample
                back bilinearly (Ryoo et al.'s extreme low resolution).
    mask        the crop is filled with black.
    noise0.1/0.3/0.5
                additive Gaussian noise of variance sigma^2 = 0.1 / 0.3 / 0.5 **on pixels
                scaled to [0, 1]** (so sigma = 0.32 / 0.55 / 0.71 of the full range; "strong"
                noise, as the paper says), independent per pixel and channel, then clipped
                to [0, 1] and rounded back to uint8.
    superpixel  SLIC super-pixels (scikit-image); each pixel gets its super-pixel's mean colour.
    edge        the crop is replaced by its Canny edge map (white edges on black).

'learned' is not made here (it needs a trained model): the training and runtime code call
`register_modifier("learned", factory)`, or pass their modifier object wherever a name is
accepted.

No TensorFlow here: the on-device runtime imports this module. scikit-image is imported only
by the super-pixel baseline.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from privacy_anon.errors import InputError
from privacy_anon.faces.boxes import clip_boxes, enlarge_boxes

ENLARGE = 1.6  # face boxes are enlarged x1.6 about their centre (paper section 5.2)


# ----------------------------------------------------------------------------- modifiers


class CropModifier:
    """Base class of the baselines: checks the crops, modifies them one by one.

    Subclasses set `name` and implement `_modify(crop) -> crop` (same shape, uint8).
    """

    name = "base"

    def modify_crops(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Modifies face crops.

        Args:
            crops: RGB uint8 arrays (h, w, 3), any sizes.

        Returns:
            A list of RGB uint8 arrays, one per crop, each of its crop's size.
        """
        return [self._modify(check_image(c, f"crop {i} given to {self.name!r}"))
                for i, c in enumerate(crops)]

    def _modify(self, crop: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


class Unchanged(CropModifier):
    """'none': the un-anonymized baseline."""

    name = "none"

    def _modify(self, crop):
        return crop.copy()


class Blur(CropModifier):
    """Down-sample to `size` x `size` and back: the extreme low-resolution baseline.

    Args:
        size: side of the low-resolution image (the paper: 8, 16, 24). Crops smaller than
            that along a side keep their size along it.
    """

    def __init__(self, size: int):
        if int(size) != size or size < 1:
            raise ValueError(f"`size` must be a positive integer, received size={size!r}")
        self.size = int(size)
        self.name = f"blur{self.size}"

    def _modify(self, crop):
        h, w = crop.shape[:2]
        small = cv2.resize(crop, (min(self.size, w), min(self.size, h)), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


class Mask(CropModifier):
    """'mask': the crop is filled with one colour (black by default).

    Args:
        value: the fill value, 0-255.
    """

    name = "mask"

    def __init__(self, value: int = 0):
        if not 0 <= value <= 255:
            raise ValueError(f"`value` must be in [0, 255], received value={value!r}")
        self.value = int(value)

    def _modify(self, crop):
        return np.full_like(crop, self.value)


class Noise(CropModifier):
    """Additive Gaussian noise; `variance` is sigma^2 on pixels scaled to [0, 1].

    Args:
        variance: sigma^2 (the paper: 0.1, 0.3, 0.5), pixels in [0, 1].
        seed: seed of the noise generator. The noise drawn depends on the order in which
            crops are given, so a run is reproducible when the order is.
    """

    def __init__(self, variance: float, seed: int | None = 0):
        if not variance > 0:
            raise ValueError(f"`variance` must be > 0, received variance={variance!r}")
        self.variance = float(variance)
        self.name = f"noise{variance:g}"
        self._rng = np.random.default_rng(seed)

    def _modify(self, crop):
        x = crop.astype(np.float32) / 255.0
        x += self._rng.normal(0.0, math.sqrt(self.variance), size=x.shape).astype(np.float32)
        return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


class Superpixel(CropModifier):
    """SLIC super-pixels, each pixel replaced by its super-pixel's mean colour.

    Args:
        segments: the number of super-pixels SLIC aims for in each crop, whatever its size
            (so a face is always described by about this many colour patches).
        compactness: SLIC's colour / space trade-off (higher: more square patches).
    """

    name = "superpixel"

    def __init__(self, segments: int = 40, compactness: float = 10.0):
        if int(segments) != segments or segments < 1:
            raise ValueError(f"`segments` must be a positive integer, received segments={segments!r}")
        self.segments = int(segments)
        self.compactness = float(compactness)

    def _modify(self, crop):
        from skimage.segmentation import slic

        if min(crop.shape[:2]) < 2:  # SLIC needs an area; a sliver becomes its mean colour
            return np.broadcast_to(np.rint(crop.mean(axis=(0, 1))), crop.shape).astype(np.uint8)
        labels = slic(crop, n_segments=self.segments, compactness=self.compactness,
                      start_label=0, channel_axis=-1)
        flat = labels.ravel()
        counts = np.bincount(flat)
        means = np.stack([np.bincount(flat, weights=crop[..., c].ravel()) for c in range(3)], axis=1)
        means = np.rint(means / np.maximum(counts, 1)[:, None]).astype(np.uint8)
        return means[labels]


class Edge(CropModifier):
    """The crop replaced by its edge map: Canny on the grey image, white edges on black.

    Thresholds follow the grey level's median (0.66x and 1.33x), so the map does not depend
    on the crop's exposure; a 5x5 Gaussian smooths first, so skin texture draws no edges.
    """

    name = "edge"

    def _modify(self, crop):
        grey = cv2.GaussianBlur(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (5, 5), 0)
        median = float(np.median(grey))
        low, high = max(0.0, 0.66 * median), min(255.0, 1.33 * median)
        edges = cv2.Canny(grey, low, max(high, low + 1.0))
        return np.repeat(edges[..., None], 3, axis=2)


# ----------------------------------------------------------------------------- registry

# name -> factory(seed=...) -> modifier. Baselines first; others are added by register_modifier.
_FACTORIES: dict[str, Callable[..., object]] = {
    "none": lambda seed=0: Unchanged(),
    "blur8": lambda seed=0: Blur(8),
    "blur16": lambda seed=0: Blur(16),
    "blur24": lambda seed=0: Blur(24),
    "mask": lambda seed=0: Mask(),
    "noise0.1": lambda seed=0: Noise(0.1, seed=seed),
    "noise0.3": lambda seed=0: Noise(0.3, seed=seed),
    "noise0.5": lambda seed=0: Noise(0.5, seed=seed),
    "superpixel": lambda seed=0: Superpixel(),
    "edge": lambda seed=0: Edge(),
}
BASELINE_NAMES = tuple(_FACTORIES)


def register_modifier(name: str, factory: Callable[..., object], replace: bool = False) -> None:
    """Makes `get_modifier(name)` return `factory(seed=seed)`.

    This is how the learned M joins the baselines: training or the runtime registers
    `"learned"` with a factory that wraps the Keras model or the TFLite interpreter.

    Args:
        name: the method name used on the command line and in reports.
        factory: a callable taking `seed=` and returning an object with `.name` and
            `.modify_crops(crops)`.
        replace: allow replacing a registered name (baselines cannot be replaced).
    """
    if not name or not isinstance(name, str) or "," in name or name != name.strip():
        raise InputError(f"modifier name must be a non-empty string without commas, got {name!r}")
    if name in BASELINE_NAMES or name == "original":
        raise InputError(f"modifier name {name!r} is reserved (a baseline, or 'original' for "
                         "unmodified images) and cannot be registered")
    if name in _FACTORIES and not replace:
        raise InputError(f"modifier {name!r} is already registered (pass replace=True)")
    if not callable(factory):
        raise InputError(f"factory for modifier {name!r} is not callable: {factory!r}")
    _FACTORIES[name] = factory


def modifier_names() -> list[str]:
    """The names `get_modifier` accepts: the baselines, then the registered ones."""
    return list(_FACTORIES)


def get_modifier(name, seed: int | None = 0):
    """A face modifier by name, or the modifier object itself if one is given.

    Args:
        name: a name from `modifier_names()` ('none', 'blur8', ..., 'edge', and anything
            registered, e.g. 'learned'), or an object with `.name` and `.modify_crops`.
        seed: seed for the random baselines (noise).

    Raises:
        InputError: unknown name; the message lists the valid ones.
    """
    if is_modifier(name):
        return name
    if name not in _FACTORIES:
        hint = ""
        if name == "learned":
            hint = (" ('learned' needs a trained model: register it with "
                    "baselines.register_modifier('learned', factory) or pass the modifier object)")
        raise InputError(f"unknown face modifier {name!r}{hint}; valid names: {', '.join(_FACTORIES)}")
    modifier = _FACTORIES[name](seed=seed)
    if not is_modifier(modifier):
        raise InputError(f"factory of modifier {name!r} returned {modifier!r}, which has no "
                         "`.name` and `.modify_crops`")
    return modifier


def is_modifier(obj) -> bool:
    """True if `obj` follows the face-modifier interface."""
    return hasattr(obj, "name") and callable(getattr(obj, "modify_crops", None))


def parse_methods(methods) -> list:
    """A method list from "none,blur8,mask" or a sequence of names / modifier objects.

    Checks every name (unknown name: InputError listing the valid ones) and that the list is
    neither empty nor repeats a method.
    """
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    methods = list(methods or [])
    if not methods:
        raise InputError(f"empty method list; choose from: {', '.join(_FACTORIES)}")
    names = []
    for m in methods:
        if not is_modifier(m) and m not in _FACTORIES:
            get_modifier(m)  # raises the error that lists the valid names
        names.append(m.name if is_modifier(m) else m)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"method list names {', '.join(repeated)} more than once")
    return methods


# ----------------------------------------------------------------------------- frames


def check_image(image, what: str = "image") -> np.ndarray:
    """Returns `image` if it is an RGB uint8 array (h, w, 3) with h, w >= 1; else InputError."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{what}: expected an RGB uint8 numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise InputError(f"{what}: expected an RGB uint8 array (h, w, 3), "
                         f"got dtype {image.dtype} shape {image.shape}")
    return image


def face_regions(boxes, width: int, height: int, enlarge: float = ENLARGE) -> np.ndarray:
    """Integer pixel regions that the modifier replaces: boxes enlarged about their centre,
    then clipped to the frame.

    Args:
        boxes: (N, 4) float [x1, y1, x2, y2] in pixels.
        width, height: the frame's size.
        enlarge: scale factor of the box sides (paper: 1.6).

    Returns:
        (M, 4) int64 [x1, y1, x2, y2], x2/y2 exclusive, M <= N: boxes wholly outside the
        frame are dropped. A region covers every pixel the enlarged box touches (floor of
        the top-left corner, ceiling of the bottom-right).
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4), np.int64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InputError(f"face boxes: expected shape (N, 4) [x1, y1, x2, y2], got {boxes.shape}")
    bad = ~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        raise InputError(f"face box {boxes[np.argmax(bad)].tolist()}: not finite or x2 < x1 or y2 < y1")
    if not enlarge > 0:
        raise InputError(f"enlarge must be > 0, got {enlarge!r}")
    big = clip_boxes(enlarge_boxes(boxes, enlarge), width, height).astype(np.float64)
    regions = np.concatenate([np.floor(big[:, :2]), np.ceil(big[:, 2:])], axis=1).astype(np.int64)
    keep = (regions[:, 2] > regions[:, 0]) & (regions[:, 3] > regions[:, 1])
    return regions[keep]


def anonymize_frames(frames: Sequence[np.ndarray], boxes: Sequence, modifier,
                     enlarge: float = ENLARGE) -> list[np.ndarray]:
    """Anonymizes the faces of several frames with one `modify_crops` call (batches for M).

    Each box is enlarged about its centre by `enlarge`, clipped at the frame's borders,
    cropped, modified and pasted back. Pixels outside the enlarged boxes stay bit-identical.
    Where enlarged boxes overlap, the later box's modified crop (cut from the original
    frame) is pasted last. Frames without boxes are returned as copies.

    Args:
        frames: RGB uint8 arrays (H, W, 3).
        boxes: per frame, (N, 4) float [x1, y1, x2, y2] face boxes in that frame's pixels.
        modifier: a modifier object or name (see `get_modifier`).
        enlarge: box scale factor (paper: 1.6).

    Returns:
        New frames; the inputs are not changed.
    """
    if len(frames) != len(boxes):
        raise InputError(f"got {len(frames)} frames but {len(boxes)} lists of face boxes")
    modifier = get_modifier(modifier)
    outs, jobs, crops = [], [], []
    for i, (frame, frame_boxes) in enumerate(zip(frames, boxes)):
        frame = check_image(frame, f"frame {i}")
        outs.append(frame.copy())
        for x1, y1, x2, y2 in face_regions(frame_boxes, frame.shape[1], frame.shape[0], enlarge):
            jobs.append((i, x1, y1, x2, y2))
            crops.append(frame[y1:y2, x1:x2].copy())
    if not crops:
        return outs
    modified = list(modifier.modify_crops(crops))
    if len(modified) != len(crops):
        raise InputError(f"modifier {modifier.name!r} returned {len(modified)} crops for {len(crops)}")
    for (i, x1, y1, x2, y2), crop, new in zip(jobs, crops, modified):
        new = np.asarray(new)
        if new.shape != crop.shape or new.dtype != np.uint8:
            raise InputError(f"modifier {modifier.name!r} returned a {new.dtype} crop of shape "
                             f"{new.shape} for a uint8 crop of shape {crop.shape}")
        outs[i][y1:y2, x1:x2] = new
    return outs


def anonymize_frame(frame: np.ndarray, boxes, modifier, enlarge: float = ENLARGE) -> np.ndarray:
    """Anonymizes the faces of one frame: enlarge boxes, clip, crop, modify, paste back.

    Args:
        frame: RGB uint8 (H, W, 3).
        boxes: (N, 4) float [x1, y1, x2, y2] face boxes in pixels.
        modifier: a modifier object or name (see `get_modifier`).
        enlarge: box scale factor about the centre (paper: 1.6).

    Returns:
        A new frame; pixels outside the enlarged, clipped boxes are bit-identical to `frame`.
    """
    return anonymize_frames([frame], [boxes], modifier, enlarge)[0]


def anonymize_images(images: Iterable[np.ndarray], modifier) -> list[np.ndarray]:
    """Applies a modifier to whole images (face images whose box is the whole image)."""
    images = [check_image(im, f"image {i}") for i, im in enumerate(images)]
    modifier = get_modifier(modifier)
    out = list(modifier.modify_crops(images)) if images else []
    for im, new in zip(images, out):
        if np.asarray(new).shape != im.shape:
            raise InputError(f"modifier {modifier.name!r} changed an image's shape {im.shape} "
                             f"to {np.asarray(new).shape}")
    return [np.asarray(o, dtype=np.uint8) for o in out]
