"""Trained models for the evaluation: the learned M as a face modifier, D as a recognizer.

    modifier = load_modifier("runs/adv")          # run dir with modifier.keras, .keras or .tflite
    modifier.modify_crops([crop_uint8, ...])      # the baselines' interface, name "learned"
    d, digest = load_classifier("runs/d/classifier.keras")
    recognizer = classifier_recognizer(d, digest, landmarks={key: (5, 2) marks})

A checkpoint's SHA-256 goes into the names used as embedding-cache keys, so a re-trained
model never reads the vectors of an older one. TensorFlow / Keras are imported lazily.
"""

from __future__ import annotations

import hashlib
import os
from typing import Mapping, Sequence

import numpy as np

from privacy_anon.errors import InputError
from privacy_anon.models.saving import load_model_file as _load_keras
from privacy_anon.models.saving import model_file as resolve_checkpoint

MODIFIER_FILE = "modifier.keras"
CLASSIFIER_FILE = "classifier.keras"


def file_digest(path: str | os.PathLike, length: int = 12) -> str:
    """The first `length` hex digits of the file's SHA-256 (names cache entries)."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:length]


# ----------------------------------------------------------------------------- M


class KerasModifier:
    """The learned M behind the baselines' interface (`.name`, `.modify_crops`).

    Each crop is resized (bilinear) to M's square input, scaled to [-1, 1], modified, and
    resized back to its own size as uint8: the same path the video pipeline takes.

    Args:
        model: a `FaceModifier` (takes (N, S, S, 3) in [-1, 1], S = `model.input_size`).
        name: the method name in reports ("learned").
        cache_key: the name under which embeddings of its output are cached (default:
            `name`); `load_modifier` puts the checkpoint's digest in it.
        batch_size: crops per model call.
    """

    def __init__(self, model, name: str = "learned", cache_key: str | None = None,
                 batch_size: int = 32):
        size = getattr(model, "input_size", None)
        if not isinstance(size, int) or size < 1:
            raise InputError(f"model {model!r} has no integer `input_size`: not a FaceModifier")
        self.model, self.name, self.size = model, name, size
        self.cache_key = cache_key or name
        self.batch_size = int(batch_size)

    def modify_crops(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        import cv2

        from privacy_anon.baselines import check_image

        crops = [check_image(c, f"crop {i} given to {self.name!r}") for i, c in enumerate(crops)]
        out = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start:start + self.batch_size]
            # area averaging when shrinking, as the video runtime's TFLite M does
            x = np.stack([cv2.resize(c, (self.size, self.size),
                                     interpolation=cv2.INTER_AREA if max(c.shape[:2]) > self.size
                                     else cv2.INTER_LINEAR)
                          for c in chunk]).astype(np.float32) / 127.5 - 1.0
            y = np.asarray(self.model(x, training=False), np.float32)
            y = np.rint((np.clip(y, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
            out += [cv2.resize(img, (c.shape[1], c.shape[0]), interpolation=cv2.INTER_LINEAR)
                    for img, c in zip(y, chunk)]
        return out

    def __repr__(self):
        return f"<KerasModifier {self.name!r} ({self.cache_key})>"


def load_modifier(path: str | os.PathLike, name: str = "learned"):
    """M from a `.keras` FaceModifier file, a run directory holding `modifier.keras`, or an
    exported `.tflite` M (the on-device model, through the runtime's interpreter)."""
    from privacy_anon.models.modifier import FaceModifier

    file = resolve_checkpoint(path, MODIFIER_FILE, "--modifier", (".keras", ".tflite"))
    if file.suffix == ".tflite":
        from privacy_anon.runtime.modifier import TFLiteModifier

        modifier = TFLiteModifier(file)
        modifier.name, modifier.cache_key = name, f"{name}-tflite-{file_digest(file)}"
        return modifier
    model = _load_keras(file, FaceModifier, "--modifier")
    return KerasModifier(model, name=name, cache_key=f"{name}-{file_digest(file)}")


# ----------------------------------------------------------------------------- D


def load_classifier(path: str | os.PathLike):
    """(D, digest) from a `.keras` FaceClassifier file or a run directory with classifier.keras."""
    from privacy_anon.models.face_classifier import FaceClassifier

    file = resolve_checkpoint(path, CLASSIFIER_FILE, "--classifier")
    return _load_keras(file, FaceClassifier, "--classifier"), file_digest(file)


def align_to_template(image: np.ndarray, height: int, width: int, landmarks=None,
                      crop=(0.0, 0.0, 1.0, 1.0)) -> np.ndarray:
    """One RGB uint8 face to D's input: (height, width, 3) float32 in [-1, 1].

    With 5 landmarks (pixels of `image`, MTCNN order) the face is warped onto SphereFace's
    template by a similarity transform, as in training (`faces/geometry.py`); without, the
    canonical crop (top, left, height, width fractions) is resized, as training does for
    faces without landmarks. Samples outside the image are mid-grey (0), as in training.
    """
    import cv2

    from privacy_anon.faces.geometry import template_landmarks

    h, w = image.shape[:2]
    if landmarks is not None and np.all(np.isfinite(landmarks)):
        dst = template_landmarks(height, width)
        matrix = _similarity(np.asarray(landmarks, np.float64), dst.astype(np.float64))
    else:
        top, left, ch, cw = crop
        x1, y1 = left * w, top * h
        x2, y2 = (left + cw) * w - 1, (top + ch) * h - 1
        # input-to-output: box edge pixels land on output pixels 0 and n-1 (geometry.box_matrix)
        sx, sy = (width - 1) / max(x2 - x1, 1e-6), (height - 1) / max(y2 - y1, 1e-6)
        matrix = np.array([[sx, 0, -sx * x1], [0, sy, -sy * y1]], np.float64)
    x = image.astype(np.float32) / 127.5 - 1.0
    return cv2.warpAffine(x, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0, 0.0, 0.0))


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform taking `src` (K, 2) points to `dst`: (2, 3)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    p, q = src - mu_s, dst - mu_d
    denom = (p * p).sum() + 1e-8
    a = (p * q).sum() / denom
    b = (p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]).sum() / denom
    tx = mu_d[0] - (a * mu_s[0] - b * mu_s[1])
    ty = mu_d[1] - (b * mu_s[0] + a * mu_s[1])
    return np.array([[a, -b, tx], [b, a, ty]], np.float64)


class KeyedAligner:
    """D's `align_fn` that knows each image's landmarks by key.

    `evaluate_faces` passes the image keys along (`embed(images, keys=...)`), so a modified
    face is aligned with the landmarks of its original: M and the baselines keep the face's
    layout, and for a masked face no landmarks could be found at all.

    Args:
        height, width: D's input size.
        landmarks: {image key: (5, 2) pixels of that image}; keys not in it use `crop`.
        crop: canonical crop (top, left, height, width fractions) for faces without landmarks.
    """

    def __init__(self, height: int, width: int, landmarks: Mapping | None = None,
                 crop=(0.0, 0.0, 1.0, 1.0)):
        self.height, self.width = int(height), int(width)
        self.landmarks = dict(landmarks or {})
        self.crop = tuple(crop)

    def __call__(self, images, keys=None):
        keys = list(keys) if keys is not None else [None] * len(images)
        return np.stack([align_to_template(im, self.height, self.width,
                                           self.landmarks.get(k) if k is not None else None,
                                           self.crop)
                         for im, k in zip(images, keys)]) if len(images) else \
            np.zeros((0, self.height, self.width, 3), np.float32)


def classifier_recognizer(model, digest: str, landmarks: Mapping | None = None,
                          crop=(0.0, 0.0, 1.0, 1.0), batch_size: int = 64):
    """D as a `KerasClassifierRecognizer` named "D-<digest>" (cache key), with keyed alignment."""
    from privacy_anon.evaluation.verification import KerasClassifierRecognizer

    align = KeyedAligner(model.input_height, model.input_width, landmarks, crop)
    return KerasClassifierRecognizer(model, align, name=f"D-{digest}", batch_size=batch_size,
                                     keyed=True)
