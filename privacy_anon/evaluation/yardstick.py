"""The yardstick: how private and how natural each method's faces are, on real photos.

    from privacy_anon.evaluation.yardstick import run_yardstick

    results = run_yardstick("../shared/data/celeba-mini", "CACHE", "RUN/heldout_identities.txt",
                            ["none", "blur8", KerasModifier(m), "bundle/"], "RUN/yardstick",
                            max_photos=300, workers=2)
    results["learned"]["reid_accuracy"], results["learned"]["face_found"]

`run_yardstick(faces_root, boxes_cache, identities, methods, out_dir, max_photos=300,
workers=2, seed=0, progress=True, ..., faceres=None) -> {method: {...}}` is the entry point
(the `train` command calls it on held-out identities; `privacy-anon evaluate --faces DIR
--faces-box-cache CACHE --recognizer dlib` runs it too). It writes `report.json`,
`privacy_plane.png` (re-identification vs still-a-face, one point per method),
`before_after.png` and `yardstick.md` into `out_dir`.

Photos: `faces_root/<identity>/<image>` with the face-box cache of `privacy-anon
detect-faces faces_root --format folders --out CACHE`; each photo's face is its largest
cached face (photos without one are left out and counted). `identities` (a file with one
identity folder name per line, `#` comments allowed, or a list of names; None: all) restricts
the photos; `max_photos` takes a deterministic subset spread evenly over the identities.

Methods: baseline names ('none', 'blur8', 'mask', 'noise0.1', ...), modifier objects (`.name`,
`.modify_crops`, e.g. `evaluation.models.KerasModifier`), which modify the face box enlarged
x`enlarge` (1.6); and the product path: a bundle folder / .zip path, a
`runtime.Anonymizer` or a `RuntimeMethod`, which runs the TensorFlow-free runtime on the
whole photo with its own face detection (a face it misses stays as it was, and is counted).

Per method, on every selected photo (original vs modified):
- reid_accuracy / verification_accuracy: dlib (`DlibRecognizer`, an independent
  recognizer) on generated LFW-style pairs (`run.generate_pairs`, 10 folds): original gallery
  vs modified probe, and both modified. By default the attacker knows where the face was:
  each photo's face rectangle is dlib's HOG face on the *original* photo overlapping the
  cached box (else the cached box itself), and the modified photo is embedded at that
  rectangle; `attacker="hog"` runs HOG on the modified photo instead (a face HOG no longer
  finds is counted in `no_face_modified` and embedded at the cached box).
- faceres_reid_accuracy / faceres_verification_accuracy (with `faceres`, its weights folder):
  the same pairs attacked by a second recognizer of another network and other data
  (faceres: HSE's MobileNet trained on VGGFace2, `models.recognizer`), embedding a square
  of `FACERES_VIEW` x the cached box around its centre, in the original and in the modified
  photo alike (the attacker knows where the face was). A run whose M trained against faceres
  says so in the report: then it is not an unseen attacker.
- face_found: the fraction of modified photos in which MTCNN (a detector M never trained
  against; `mtcnn` package, weights shipped) finds a face with IoU >= 0.3 to the cached box,
  run on a square crop around it (`MtcnnVerifier`).
- ssim, psnr: inside the face box (the cached box, x`metrics_enlarge`); PSNR is capped at
  100 dB (identical boxes).
- saturation_added: mean HSV saturation (0-255) in the box, modified minus original (a
  natural face of someone else adds ~0).
- chroma_shift: mean per-pixel distance in YCbCr's (Cb, Cr) plane (0-255 scale) in the box,
  modified vs original: colour painted where the face had other colour. A box average like
  saturation_added misses a green eye beside a red mouth; this sees each pixel (re-lighting
  or re-shaping a face moves it little; a hue change of the same saturation moves it a lot).
- landmark_shift_iod: MTCNN's 5 landmarks on the modified face vs on the original, mean
  distance over the 5 points divided by the original's inter-ocular distance, averaged
  over the photos where MTCNN found both (`landmark_photos`).
- num_photos, num_pairs, and face_found / no-face counts for the originals in the facts.

Costs (2 shared CPU cores): dlib ~60-120 ms per photo with 2 worker processes, MTCNN
~30-130 ms per crop; each (method, photo) is measured once and cached under
`cache_dir` (default `out_dir/cache`), keyed by the method (a learned M by its weights'
digest, a bundle by its files' digest), so a re-run, or a run on other identities of the same
photo set, only measures what is new. Photos whose modified image equals the original
(`none`, or a face the runtime missed) reuse the original's dlib and MTCNN results.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from privacy_anon import baselines
from privacy_anon.errors import DataError, InputError

ATTACKERS = ("box", "hog")
FACE_IOU = 0.3  # an MTCNN face overlapping the face box this much is "still a face"
PSNR_CAP = 100.0  # dB, for identical boxes
BATCH = 32  # photos modified and measured together
EXAMPLES = 4  # photos in before_after.png
PAIR_FOLDS = 10
# faceres's view: a square this many times the cached box's longer side. On the originals of
# 300 held-out celeba-mini photos (600 pairs) its pair accuracy was 91.2 / 92.5 / 92.8 % at
# 1.0 / 1.3 / 1.6: the attacker takes the best
FACERES_VIEW = 1.6
METRIC_NAMES = ("reid_accuracy", "verification_accuracy", "face_found", "ssim", "psnr",
                "saturation_added", "chroma_shift", "landmark_shift_iod")


# ----------------------------------------------------------------------------- photos


@dataclass(frozen=True)
class Photo:
    """One photo: its key (`identity/image`, relative to the root), identity and face box."""

    key: str
    identity: str
    box: tuple  # (x1, y1, x2, y2) pixels, the largest cached face


def read_identities(path: str | Path) -> list[str]:
    """Identity folder names from a file, one per line (blank lines and `#` comments skipped)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: identities file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read identities file ({exc})") from None
    names = [line.split("#", 1)[0].strip() for line in lines]
    names = [n for n in names if n]
    if not names:
        raise InputError(f"{path}: identities file names no identity")
    return names


def select_photos(faces_root: str | Path, boxes_cache: str | Path, identities=None,
                  max_photos: int | None = None, seed: int = 0) -> tuple[list[Photo], dict]:
    """The photos to measure and facts about the choice.

    Args:
        faces_root: folder-per-identity root.
        boxes_cache: its `detect-faces --format folders` cache (checked up to date).
        identities: None (all), a file of identity names, or a sequence of names.
        max_photos: at most this many photos: a deterministic subset (by `seed`) taken
            round-robin over the identities, so each contributes about equally.
        seed: the subset's seed.

    Raises:
        InputError / DataError: a missing identities file, a name that is not a folder
            of `faces_root`, a missing or stale cache, no photo with a face.
    """
    from privacy_anon.data.face_boxes import load_face_boxes
    from privacy_anon.data.faces import list_identity_folder

    root = Path(faces_root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (give a folder-per-identity root)")
    if max_photos is not None and int(max_photos) < 2:
        raise InputError(f"max_photos must be >= 2, got {max_photos!r}")
    by_identity: dict[str, list[str]] = {}
    for rel, ident in list_identity_folder(root):
        by_identity.setdefault(ident, []).append(rel)
    source = "all identity folders"
    if identities is not None:
        if isinstance(identities, (str, Path)):
            source = str(identities)
            names = read_identities(identities)
        else:
            names = [str(n) for n in identities]
            source = f"{len(names)} given identities"
        missing = [n for n in names if n not in by_identity]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(f"{source}: identity {missing[0]!r}{more} is not a folder of {root}")
        by_identity = {n: by_identity[n] for n in sorted(set(names))}
    cache = load_face_boxes(boxes_cache, root)
    photos: dict[str, list[Photo]] = {}
    without_face = 0
    for ident, keys in by_identity.items():
        for key in keys:
            boxes = cache[key] if key in cache else np.zeros((0, 4), np.float32)
            if not len(boxes):
                without_face += 1
                continue
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            box = tuple(float(v) for v in boxes[int(np.argmax(areas))])
            photos.setdefault(ident, []).append(Photo(key, ident, box))
    if not photos:
        raise DataError(f"{root}: no photo with a face among {len(by_identity)} identities in {boxes_cache}")
    # per identity a seeded order; then rounds over the identities (in a seeded order) taking
    # two photos each, so every identity chosen can form a same-person pair
    queues = {}
    for ident, items in photos.items():
        rng = np.random.default_rng([seed, zlib.crc32(ident.encode())])
        queues[ident] = [items[i] for i in rng.permutation(len(items))]
    order = sorted(queues)
    order = [order[i] for i in np.random.default_rng([seed, 41]).permutation(len(order))]
    total = sum(len(q) for q in queues.values())
    limit = total if max_photos is None else min(total, int(max_photos))
    chosen: list[Photo] = []
    depth = 0
    while len(chosen) < limit:
        for ident in order:
            take = queues[ident][depth:depth + 2][:limit - len(chosen)]
            chosen += take
        depth += 2
    chosen.sort(key=lambda p: p.key)
    facts = {"faces_root": str(root.resolve()), "boxes_cache": str(Path(boxes_cache).resolve()),
             "identities_source": source, "identities": len({p.identity for p in chosen}),
             "photos_available": total, "photos_without_face": without_face,
             "num_photos": len(chosen), "max_photos": max_photos, "seed": seed}
    return chosen, facts


# ----------------------------------------------------------------------------- methods


class CropMethod:
    """A baseline or M (`.name`, `.modify_crops`) applied to each face box enlarged x`enlarge`."""

    def __init__(self, modifier, enlarge: float = baselines.ENLARGE, seed: int = 0):
        self.modifier = baselines.get_modifier(modifier, seed=seed)
        self.name = self.modifier.name
        self.enlarge = float(enlarge)
        self.cache_key = _crop_cache_key(self.modifier, isinstance(modifier, str), seed)

    def modify(self, images: Sequence[np.ndarray], boxes: Sequence) -> tuple[list, list]:
        """(modified photos, [True]: the face box was modified)."""
        out = baselines.anonymize_frames(list(images), [np.asarray(b, np.float64).reshape(1, 4)
                                                         for b in boxes], self.modifier, self.enlarge)
        return out, [True] * len(out)


def _crop_cache_key(modifier, by_name: bool, seed: int) -> str | None:
    """A name for the method's cached measurements that changes when its output would."""
    name = modifier.name
    if by_name and name in baselines.BASELINE_NAMES:
        return f"{name}-seed{seed}"
    key = getattr(modifier, "cache_key", None)
    if key and key != name:
        return key  # with a checkpoint's digest (evaluation.models.load_modifier)
    model = getattr(modifier, "model", None)
    if model is not None and hasattr(model, "get_weights"):  # M in memory: digest its weights
        sha = hashlib.sha256()
        for w in model.get_weights():
            sha.update(np.ascontiguousarray(w).tobytes())
        return f"{name}-w{sha.hexdigest()[:12]}"
    path = getattr(modifier, "model_path", None)
    if path is not None and Path(path).is_file():
        from privacy_anon.evaluation.models import file_digest

        return f"{name}-tflite-{file_digest(path)}"
    return None  # unknown object: measured afresh every run


class RuntimeMethod:
    """The product path: `runtime.Anonymizer` on the whole photo, with its own face detection.

    Args:
        anonymizer: a bundle folder / .zip path, or an `Anonymizer`.
        name: the method name in reports (default: "bundle"; for an Anonymizer running a
            baseline, "runtime-<baseline>").
        num_threads: interpreter threads when a path is given.
    """

    def __init__(self, anonymizer, name: str | None = None, num_threads: int = 2):
        from privacy_anon.runtime.pipeline import Anonymizer

        key = None
        if isinstance(anonymizer, (str, Path)):
            anonymizer = Anonymizer(str(anonymizer), num_threads=num_threads)
        if not isinstance(anonymizer, Anonymizer):
            raise InputError(f"not a bundle path or runtime Anonymizer: {anonymizer!r}")
        name = name or ("bundle" if anonymizer.bundle is not None else f"runtime-{anonymizer.name}")
        if anonymizer.bundle is not None:
            files = anonymizer.bundle.manifest.get("files", {})
            stamp = repr((sorted((k, v.get("sha256")) for k, v in files.items()),
                          anonymizer.enlarge, anonymizer.bundle.detector_settings,
                          getattr(anonymizer.detector, "score_threshold", None),
                          getattr(anonymizer.detector, "min_face_size", None)))
            key = f"{name}-rt-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"
        self.anonymizer, self.name, self.cache_key = anonymizer, name, key

    def modify(self, images: Sequence[np.ndarray], boxes: Sequence) -> tuple[list, list]:
        """(modified photos, whether a replaced region covers each face box's centre)."""
        out, covered = [], []
        for image, box in zip(images, boxes):
            self.anonymizer.reset()  # still photos: no face held over from another photo
            result = self.anonymizer.process(image)
            self.anonymizer.reset()
            if result.image is None:  # dropped after a failure: the product shows nothing
                out.append(np.zeros_like(image))
                covered.append(True)
                continue
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            r = np.asarray(result.regions, np.float64).reshape(-1, 4)
            covered.append(bool(result.status != "ok" or np.any(
                (r[:, 0] <= cx) & (cx < r[:, 2]) & (r[:, 1] <= cy) & (cy < r[:, 3]))))
            out.append(result.image)
        return out, covered


def resolve_methods(methods, enlarge: float = baselines.ENLARGE, seed: int = 0,
                    bundle=None, modifier=None) -> list:
    """`CropMethod` / `RuntimeMethod` objects from names, modifier objects, bundle paths.

    Args:
        methods: a comma-separated string or a sequence of: baseline names; 'learned'
            (with `modifier`: a checkpoint path or a modifier object); 'bundle' (with
            `bundle`: a bundle path); a bundle folder / .zip path; modifier objects
            (`KerasModifier`, `TFLiteModifier`) or a `FaceModifier` model (named "learned");
            `runtime.Anonymizer`, `CropMethod` or `RuntimeMethod` objects.
        enlarge: face-box enlargement for crop methods.
        seed: seed of the random baselines.

    Raises:
        InputError: an unknown name, a repeated name, 'learned' / 'bundle' without its
            model, a bundle that does not load (one line naming the file).
    """
    from privacy_anon.runtime.pipeline import Anonymizer

    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    methods = list(methods or [])
    if not methods:
        raise InputError(f"empty method list; choose from: {', '.join(baselines.modifier_names())}, "
                         "learned, bundle")
    # names first, so a typo fails before any model loads
    for m in methods:
        if isinstance(m, str) and m not in ("learned", "bundle") and not _looks_like_bundle(m):
            baselines.get_modifier(m)
        if m == "learned" and modifier is None:
            raise InputError("method 'learned' needs --modifier CKPT (a .keras FaceModifier, a run "
                             "directory holding modifier.keras, or a .tflite M)")
        if m == "bundle" and bundle is None:
            raise InputError("method 'bundle' needs --bundle PATH (a bundle folder or .zip "
                             "written by `privacy-anon export`)")
    out = []
    for m in methods:
        if isinstance(m, (CropMethod, RuntimeMethod)):
            out.append(m)
        elif isinstance(m, Anonymizer):
            out.append(RuntimeMethod(m))
        elif m == "bundle":
            out.append(RuntimeMethod(bundle))
        elif m == "learned":
            if isinstance(modifier, (str, Path)):
                from privacy_anon.evaluation.models import load_modifier

                out.append(CropMethod(load_modifier(modifier), enlarge, seed))
            elif not baselines.is_modifier(modifier):
                from privacy_anon.evaluation.models import KerasModifier

                out.append(CropMethod(KerasModifier(modifier), enlarge, seed))
            else:
                out.append(CropMethod(modifier, enlarge, seed))
        elif not isinstance(m, (str, Path)) and not baselines.is_modifier(m) and \
                isinstance(getattr(m, "input_size", None), int):
            from privacy_anon.evaluation.models import KerasModifier

            out.append(CropMethod(KerasModifier(m), enlarge, seed))  # a FaceModifier model itself
        elif isinstance(m, (str, Path)) and _looks_like_bundle(m):
            taken = {x.name for x in out}
            out.append(RuntimeMethod(m, name="bundle" if "bundle" not in taken else f"bundle-{Path(m).stem}"))
        else:
            out.append(CropMethod(m, enlarge, seed))
    names = [m.name for m in out]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"method list names {', '.join(repeated)} more than once")
    return out


def _looks_like_bundle(m) -> bool:
    if not isinstance(m, (str, Path)):
        return False
    p = Path(m)
    return str(m).endswith(".zip") or p.is_dir() or "/" in str(m)


# ----------------------------------------------------------------------------- measures


def box_region(box, width: int, height: int, scale: float = 1.0) -> tuple[int, int, int, int]:
    """Integer (x1, y1, x2, y2) pixels of `box` scaled about its centre, clipped (x2, y2 exclusive)."""
    regions = baselines.face_regions(np.asarray(box, np.float64).reshape(1, 4), width, height, scale)
    if not len(regions):
        raise DataError(f"face box {list(box)} lies outside the {width}x{height} photo")
    return tuple(int(v) for v in regions[0])


def pixel_measures(original: np.ndarray, modified: np.ndarray, box, scale: float = 1.0) -> np.ndarray:
    """[ssim, psnr (dB, capped), mean saturation original, modified, chroma shift] inside
    the box."""
    import cv2
    from skimage.metrics import structural_similarity

    x1, y1, x2, y2 = box_region(box, original.shape[1], original.shape[0], scale)
    a, b = original[y1:y2, x1:x2], modified[y1:y2, x1:x2]
    side = min(a.shape[:2])
    win = min(7, side if side % 2 else side - 1)
    ssim = float(structural_similarity(a, b, channel_axis=-1, data_range=255, win_size=win)) \
        if win >= 3 else float("nan")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    psnr = min(PSNR_CAP, 10 * np.log10(255.0 ** 2 / mse)) if mse > 0 else PSNR_CAP
    sat = lambda x: float(cv2.cvtColor(x, cv2.COLOR_RGB2HSV)[..., 1].mean())
    chroma = lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(np.float64)
    shift = float(np.sqrt(((chroma(a) - chroma(b)) ** 2).sum(-1)).mean())
    return np.array([ssim, psnr, sat(a), sat(b), shift], np.float32)


def landmark_shift(original, modified) -> float:
    """Mean distance of 5 landmarks divided by the original's inter-ocular distance (NaN if
    either is missing)."""
    a, b = np.asarray(original, np.float64), np.asarray(modified, np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    iod = np.linalg.norm(a[0] - a[1])
    return float(np.linalg.norm(a - b, axis=1).mean() / iod) if iod > 0 else float("nan")


def square_view(image: np.ndarray, box, scale: float, size: int) -> np.ndarray:
    """A `size` x `size` RGB crop: the square of `scale` x the box's longer side about its
    centre, resampled (edge pixels repeated where it leaves the photo)."""
    import cv2

    x1, y1, x2, y2 = (float(v) for v in box)
    side = scale * max(x2 - x1, y2 - y1)
    k = size / max(side, 1e-6)
    matrix = np.array([[k, 0.0, -k * ((x1 + x2) / 2 - side / 2)],
                       [0.0, k, -k * ((y1 + y2) / 2 - side / 2)]])
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(image, matrix, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)


class _Measurer:
    """dlib, MTCNN (and faceres), and the cache of every (method, photo) measurement."""

    def __init__(self, photos, root: Path, cache_dir: Path | None, attacker: str, workers: int,
                 metrics_enlarge: float, progress: bool, faceres: Path | None = None):
        from privacy_anon.evaluation.verification import DlibRecognizer, EmbeddingCache

        self.photos, self.root = photos, root
        self.faceres_dir = faceres
        self._faceres_model = None  # built on first use, like MTCNN
        self.faceres_slot = f"faceres-x{FACERES_VIEW:g}" if faceres is not None else None
        self.cache = EmbeddingCache(cache_dir)
        self.attacker, self.metrics_enlarge, self.progress = attacker, metrics_enlarge, progress
        self.dlib = DlibRecognizer(workers=workers)
        self.dlib_slot = f"dlib-{attacker}"
        self._mtcnn_verifier = None  # built on first use: a fully cached run needs no TensorFlow
        self.timings: dict[str, float] = {}

    @property
    def mtcnn(self):
        from privacy_anon.faces.detector import MtcnnVerifier

        if self._mtcnn_verifier is None:
            # 96 px crops (faces ~48 px): landmarks within ~2% of the inter-ocular distance of
            # 128 px crops' at half the time; mtcnn 1.0 finds nothing in 160 px crops here
            self._mtcnn_verifier = MtcnnVerifier(crop_scale=2.0, crop_size=96, match_iou=FACE_IOU)
        return self._mtcnn_verifier

    def close(self):
        self.dlib.close()

    def _faceres(self, images, photos) -> np.ndarray:
        """(N, 1024) faceres embeddings at each photo's cached face box (`square_view`)."""
        if self._faceres_model is None:
            from privacy_anon.models.recognizer import FrozenRecognizer

            self._faceres_model = FrozenRecognizer("faceres", weights=self.faceres_dir)
        t = time.perf_counter()
        size = self._faceres_model.input_size
        views = np.stack([square_view(im, p.box, FACERES_VIEW, size) for im, p in zip(images, photos)])
        vectors = self._faceres_model(views.astype(np.float32) / 127.5 - 1.0).numpy()
        self.timings["faceres_s"] = self.timings.get("faceres_s", 0) + time.perf_counter() - t
        return vectors

    def load(self, photo: Photo) -> np.ndarray:
        from privacy_anon.evaluation.verification import load_rgb

        return load_rgb(self.root / photo.key)

    def _mtcnn(self, images, photos) -> np.ndarray:
        """(N, 11): [score, 5 landmarks x, y] (score 0 and NaN landmarks: no face)."""
        t = time.perf_counter()
        scores, marks = self.mtcnn.check_faces([(im, p.box) for im, p in zip(images, photos)])
        self.timings["mtcnn_s"] = self.timings.get("mtcnn_s", 0) + time.perf_counter() - t
        return np.concatenate([scores[:, None], marks.reshape(-1, 10)], axis=1)

    def _dlib(self, images, boxes, detect: bool):
        t = time.perf_counter()
        vectors = self.dlib.embed(images, boxes=boxes, detect=detect)
        self.timings["dlib_s"] = self.timings.get("dlib_s", 0) + time.perf_counter() - t
        return vectors, list(self.dlib.last_no_face), self.dlib.last_rects

    def originals(self) -> dict:
        """{key: {"dlib": vector, "rect": dlib rectangle, "mtcnn": (11,), "no_face": bool
        [, "faceres": vector]}}."""
        vec_slot = self.cache.get(self.dlib_slot, "original")
        rect_slot = self.cache.get("dlib-rect", "original")
        mt_slot = self.cache.get("mtcnn", "original")
        fr_slot = self.cache.get(self.faceres_slot, "original") if self.faceres_slot else {}
        needs_dlib = lambda p: p.key not in vec_slot or p.key not in rect_slot or p.key not in mt_slot
        needs_faceres = lambda p: bool(self.faceres_slot) and p.key not in fr_slot
        todo = [p for p in self.photos if needs_dlib(p) or needs_faceres(p)]
        for chunk in self._batches(todo, "original"):
            images = {p.key: self.load(p) for p in chunk}
            part = [p for p in chunk if needs_dlib(p)]
            if part:
                keys, ims = [p.key for p in part], [images[p.key] for p in part]
                # HOG on the original, the face overlapping the cached box (else the box itself)
                vectors, no_face, rects = self._dlib(ims, [p.box for p in part], True)
                self.cache.put(self.dlib_slot, "original", keys, vectors, no_face)
                self.cache.put("dlib-rect", "original", keys, rects, no_face)
                marks = self._mtcnn(ims, part)
                self.cache.put("mtcnn", "original", keys, marks, marks[:, 0] > 0)
                for slot in (self.dlib_slot, "dlib-rect", "mtcnn"):
                    self.cache.save(slot, "original")
            part = [p for p in chunk if needs_faceres(p)]
            if part:
                self.cache.put(self.faceres_slot, "original", [p.key for p in part],
                               self._faceres([images[p.key] for p in part], part))
                self.cache.save(self.faceres_slot, "original")
        return {p.key: {"dlib": vec_slot[p.key][0], "no_face": vec_slot[p.key][1],
                        "rect": rect_slot[p.key][0], "mtcnn": mt_slot[p.key][0],
                        **({"faceres": fr_slot[p.key][0]} if self.faceres_slot else {})}
                for p in self.photos}

    def method(self, method, originals: dict) -> dict:
        """{key: {"dlib", "no_face", "mtcnn", "pixels", "covered"[, "faceres"]}} for the
        modified photos."""
        from privacy_anon.evaluation.verification import EmbeddingCache

        key = method.cache_key
        # a method without a stable key (an unknown object) is measured afresh, in memory
        cache = self.cache if key is not None else EmbeddingCache()
        key = key or method.name
        slots = (self.dlib_slot, "mtcnn", f"pixels2-x{self.metrics_enlarge:g}")
        vec_slot, mt_slot, px_slot = (cache.get(s, key) for s in slots)
        fr_slot = cache.get(self.faceres_slot, key) if self.faceres_slot else {}
        needs_dlib = lambda p: p.key not in vec_slot or p.key not in mt_slot or p.key not in px_slot
        needs_faceres = lambda p: bool(self.faceres_slot) and p.key not in fr_slot
        todo = [p for p in self.photos if needs_dlib(p) or needs_faceres(p)]
        for chunk in self._batches(todo, method.name):
            images = [self.load(p) for p in chunk]
            t = time.perf_counter()
            modified, covered = method.modify(images, [p.box for p in chunk])
            name = f"modify_{method.name}_s"
            self.timings[name] = self.timings.get(name, 0) + time.perf_counter() - t
            # an unchanged photo measures as the original: no need to ask the attackers again
            same = [np.array_equal(o, m) for o, m in zip(images, modified)]
            part = [i for i, p in enumerate(chunk) if needs_dlib(p)]
            if part:
                self._dlib_and_mtcnn(cache, key, [chunk[i] for i in part], [images[i] for i in part],
                                     [modified[i] for i in part], [covered[i] for i in part],
                                     [same[i] for i in part], originals)
            part = [i for i, p in enumerate(chunk) if needs_faceres(p)]
            if part:
                keys = [chunk[i].key for i in part]
                vectors = np.stack([originals[k]["faceres"] for k in keys])
                changed = [j for j, i in enumerate(part) if not same[i]]
                if changed:
                    vectors[changed] = self._faceres([modified[part[j]] for j in changed],
                                                     [chunk[part[j]] for j in changed])
                cache.put(self.faceres_slot, key, keys, vectors)
                cache.save(self.faceres_slot, key)
        return {p.key: {"dlib": vec_slot[p.key][0], "no_face": vec_slot[p.key][1],
                        "mtcnn": mt_slot[p.key][0], "pixels": px_slot[p.key][0][:5],
                        "covered": bool(px_slot[p.key][0][5]),
                        **({"faceres": fr_slot[p.key][0]} if self.faceres_slot else {})}
                for p in self.photos}

    def _dlib_and_mtcnn(self, cache, key, photos, images, modified, covered, same, originals):
        """dlib, MTCNN and the pixel measures of these modified photos, into the cache."""
        keys = [p.key for p in photos]
        pixels = np.stack([np.append(pixel_measures(o, m, p.box, self.metrics_enlarge), c)
                           for o, m, p, c in zip(images, modified, photos, covered)])
        changed = [i for i, s in enumerate(same) if not s]
        vectors = np.stack([originals[k]["dlib"] for k in keys])
        # HOG's verdict on the photo (the box attacker runs no detector: never "no face")
        no_face = [originals[k]["no_face"] and self.attacker == "hog" for k in keys]
        marks = np.stack([originals[k]["mtcnn"] for k in keys])
        if changed:
            sub = [modified[i] for i in changed]
            if self.attacker == "box":
                v, f, _ = self._dlib(sub, [originals[keys[i]]["rect"] for i in changed], False)
            else:
                v, f, _ = self._dlib(sub, [photos[i].box for i in changed], True)
            vectors[changed], marks[changed] = v, self._mtcnn(sub, [photos[i] for i in changed])
            for i, flag in zip(changed, f):
                no_face[i] = flag
        slots = (self.dlib_slot, "mtcnn", f"pixels2-x{self.metrics_enlarge:g}")
        cache.put(slots[0], key, keys, vectors, no_face)
        cache.put(slots[1], key, keys, marks, marks[:, 0] > 0)
        cache.put(slots[2], key, keys, pixels)
        for s in slots:
            cache.save(s, key)

    def _batches(self, todo, label):
        steps = range(0, len(todo), BATCH)
        if self.progress and todo:
            from tqdm import tqdm

            steps = tqdm(steps, desc=f"yardstick [{label}]", unit=f"x{BATCH} photos", leave=False)
        for start in steps:
            yield todo[start:start + BATCH]


def summarize(pairs, originals: dict, measured: dict, photos) -> dict:
    """One method's figures from its per-photo measurements (see the module docstring)."""
    from privacy_anon.evaluation.verification import verify

    orig_vec = {k: v["dlib"] for k, v in originals.items()}
    mod_vec = {k: v["dlib"] for k, v in measured.items()}
    ver = verify(pairs, mod_vec)
    reid = verify(pairs, orig_vec, probe_embeddings=mod_vec)
    for r in (ver, reid):
        r.pop("similarity")
    keys = [p.key for p in photos]
    found = np.array([measured[k]["mtcnn"][0] > 0 for k in keys])
    pixels = np.stack([measured[k]["pixels"] for k in keys]).astype(np.float64)
    shifts = np.array([landmark_shift(originals[k]["mtcnn"][1:].reshape(5, 2),
                                      measured[k]["mtcnn"][1:].reshape(5, 2)) for k in keys])
    ok = np.isfinite(shifts)
    second = {}
    if all("faceres" in measured[k] for k in keys) and keys:
        fr_orig = {k: v["faceres"] for k, v in originals.items()}
        fr_mod = {k: v["faceres"] for k, v in measured.items()}
        second = {"faceres_reid_accuracy": verify(pairs, fr_orig, probe_embeddings=fr_mod)["mean"],
                  "faceres_verification_accuracy": verify(pairs, fr_mod)["mean"]}
    return {
        "reid_accuracy": reid["mean"], "reid_std": reid["std"],
        "verification_accuracy": ver["mean"], "verification_std": ver["std"],
        "verification_error": 1.0 - ver["mean"], "reid_error": 1.0 - reid["mean"],
        "face_found": float(found.mean()),
        "ssim": float(np.nanmean(pixels[:, 0])), "psnr": float(pixels[:, 1].mean()),
        "saturation_added": float((pixels[:, 3] - pixels[:, 2]).mean()),
        "chroma_shift": float(pixels[:, 4].mean()),
        "landmark_shift_iod": float(shifts[ok].mean()) if ok.any() else float("nan"),
        "landmark_photos": int(ok.sum()),
        "face_box_modified": float(np.mean([measured[k]["covered"] for k in keys])),
        "no_face_modified": int(sum(measured[k]["no_face"] for k in keys)),
        "num_photos": len(keys), "num_pairs": len(pairs), "recognizer": "dlib",
        **second, "verification": ver, "reid": reid,
    }


# ----------------------------------------------------------------------------- run


def measure_methods(faces_root, boxes_cache, identities, methods, max_photos: int | None = 300,
                    workers: int = 2, seed: int = 0, progress: bool = True,
                    cache_dir: str | Path | None = None, attacker: str = "box",
                    enlarge: float = baselines.ENLARGE, metrics_enlarge: float = 1.0,
                    bundle=None, modifier=None, faceres=None) -> tuple[dict, dict, dict]:
    """(results {method: figures}, facts, examples for before_after.png); writes nothing
    but the measurement cache. Arguments as `run_yardstick`."""
    from privacy_anon.evaluation.run import generate_pairs

    if attacker not in ATTACKERS:
        raise InputError(f"attacker must be one of {ATTACKERS}, got {attacker!r}")
    if int(workers) != workers or workers < 1:
        raise InputError(f"workers must be an integer >= 1, got {workers!r}")
    if not metrics_enlarge > 0:
        raise InputError(f"metrics_enlarge must be > 0, got {metrics_enlarge!r}")
    if faceres:  # its two files checked before any work
        from privacy_anon.models.recognizer import faceres_model_path

        faceres = faceres_model_path(faceres).parent
    start = time.perf_counter()
    resolved = resolve_methods(methods, enlarge, seed, bundle=bundle, modifier=modifier)
    photos, facts = select_photos(faces_root, boxes_cache, identities, max_photos, seed)
    by_identity: dict[str, list[str]] = {}
    for p in photos:
        by_identity.setdefault(p.identity, []).append(p.key)
    # 10 folds (LFW's) when the photos allow; fewer for small sets (at least one same-person pair a fold)
    possible = sum(len(k) * (len(k) - 1) // 2 for k in by_identity.values())
    pairs = generate_pairs(by_identity, folds=min(PAIR_FOLDS, max(2, possible)), seed=seed)
    if cache_dir is not None:
        stamp = f"{facts['faces_root']}|{facts['boxes_cache']}|{attacker}|{FACE_IOU}|mtcnn96x2"
        cache_dir = Path(cache_dir) / f"yardstick-{hashlib.sha256(stamp.encode()).hexdigest()[:10]}"
    measurer = _Measurer(photos, Path(faces_root), cache_dir, attacker, workers, metrics_enlarge,
                         progress, faceres or None)
    try:
        originals = measurer.originals()
        results = {}
        for method in resolved:
            t = time.perf_counter()
            measured = measurer.method(method, originals)
            results[method.name] = summarize(pairs, originals, measured, photos)
            results[method.name]["seconds"] = round(time.perf_counter() - t, 1)
        examples = _examples(measurer, resolved, photos)
    finally:
        measurer.close()
    keys = [p.key for p in photos]
    facts.update(
        methods=[m.name for m in resolved], attacker=attacker, enlarge=enlarge,
        metrics_box_scale=metrics_enlarge, num_pairs=len(pairs), workers=workers,
        face_found_original=float(np.mean([originals[k]["mtcnn"][0] > 0 for k in keys])),
        dlib_hog_no_face_original=int(sum(originals[k]["no_face"] for k in keys)),
        cache_dir=str(cache_dir) if cache_dir else None,
        second_attacker=f"faceres, a square {FACERES_VIEW:g} x the face box" if faceres else None,
        timings={**{k: round(v, 1) for k, v in measurer.timings.items()},
                 "total_s": round(time.perf_counter() - start, 1)})
    return results, facts, examples


def _examples(measurer, methods, photos) -> dict:
    """A few photos (one per identity) through every method: crops around the face for the figure."""
    picked, seen = [], set()
    for p in photos:
        if p.identity not in seen:
            picked.append(p), seen.add(p.identity)
        if len(picked) == EXAMPLES:
            break
    images = [measurer.load(p) for p in picked]
    regions = [box_region(p.box, im.shape[1], im.shape[0], 2.0) for p, im in zip(picked, images)]
    crop = lambda im, r: im[r[1]:r[3], r[0]:r[2]]
    out = {"keys": [p.key for p in picked], "original": [crop(im, r) for im, r in zip(images, regions)]}
    for m in methods:
        modified, _ = m.modify(images, [p.box for p in picked])
        out[m.name] = [crop(im, r) for im, r in zip(modified, regions)]
    return out


def run_yardstick(faces_root, boxes_cache, identities, methods, out_dir, max_photos: int | None = 300,
                  workers: int = 2, seed: int = 0, progress: bool = True,
                  cache_dir: str | Path | None = None, attacker: str = "box",
                  enlarge: float = baselines.ENLARGE, metrics_enlarge: float = 1.0,
                  bundle=None, modifier=None, faceres=None, run: dict | None = None) -> dict:
    """Measures every method on the photos and writes the report into `out_dir`.

    Args:
        faces_root: folder-per-identity photos (read in place).
        boxes_cache: their `detect-faces --format folders` cache.
        identities: None (all), a file of identity names (one per line), or a list.
        methods: see `resolve_methods` (baseline names, modifier objects, bundle paths,
            runtime Anonymizers; 'learned' / 'bundle' with `modifier` / `bundle`).
        out_dir: report folder (created): report.json, privacy_plane.png,
            before_after.png, yardstick.md.
        max_photos: deterministic subset size spread over the identities (None: all).
        workers: dlib worker processes.
        seed: photo subset, pairs and random baselines.
        progress: progress bars.
        cache_dir: measurement cache (default `out_dir/cache`).
        attacker: "box" (dlib at the original face rectangle) or "hog" (dlib's detector
            on the modified photo).
        enlarge: face-box enlargement for crop methods (paper: 1.6).
        metrics_enlarge: scale of the face box inside which SSIM, PSNR, saturation are measured.
        faceres: a folder with faceres.json and faceres.bin (`models.recognizer`): faceres
            attacks the same pairs as a second recognizer (None: dlib alone).
        run: extra facts stored under "run" in report.json.

    Returns:
        {method name: {"reid_accuracy", "verification_accuracy", "face_found", "ssim",
        "psnr", "saturation_added", "chroma_shift", "landmark_shift_iod", "num_photos", "num_pairs",
        "reid_std", "verification_std", "landmark_photos", "no_face_modified",
        "face_box_modified", "seconds", "verification": {...}, "reid": {...}}}, and with
        `faceres`: "faceres_reid_accuracy", "faceres_verification_accuracy".
    """
    from privacy_anon.evaluation.report import write_yardstick_report

    out = Path(out_dir)
    results, facts, examples = measure_methods(
        faces_root, boxes_cache, identities, methods, max_photos, workers, seed, progress,
        cache_dir if cache_dir is not None else out / "cache", attacker, enlarge,
        metrics_enlarge, bundle, modifier, faceres)
    write_yardstick_report(results, out, run={**(run or {}), "yardstick": facts}, examples=examples)
    return results
