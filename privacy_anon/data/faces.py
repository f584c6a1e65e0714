"""Identity face data: the folder-per-identity layout, and synthetic identities.

A face set is held as `FaceSet`: images resized to M's input size S (uint8), integer
identity labels, and for each image either 5 landmarks (pixels of the S x S image) or none.
`make_face_dataset` turns it into a `tf.data` pipeline of
`{"faces": (B, S, S, 3) in [-1, 1], "identity": (B,), "align": (B, 2, 3)}`, where `align`
maps D's aligned output pixels to positions in the S x S face (see `faces/geometry.py`).

Folder layout (CASIA-WebFace): `root/<identity>/<image>.jpg|png|...`. Optional landmarks CSV
(header `path,x1,y1,...,x5,y5`, path relative to root, landmarks in original pixels, MTCNN
order), as written by `privacy-anon detect-faces ROOT --format folders`. Images the CSV does
not list (no face found) are left out and counted; rows that name no image are errors.
Without a CSV, D sees a canonical crop of each image (`DataConfig.canonical_crop`).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from privacy_anon.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
LANDMARK_COLUMNS = ["path"] + [f"{a}{i}" for i in range(1, 6) for a in ("x", "y")]


@dataclass
class FaceSet:
    images: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) int32
    landmarks: np.ndarray  # (N, 5, 2) float32 in S x S pixels; NaN where unknown
    identities: list[str]  # label -> name
    paths: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_identities(self) -> int:
        return len(self.identities)

    def subset(self, index) -> "FaceSet":
        index = np.asarray(index)
        return FaceSet(self.images[index], self.labels[index], self.landmarks[index],
                       self.identities, None if self.paths is None else [self.paths[i] for i in index])

    def split(self, holdout_fraction: float, seed: int = 0) -> tuple["FaceSet", "FaceSet"]:
        """Per identity, `holdout_fraction` of the images (at least one) go to the second set."""
        rng = np.random.default_rng(seed)
        train, held = [], []
        for label in range(self.num_identities):
            idx = np.flatnonzero(self.labels == label)
            rng.shuffle(idx)
            n_held = max(1, int(round(len(idx) * holdout_fraction))) if len(idx) > 1 else 0
            held += list(idx[:n_held])
            train += list(idx[n_held:])
        return self.subset(sorted(train)), self.subset(sorted(held))

    def split_identities(self, fraction: float, seed: int = 0) -> tuple["FaceSet", "FaceSet"]:
        """Whole identities apart: `fraction` of the people (at least one when > 0) go to the
        second set, for a yardstick on strangers. Each set is relabelled 0..K-1 over its own
        identities, so D's classes are only the people it trains on."""
        if not 0.0 <= fraction < 1.0:
            raise DataError(f"data.holdout_identities must be in [0, 1), got {fraction}")
        n = self.num_identities
        held = set()
        if fraction > 0:
            k = min(n - 1, max(1, int(round(n * fraction))))
            held = set(np.random.default_rng([seed, 23]).choice(n, k, replace=False).tolist())
        return (self._keep_identities([i for i in range(n) if i not in held]),
                self._keep_identities(sorted(held)))

    def _keep_identities(self, labels) -> "FaceSet":
        index = np.flatnonzero(np.isin(self.labels, labels))
        remap = np.full(self.num_identities, -1, np.int32)
        remap[np.asarray(labels, np.int64)] = np.arange(len(labels), dtype=np.int32)
        part = self.subset(index)
        return FaceSet(part.images, remap[part.labels], part.landmarks,
                       [self.identities[i] for i in labels], part.paths)


# ----------------------------------------------------------------------------- folders


def list_identity_folder(root: str | Path) -> list[tuple[str, str]]:
    """(relative path, identity) of every image under `root/<identity>/`; checks the layout."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: face data folder not found")
    items = []
    identities = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not identities:
        raise DataError(f"{root}: no identity folders (expected root/<identity>/<image>)")
    for ident in identities:
        files = sorted(p for p in ident.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{ident}: identity folder has no images")
        items += [(f"{ident.name}/{f.name}", ident.name) for f in files]
    return items


def read_landmarks_csv(path: str | Path) -> dict[str, np.ndarray]:
    """{relative path: (5, 2) landmarks} from a landmarks CSV; malformed rows are errors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: landmarks CSV not found")
    out = {}
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != LANDMARK_COLUMNS:
            raise DataError(f"{path}: header must be {','.join(LANDMARK_COLUMNS)}")
        for row_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(LANDMARK_COLUMNS):
                raise DataError(f"{path}:{row_no}: expected {len(LANDMARK_COLUMNS)} fields, got {len(row)}")
            try:
                values = np.array([float(v) for v in row[1:]], np.float32).reshape(5, 2)
            except ValueError:
                raise DataError(f"{path}:{row_no}: landmark values must be numbers") from None
            if not np.all(np.isfinite(values)):
                raise DataError(f"{path}:{row_no}: landmark values must be finite")
            out[row[0]] = values
    return out


def _read_image(path: Path) -> np.ndarray:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None:
        raise DataError(f"{path}: cannot read image (missing, empty or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_identity_folder(root: str | Path, size: int, landmarks_csv: str | Path | None = None,
                         progress: bool = True, face_crop: float = 0.0) -> FaceSet:
    """Reads `root/<identity>/<image>` into memory, resized to `size` x `size`.

    Whole images are resized (CASIA-WebFace and LFW images are face-centred crops). For wild
    photos, run `privacy-anon detect-faces --format folders` first and pass its CSV, with
    `face_crop` > 0: each image is then cut to a square around its landmarks, `face_crop`
    times their extent (about 3.5 matches the x1.6-enlarged face boxes M sees on video).
    """
    import cv2
    from tqdm import tqdm

    root = Path(root)
    items = list_identity_folder(root)
    marks = read_landmarks_csv(landmarks_csv) if landmarks_csv else None
    if marks is not None:
        known = {p for p, _ in items}
        unknown = [p for p in marks if p not in known]
        if unknown:
            raise DataError(f"{landmarks_csv}: row for {unknown[0]!r}, which is not an image under {root}")
        skipped = [p for p, _ in items if p not in marks]
        items = [it for it in items if it[0] in marks]
        if skipped:
            print(f"{len(skipped)} of {len(skipped) + len(items)} images have no landmarks "
                  f"(no face found) and are left out")
        if not items:
            raise DataError(f"{landmarks_csv}: lists none of the images under {root}")
    names = sorted({ident for _, ident in items})
    label_of = {n: i for i, n in enumerate(names)}
    images = np.empty((len(items), size, size, 3), np.uint8)
    landmarks = np.full((len(items), 5, 2), np.nan, np.float32)
    # disable=None: no bar when stderr is not a terminal (a log file, a pipe)
    for i, (rel, ident) in enumerate(tqdm(items, desc=f"reading {root.name}",
                                          disable=None if progress else True, unit="img")):
        image = _read_image(root / rel)
        h, w = image.shape[:2]
        if marks is not None and face_crop > 0:
            images[i], landmarks[i] = _crop_around(image, marks[rel], face_crop, size)
            continue
        images[i] = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        if marks is not None:
            landmarks[i] = marks[rel] * np.array([size / w, size / h], np.float32)
    labels = np.array([label_of[ident] for _, ident in items], np.int32)
    return FaceSet(images, labels, landmarks, names, [rel for rel, _ in items])


def _crop_around(image: np.ndarray, points: np.ndarray, factor: float, size: int):
    """A `size` square cut around the landmarks (edge pixels repeated outside the photo)."""
    import cv2

    centre = (points.min(0) + points.max(0)) / 2
    side = factor * float(max(np.ptp(points[:, 0]), np.ptp(points[:, 1]), 1.0))
    scale = size / side
    matrix = np.array([[scale, 0, size / 2 - scale * centre[0]],
                       [0, scale, size / 2 - scale * centre[1]]], np.float32)
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, (points * scale + matrix[:, 2]).astype(np.float32)


# ----------------------------------------------------------------------------- synthetic


def _identity_traits(identity: int, seed: int) -> dict:
    """Per-identity geometry and colours: what D must learn to tell people apart by."""
    rng = np.random.default_rng([seed, identity, 7])
    skin = rng.uniform([90, 60, 40], [240, 200, 170])
    return {
        "skin": skin,
        "face_w": rng.uniform(0.26, 0.36),
        "face_h": rng.uniform(0.34, 0.44),
        "eye_y": rng.uniform(-0.10, -0.02),
        "eye_dx": rng.uniform(0.10, 0.17),
        "eye_r": rng.uniform(0.025, 0.05),
        "iris": rng.uniform(0, 200, 3),
        "brow_tilt": rng.uniform(-0.04, 0.04),
        "brow_thick": rng.uniform(0.008, 0.03),
        "nose_len": rng.uniform(0.06, 0.14),
        "nose_w": rng.uniform(0.02, 0.06),
        "mouth_y": rng.uniform(0.14, 0.22),
        "mouth_dx": rng.uniform(0.06, 0.14),
        "lip": np.clip(skin * rng.uniform(0.4, 0.8) + rng.uniform(0, 60, 3), 0, 255),
        "hair": rng.uniform(0, 255, 3) * rng.uniform(0.2, 1.0),
        "hair_h": rng.uniform(0.0, 0.16),
        "side_hair": bool(rng.integers(2)),
        "beard": bool(rng.random() < 0.3),
        "glasses": bool(rng.random() < 0.25),
    }


def render_face(traits: dict, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One photo of an identity: random pose, scale, shift, lighting. Returns image, landmarks."""
    import cv2

    big = size * 2  # drawn at 2x and shrunk, for anti-aliased edges
    t = traits
    bg = rng.uniform(30, 225, 3)
    img = np.empty((big, big, 3), np.float32)
    img[:] = bg
    img += np.linspace(-20, 20, big)[None, :, None] * rng.uniform(-1, 1)

    def px(v):
        return int(round(v * big))

    def pt(x, y):
        return (px(0.5 + x), px(0.5 + y))

    def color(c):
        return tuple(float(v) for v in c)

    # hair behind the head, head, hair on top
    if t["side_hair"]:
        cv2.ellipse(img, pt(0, -0.02), (px(t["face_w"] + 0.05), px(t["face_h"] + 0.04)), 0, 180, 360,
                    color(t["hair"]), -1, cv2.LINE_AA)
    cv2.ellipse(img, pt(0, 0.02), (px(t["face_w"]), px(t["face_h"])), 0, 0, 360, color(t["skin"]), -1,
                cv2.LINE_AA)
    if t["hair_h"] > 0.02:
        cv2.ellipse(img, pt(0, -t["face_h"] + 0.06), (px(t["face_w"] + 0.01), px(t["hair_h"] + 0.04)),
                    0, 180, 360, color(t["hair"]), -1, cv2.LINE_AA)
    if t["beard"]:
        cv2.ellipse(img, pt(0, t["mouth_y"] + 0.05), (px(t["face_w"] * 0.8), px(0.12)), 0, 0, 180,
                    color(t["hair"]), -1, cv2.LINE_AA)
    eyes = []
    for side in (-1, 1):
        ex, ey = side * t["eye_dx"], t["eye_y"]
        eyes.append((ex, ey))
        cv2.ellipse(img, pt(ex, ey), (px(t["eye_r"] * 1.6), px(t["eye_r"])), 0, 0, 360,
                    (245, 245, 245), -1, cv2.LINE_AA)
        cv2.circle(img, pt(ex, ey), px(t["eye_r"] * 0.7), color(t["iris"]), -1, cv2.LINE_AA)
        by = ey - t["eye_r"] - 0.03
        cv2.line(img, pt(ex - 0.05, by + side * t["brow_tilt"]), pt(ex + 0.05, by - side * t["brow_tilt"]),
                 color(t["hair"] * 0.6), max(1, px(t["brow_thick"])), cv2.LINE_AA)
        if t["glasses"]:
            cv2.circle(img, pt(ex, ey), px(t["eye_r"] * 2.2), (20, 20, 20), max(1, px(0.008)), cv2.LINE_AA)
    nose = (0.0, t["eye_y"] + t["nose_len"] + 0.03)
    nose_poly = np.array([pt(0, t["eye_y"] + 0.02), pt(-t["nose_w"], nose[1]), pt(t["nose_w"], nose[1])])
    cv2.fillConvexPoly(img, nose_poly, color(t["skin"] * 0.75), cv2.LINE_AA)
    mouth_l, mouth_r = (-t["mouth_dx"], t["mouth_y"]), (t["mouth_dx"], t["mouth_y"])
    cv2.ellipse(img, pt(0, t["mouth_y"]), (px(t["mouth_dx"]), px(0.025)), 0, 0, 360, color(t["lip"]), -1,
                cv2.LINE_AA)
    marks = np.array([eyes[0], eyes[1], nose, mouth_l, mouth_r], np.float32) + 0.5  # unit coords

    # pose: rotation, scale and shift about the centre
    angle = rng.uniform(-12, 12)
    scale = rng.uniform(0.85, 1.1)
    shift = rng.uniform(-0.06, 0.06, 2) * big
    mat = cv2.getRotationMatrix2D((big / 2, big / 2), angle, scale)
    mat[:, 2] += shift
    img = cv2.warpAffine(img, mat, (big, big), borderMode=cv2.BORDER_REFLECT)
    marks_px = marks * big
    marks_px = marks_px @ mat[:, :2].T + mat[:, 2]

    # lighting: gain, a directional gradient, a colour cast, sensor noise
    gain = rng.uniform(0.7, 1.2)
    direction = rng.uniform(-1, 1, 2)
    ys, xs = np.mgrid[0:big, 0:big] / big - 0.5
    shade = 1 + 0.35 * (direction[0] * xs + direction[1] * ys)
    img = img * gain * shade[..., None] * rng.uniform(0.9, 1.1, 3)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    img += rng.normal(0, 4, img.shape)
    # (big-pixel centre coordinates to small-pixel centre coordinates)
    marks_small = (marks_px + 0.5) / 2 - 0.5
    return np.clip(img, 0, 255).astype(np.uint8), marks_small.astype(np.float32)


def synthetic_faces(num_identities: int, images_per_identity: int, size: int,
                    seed: int = 0) -> FaceSet:
    """Procedural faces whose geometry and colours depend on the identity.

    Each image has its own pose, scale, position and lighting; the exact landmarks come with
    it. Deterministic for a seed. Learnable: D tells a few dozen identities apart well above
    chance within a few hundred steps (see tests/test_data_faces.py).
    """
    if num_identities < 2 or images_per_identity < 1:
        raise ValueError(f"need >= 2 identities and >= 1 image each, received "
                         f"{num_identities} x {images_per_identity}")
    n = num_identities * images_per_identity
    images = np.empty((n, size, size, 3), np.uint8)
    landmarks = np.empty((n, 5, 2), np.float32)
    labels = np.repeat(np.arange(num_identities, dtype=np.int32), images_per_identity)
    for ident in range(num_identities):
        traits = _identity_traits(ident, seed)
        rng = np.random.default_rng([seed, ident, 11])
        for j in range(images_per_identity):
            k = ident * images_per_identity + j
            images[k], landmarks[k] = render_face(traits, size, rng)
    names = [f"synthetic_{i:04d}" for i in range(num_identities)]
    return FaceSet(images, labels, landmarks, names)


# ----------------------------------------------------------------------------- tf.data


def alignment_matrices(faces: FaceSet, height: int, width: int,
                       canonical_crop=(0.0, 0.0, 1.0, 1.0)) -> np.ndarray:
    """(N, 2, 3) D-output-to-face matrices: landmark alignment, or the canonical crop."""
    from privacy_anon.faces import geometry

    size = faces.images.shape[1]
    has = np.all(np.isfinite(faces.landmarks), axis=(1, 2))
    out = np.empty((len(faces), 2, 3), np.float32)
    if has.any():
        out[has] = geometry.alignment_matrix(faces.landmarks[has], height, width).numpy()
    if (~has).any():
        top, left, h, w = canonical_crop
        box = np.array([left * size, top * size, (left + w) * size - 1, (top + h) * size - 1], np.float32)
        out[~has] = geometry.box_matrix(box, height, width).numpy()
    return out


def make_face_dataset(faces: FaceSet, align: np.ndarray, batch_size: int, shuffle: bool = True,
                      repeat: bool = True, seed: int = 0, augment: bool = False,
                      extra: dict | None = None):
    """A `tf.data.Dataset` of face batches (see the module docstring); `extra` maps further
    keys to per-face arrays (or tuples of them) that ride along with each face."""
    import tensorflow as tf

    if len(faces) < batch_size and not repeat:
        raise DataError(f"only {len(faces)} faces for a batch of {batch_size}")
    extra = dict(extra or {})
    ds = tf.data.Dataset.from_tensor_slices(
        {"faces": faces.images, "identity": faces.labels, "align": align, **extra})
    if shuffle:
        ds = ds.shuffle(len(faces), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def prepare(item):
        img = tf.cast(item["faces"], tf.float32) / 127.5 - 1.0
        if augment:
            img = tf.clip_by_value(img * tf.random.uniform([], 0.85, 1.15)
                                   + tf.random.uniform([], -0.1, 0.1), -1.0, 1.0)
        return {**item, "faces": img}

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def load_faces(cfg, seed: int | None = None, progress: bool = True) -> FaceSet:
    """The face set named by `cfg.data.faces`: "synthetic" or a folder-per-identity root."""
    seed = cfg.train.seed if seed is None else seed
    size = cfg.modifier.input_size
    if cfg.data.faces == "synthetic":
        return synthetic_faces(cfg.data.num_identities, cfg.data.images_per_identity, size, seed)
    return load_identity_folder(cfg.data.faces, size, cfg.data.landmarks_csv or None, progress,
                                face_crop=cfg.data.face_crop)


def steps_for(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))
