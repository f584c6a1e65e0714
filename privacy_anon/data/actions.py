"""Action data: JHMDB (split 1), DALY, a generic CSV box format, and synthetic action frames.

Every reader returns an `ActionData`: a list of `FrameRecord`s (one per annotated frame; the
pixels stay on disk until `load_frame`) and the action class names. Class ids are 1-based
(0 is the background, as in the detector). `load_frame(record)` gives the per-frame dict

    image       uint8 (H, W, 3) RGB, resized by the data set's rule
    boxes       float32 (N, 4) [x1, y1, x2, y2] action boxes, pixels of the resized frame
    classes     int32 (N,) 1-based action ids
    face_boxes  float32 (F, 4) face boxes, pixels of the resized frame
    frame_key   str, the frame's path relative to the data-set root (face-box cache key)

and `make_dataset` batches frames for training with fixed shapes (see its docstring).

Resize rules (paper section 4): JHMDB frames get a shorter side of 340 px; DALY frames are
resized to 600 x 800 (height x width; DALY's videos are landscape); CSV frames are fitted
inside a size you choose, aspect kept; synthetic frames are drawn at their size.

Layouts read:
- JHMDB, as published: `Rename_Images/<class>/<video>/%05d.png`,
  `puppet_mask/<class>/<video>/puppet_mask.mat` (variable `part_mask`, H x W x T, one binary
  mask per frame; a frame's person box is the bounding box of its nonzero pixels, i.e.
  [min x, min y, max x + 1, max y + 1]), `splits/<class>_test_split<k>.txt` (lines
  `<video>.avi 1|2`, 1 = train, 2 = test).
- DALY: the annotation pickle `daly1.1.0.pkl`, a dict with 'labels' (the 10 class names),
  'splits' (`splits[0]`: the test videos), 'metadata' and 'annot':
  `annot[video]['annot'][action]` is a list of instances with 'beginTime', 'endTime',
  'flags' and 'keyframes'; a keyframe has 'frameNumber' (1-based), 'time' and
  'boundingBox' (a (1, 4) array [x1, y1, x2, y2] relative to the frame, 0..1). It is read
  with a restricted unpickler (annotation files are untrusted input): plain containers,
  numbers, strings and numeric numpy arrays only. Frames are read from
  `<frames_root>/<video stem>/<frameNumber:06d>.jpg`, which `extract_daly_frames` writes
  from your copies of the videos (`<videos_root>/<video>`, e.g. `abc.mp4`).
- CSV: header `frame_path,x1,y1,x2,y2,action`, one row per action box, `frame_path`
  relative to the CSV's folder (or `root`), boxes in pixels of the original frame.

Face boxes: readers accept `face_boxes`, a mapping {frame key: (F, 4) boxes in original
pixels} (e.g. the cache from `privacy-anon detect-faces`); frames missing from it have no
faces (they reach A unmodified). Bad input raises `DataError` with one line that names the
file and the row (line, frame or annotation entry).
"""

from __future__ import annotations

import csv
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from privacy_anon.errors import DataError

__all__ = [
    "ActionData",
    "DALY_FRAME_SIZE",
    "FrameRecord",
    "JHMDB_CLASSES",
    "JHMDB_SHORTER_SIDE",
    "SYNTHETIC_ACTIONS",
    "daly_frame_path",
    "extract_daly_frames",
    "iter_frames",
    "letterbox",
    "load_daly_annotations",
    "load_frame",
    "make_dataset",
    "read_csv",
    "read_daly",
    "read_jhmdb",
    "resized_shape",
    "steps_per_epoch",
    "synthetic_actions",
]

JHMDB_CLASSES = (
    "brush_hair", "catch", "clap", "climb_stairs", "golf", "jump", "kick_ball", "pick", "pour",
    "pullup", "push", "run", "shoot_ball", "shoot_bow", "shoot_gun", "sit", "stand",
    "swing_baseball", "throw", "walk", "wave",
)
JHMDB_SHORTER_SIDE = 340
DALY_FRAME_SIZE = (600, 800)  # (height, width)
CSV_COLUMNS = ["frame_path", "x1", "y1", "x2", "y2", "action"]
# Synthetic poses, by class id 1..5; the first `num_classes` are used.
SYNTHETIC_ACTIONS = ("phoning", "arms_out", "drinking", "waving", "standing")


@dataclass
class FrameRecord:
    """One annotated frame. Boxes are in pixels of the original (stored) frame.

    `resize` is the data set's rule: ("shorter", side), ("fixed", height, width) or
    ("fit", height, width) (aspect kept, fitted inside). `image` holds the pixels of
    in-memory frames (synthetic); otherwise they are read from `path`.
    """

    frame_key: str
    path: str | None
    boxes: np.ndarray  # (N, 4) float32
    classes: np.ndarray  # (N,) int32, 1-based
    face_boxes: np.ndarray  # (F, 4) float32
    resize: tuple
    size: tuple[int, int] | None = None  # original (height, width) when known
    image: np.ndarray | None = field(default=None, repr=False)


@dataclass
class ActionData:
    """Frame records and the names of action classes 1..K (index 0 here is class 1)."""

    records: list[FrameRecord]
    class_names: list[str]
    name: str = ""

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[FrameRecord]:
        return iter(self.records)

    def __getitem__(self, index):
        return self.records[index]

    @property
    def num_classes(self) -> int:
        """Action classes plus the background: the detector's `num_classes`."""
        return len(self.class_names) + 1


# ----------------------------------------------------------------------------- frames


def resized_shape(height: int, width: int, rule: tuple) -> tuple[int, int]:
    """(height, width) of a frame after a resize rule (see `FrameRecord`)."""
    kind = rule[0]
    if kind == "shorter":
        scale = rule[1] / min(height, width)
    elif kind == "fit":
        scale = min(rule[1] / height, rule[2] / width)
    elif kind == "fixed":
        return int(rule[1]), int(rule[2])
    else:
        raise ValueError(f"unknown resize rule {rule!r}")
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def _read_rgb(path: str, where: str) -> np.ndarray:
    import cv2

    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: cannot read this image ({where})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _image_size(path: Path, where: str) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise DataError(f"{where}: image {path} does not exist") from None
    except (UnidentifiedImageError, OSError):
        raise DataError(f"{where}: {path} is not a readable image") from None
    return height, width


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    if image.shape[:2] == (height, width):
        return image
    shrink = height < image.shape[0] or width < image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _scale_boxes(boxes: np.ndarray, sy: float, sx: float) -> np.ndarray:
    return (np.asarray(boxes, np.float32).reshape(-1, 4) * np.float32([sx, sy, sx, sy])).astype(np.float32)


def load_frame(record: FrameRecord) -> dict:
    """Reads a frame and resizes it (and its boxes) by the data set's rule.

    Returns:
        dict with `image` uint8 (H, W, 3), `boxes` float32 (N, 4), `classes` int32 (N,),
        `face_boxes` float32 (F, 4) (pixels of the resized frame) and `frame_key`.
    """
    image = record.image if record.image is not None else _read_rgb(record.path, record.frame_key)
    height, width = image.shape[:2]
    if record.size is not None and tuple(record.size) != (height, width):
        raise DataError(f"{record.path or record.frame_key}: frame is {width}x{height}, but its "
                        f"annotation was made for {record.size[1]}x{record.size[0]}")
    new_h, new_w = resized_shape(height, width, record.resize)
    sy, sx = new_h / height, new_w / width
    return {
        "image": _resize(image, new_h, new_w),
        "boxes": _scale_boxes(record.boxes, sy, sx),
        "classes": np.asarray(record.classes, np.int32).reshape(-1),
        "face_boxes": _scale_boxes(record.face_boxes, sy, sx),
        "frame_key": record.frame_key,
    }


def iter_frames(records: ActionData | Iterable[FrameRecord]) -> Iterator[dict]:
    """`load_frame` for each record in turn."""
    for record in records:
        yield load_frame(record)


def letterbox(image: np.ndarray, boxes: np.ndarray, face_boxes: np.ndarray,
              size: tuple[int, int], fill: int = 128):
    """Fits a frame inside `size` = (height, width), aspect kept, padded bottom/right.

    Padding bottom/right keeps pixel coordinates, so boxes only scale. The fill is
    mid-grey (0 in [-1, 1]).

    Returns:
        (image uint8 (height, width, 3), boxes, face_boxes, scale)
    """
    height, width = size
    scale = min(height / image.shape[0], width / image.shape[1])
    new_h = min(height, max(1, int(round(image.shape[0] * scale))))
    new_w = min(width, max(1, int(round(image.shape[1] * scale))))
    out = np.full((height, width, 3), fill, np.uint8)
    out[:new_h, :new_w] = _resize(image, new_h, new_w)
    sy, sx = new_h / image.shape[0], new_w / image.shape[1]
    return out, _scale_boxes(boxes, sy, sx), _scale_boxes(face_boxes, sy, sx), scale


def _face_boxes_for(face_boxes: Mapping | None, key: str, source: str) -> np.ndarray:
    if not face_boxes or key not in face_boxes:
        return np.zeros((0, 4), np.float32)
    try:
        boxes = np.asarray(face_boxes[key], np.float32)
        boxes = boxes.reshape(-1, 4) if boxes.size else np.zeros((0, 4), np.float32)
    except (TypeError, ValueError):
        raise DataError(f"{source}: face boxes of frame {key!r} are not an (F, 4) array") from None
    if boxes.ndim != 2 or not np.isfinite(boxes).all():
        raise DataError(f"{source}: face boxes of frame {key!r} are not finite (F, 4) boxes")
    return boxes


def _check_box(box, height: int, width: int, where: str) -> np.ndarray:
    """A box must be finite, non-empty and inside the height x width frame."""
    box = np.asarray(box, np.float64).reshape(-1)
    if box.shape != (4,) or not np.isfinite(box).all():
        raise DataError(f"{where}: box {box.tolist()} is not 4 finite numbers")
    x1, y1, x2, y2 = box
    if not (x1 < x2 and y1 < y2):
        raise DataError(f"{where}: box {_fmt(box)} is empty (needs x1 < x2 and y1 < y2)")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise DataError(f"{where}: box {_fmt(box)} lies outside the {width}x{height} frame")
    return box.astype(np.float32)


def _fmt(box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


# ----------------------------------------------------------------------------- JHMDB


def _load_part_mask(path: Path) -> np.ndarray:
    """`part_mask` of a JHMDB puppet_mask.mat as an (H, W, T) array."""
    import scipy.io

    try:
        contents = scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: puppet mask file does not exist") from None
    except NotImplementedError:
        raise DataError(f"{path}: MATLAB v7.3 files are not supported; save it as v7") from None
    except Exception as exc:  # scipy raises many types (ValueError, MatReadError, TypeError...)
        raise DataError(f"{path}: not a readable .mat file ({exc.__class__.__name__})") from None
    if "part_mask" not in contents:
        names = sorted(k for k in contents if not k.startswith("__"))
        raise DataError(f"{path}: no variable 'part_mask' (found {names})")
    mask = contents["part_mask"]
    if not isinstance(mask, np.ndarray) or mask.dtype.kind not in "biuf":
        raise DataError(f"{path}: 'part_mask' is not a numeric array "
                        f"(got {getattr(mask, 'dtype', type(mask).__name__)})")
    if mask.ndim == 2:
        mask = mask[:, :, None]
    if mask.ndim != 3 or min(mask.shape) == 0:
        raise DataError(f"{path}: 'part_mask' must be H x W x T, got shape {mask.shape}")
    return mask


def _mask_box(mask: np.ndarray) -> np.ndarray | None:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(ys) == 0:
        return None
    return np.float32([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1])


def _read_split_file(path: Path) -> list[tuple[str, int]]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read this split file ({exc.__class__.__name__})") from None
    videos = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path}: line {number}: expected '<video>.avi 1|2', got {line.strip()!r}")
        name = parts[0][:-4] if parts[0].endswith(".avi") else parts[0]
        videos.append((name, int(parts[1])))
    return videos


def read_jhmdb(root: str | Path, split: str = "train", split_id: int = 1,
               face_boxes: Mapping | None = None, frame_step: int = 1) -> ActionData:
    """JHMDB frames of one split, with the person box from each frame's puppet mask.

    Args:
        root: folder holding `Rename_Images/`, `puppet_mask/` and `splits/`.
        split: "train" (split-file label 1) or "test" (label 2).
        split_id: which of JHMDB's three splits (the paper uses 1).
        face_boxes: optional {frame key: (F, 4) original-pixel boxes}; keys are paths
            relative to `root`, e.g. `Rename_Images/clap/<video>/00001.png`.
        frame_step: keep every n-th frame of each video.

    Returns:
        `ActionData` with class ids by `JHMDB_CLASSES` (1..21) and resize rule "shorter 340".
        Frames whose mask is empty and frames beyond the mask's length are left out, each
        with a warning.
    """
    root = Path(root)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', received split={split!r}")
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, received frame_step={frame_step}")
    wanted = 1 if split == "train" else 2
    split_files = sorted((root / "splits").glob(f"*_test_split{split_id}.txt"))
    if not split_files:
        raise DataError(f"{root / 'splits'}: no *_test_split{split_id}.txt files (JHMDB layout)")
    records = []
    for split_file in split_files:
        action = split_file.name[: -len(f"_test_split{split_id}.txt")]
        if action not in JHMDB_CLASSES:
            raise DataError(f"{split_file}: {action!r} is not a JHMDB class ({', '.join(JHMDB_CLASSES)})")
        class_id = JHMDB_CLASSES.index(action) + 1
        for video, label in _read_split_file(split_file):
            if label == wanted:
                records += _jhmdb_video(root, action, video, class_id, face_boxes, frame_step)
    return ActionData(records, list(JHMDB_CLASSES), name=f"jhmdb_split{split_id}_{split}")


def _jhmdb_video(root: Path, action: str, video: str, class_id: int,
                 face_boxes: Mapping | None, frame_step: int) -> list[FrameRecord]:
    frames_dir = root / "Rename_Images" / action / video
    mask_path = root / "puppet_mask" / action / video / "puppet_mask.mat"
    frames = sorted(frames_dir.glob("*.png"))
    if not frames:
        raise DataError(f"{frames_dir}: no .png frames for this video of the split file")
    mask = _load_part_mask(mask_path)
    height, width = _image_size(frames[0], str(frames_dir))
    if mask.shape[:2] != (height, width):
        raise DataError(f"{mask_path}: 'part_mask' is {mask.shape[1]}x{mask.shape[0]} but the "
                        f"frames are {width}x{height}")
    if len(frames) != mask.shape[2]:
        warnings.warn(f"{mask_path}: {mask.shape[2]} masks for {len(frames)} frames; using the "
                      f"first {min(len(frames), mask.shape[2])}", stacklevel=3)
    records = []
    for t in range(0, min(len(frames), mask.shape[2]), frame_step):
        frame = frames[t]
        if frame.name != f"{t + 1:05d}.png":
            raise DataError(f"{frames_dir}: frame {t + 1} is named {frame.name}, expected {t + 1:05d}.png")
        box = _mask_box(mask[:, :, t] > 0)
        if box is None:
            warnings.warn(f"{mask_path}: frame {t + 1} has an empty mask (no person); left out",
                          stacklevel=3)
            continue
        key = frame.relative_to(root).as_posix()
        records.append(FrameRecord(
            frame_key=key, path=str(frame), boxes=box[None], classes=np.int32([class_id]),
            face_boxes=_face_boxes_for(face_boxes, key, str(mask_path)),
            resize=("shorter", JHMDB_SHORTER_SIDE), size=(height, width)))
    return records


# ----------------------------------------------------------------------------- DALY


def _latin1_encode(text, encoding="latin1"):
    # Protocol-2 pickles from Python 3 store bytes as _codecs.encode(text, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed for latin1 text only")
    return text.encode("latin1")


def _empty_bytes(*args):
    # ... and empty bytes as __builtin__.bytes(); bytes(n) would allocate n bytes: refused.
    if args:
        raise pickle.UnpicklingError("bytes() is allowed without arguments only")
    return b""


def _safe_globals() -> dict:
    """The only globals a DALY pickle may name: what plain numpy arrays are rebuilt from."""
    import numpy

    try:  # numpy >= 2 keeps them in numpy._core; older pickles name numpy.core
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    allowed = {("numpy", "ndarray"): numpy.ndarray, ("numpy", "dtype"): numpy.dtype,
               ("_codecs", "encode"): _latin1_encode,
               ("__builtin__", "bytes"): _empty_bytes, ("builtins", "bytes"): _empty_bytes}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Refuses every global but the numpy array constructors: no code runs on load."""

    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")  # DALY's pickle was written by Python 2
        self._source = source
        self._allowed = _safe_globals()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(f"{self._source}: refuses to load {module}.{name} (only plain "
                            "containers, numbers, strings and numpy arrays are allowed)") from None

    def persistent_load(self, pid):
        raise DataError(f"{self._source}: refuses a persistent reference (only plain data is allowed)")


_PLAIN = (dict, list, tuple, set, frozenset, str, bytes, int, float, bool, type(None))


def _check_plain(value, source: str, where: str = "", depth: int = 0) -> None:
    """Walks a loaded pickle: plain containers and numeric/string arrays only."""
    if depth > 100:
        raise DataError(f"{source}: {where or 'root'}: nested too deeply")
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        if value.dtype.hasobject or value.dtype.kind not in "biufcSU":
            raise DataError(f"{source}: {where or 'root'}: array of dtype {value.dtype} is not plain data")
        return
    if not isinstance(value, _PLAIN):
        raise DataError(f"{source}: {where or 'root'}: {type(value).__name__} is not plain data")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, source, where, depth + 1)
            _check_plain(item, source, f"{where}[{key!r}]", depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(value):
            _check_plain(item, source, f"{where}[{i}]", depth + 1)


def load_daly_annotations(path: str | Path) -> dict:
    """Loads and checks DALY's annotation pickle without executing anything in it.

    Args:
        path: `daly1.1.0.pkl` (or a pickle with the same structure).

    Returns:
        The annotation dict ('labels', 'splits', 'annot', ... as in the file).

    Raises:
        DataError: unreadable file, a global other than numpy's array constructors (e.g. a
            `__reduce__` payload), or a structure that does not match (naming the entry).
    """
    path = Path(path)
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = _RestrictedUnpickler(handle, source).load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{source}: annotation file does not exist") from None
    except RecursionError:
        raise DataError(f"{source}: not a readable pickle (nested too deeply)") from None
    except Exception as exc:  # truncated/corrupt pickles raise many types
        raise DataError(f"{source}: not a readable pickle ({exc.__class__.__name__})") from None
    _check_plain(data, source)
    _check_daly_structure(data, source)
    return data


def _check_daly_structure(data, source: str) -> None:
    if not isinstance(data, dict):
        raise DataError(f"{source}: expected a dict with 'labels', 'splits' and 'annot', "
                        f"got {type(data).__name__}")
    for key in ("labels", "splits", "annot"):
        if key not in data:
            raise DataError(f"{source}: no {key!r} entry (found {sorted(map(str, data))})")
    labels = data["labels"]
    if not isinstance(labels, (list, tuple)) or not labels or not all(isinstance(x, str) for x in labels):
        raise DataError(f"{source}: ['labels'] must be a list of class names")
    try:
        test = data["splits"][0]
    except (KeyError, IndexError, TypeError):
        raise DataError(f"{source}: ['splits'][0] (the test videos) is missing") from None
    if not isinstance(test, (list, tuple, set)) or not all(isinstance(v, str) for v in test):
        raise DataError(f"{source}: ['splits'][0] must be a list of video names")
    if not isinstance(data["annot"], dict):
        raise DataError(f"{source}: ['annot'] must be a dict {{video: ...}}")
    for video, entry in data["annot"].items():
        where = f"['annot'][{video!r}]"
        if not isinstance(video, str) or not isinstance(entry, dict) or \
                not isinstance(entry.get("annot"), dict):
            raise DataError(f"{source}: {where}: expected a dict with an 'annot' dict of actions")
        for action, instances in entry["annot"].items():
            where_a = f"{where}['annot'][{action!r}]"
            if action not in labels:
                raise DataError(f"{source}: {where_a}: {action!r} is not one of ['labels']")
            if not isinstance(instances, (list, tuple)):
                raise DataError(f"{source}: {where_a}: expected a list of instances")
            for i, instance in enumerate(instances):
                where_i = f"{where_a}[{i}]"
                if not isinstance(instance, dict) or not isinstance(instance.get("keyframes"), (list, tuple)):
                    raise DataError(f"{source}: {where_i}: expected a dict with a 'keyframes' list")
                for k, keyframe in enumerate(instance["keyframes"]):
                    _check_keyframe(keyframe, source, f"{where_i}['keyframes'][{k}]")


def _check_keyframe(keyframe, source: str, where: str) -> None:
    if not isinstance(keyframe, dict) or "frameNumber" not in keyframe or "boundingBox" not in keyframe:
        raise DataError(f"{source}: {where}: expected a dict with 'frameNumber' and 'boundingBox'")
    number = keyframe["frameNumber"]
    if isinstance(number, bool) or not isinstance(number, (int, float, np.integer, np.floating)) \
            or number != int(number) or number < 1:
        raise DataError(f"{source}: {where}: frameNumber {number!r} is not a 1-based frame number")
    try:
        box = np.asarray(keyframe["boundingBox"], np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{source}: {where}: boundingBox is not numeric") from None
    if box.shape != (4,) or not np.isfinite(box).all():
        raise DataError(f"{source}: {where}: boundingBox must be 4 finite numbers, got {box.tolist()}")
    x1, y1, x2, y2 = box
    eps = 1e-3
    if not (x1 < x2 and y1 < y2) or min(x1, y1) < -eps or max(x2, y2) > 1 + eps:
        raise DataError(f"{source}: {where}: boundingBox {_fmt(box)} is not a relative box "
                        "[x1, y1, x2, y2] inside 0..1")


def daly_frame_path(frames_root: str | Path, video: str, frame_number: int) -> Path:
    """Where the frame `frame_number` (1-based) of `video` is (or is extracted to)."""
    return Path(frames_root) / Path(video).stem / f"{int(frame_number):06d}.jpg"


def _daly_keyframes(data: dict, videos: Iterable[str], exclude_flags: Sequence[str]):
    """{video: {frameNumber: [(relative box, action)]}} over the chosen videos."""
    out = {}
    for video in videos:
        frames = out.setdefault(video, {})
        for action, instances in data["annot"][video]["annot"].items():
            for instance in instances:
                flags = instance.get("flags") or {}
                if any(bool(flags.get(flag)) for flag in exclude_flags):
                    continue
                for keyframe in instance["keyframes"]:
                    box = np.asarray(keyframe["boundingBox"], np.float64).reshape(4)
                    frames.setdefault(int(keyframe["frameNumber"]), []).append((box, action))
    return out


def _daly_videos(data: dict, split: str) -> list[str]:
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', received split={split!r}")
    test = set(data["splits"][0])
    names = sorted(data["annot"])
    if split == "all":
        return names
    return [v for v in names if (v in test) == (split == "test")]


def read_daly(annotation_path: str | Path, frames_root: str | Path, split: str = "train",
              face_boxes: Mapping | None = None, exclude_flags: Sequence[str] = ()) -> ActionData:
    """DALY keyframes of one split: every annotated keyframe with all its action boxes.

    Args:
        annotation_path: `daly1.1.0.pkl` (read with the restricted unpickler).
        frames_root: folder of extracted frames, `<video stem>/<frameNumber:06d>.jpg`
            (see `extract_daly_frames`).
        split: "train" (videos not in `splits[0]`), "test" (`splits[0]`) or "all".
        face_boxes: optional {frame key: (F, 4) original-pixel boxes}; keys are paths
            relative to `frames_root`, e.g. `abc/000123.jpg`.
        exclude_flags: instance flags whose instances are left out, e.g.
            ("isReflection", "isAmbiguous"); none by default.

    Returns:
        `ActionData` with class ids by the pickle's 'labels' order (1-based) and resize rule
        "fixed 600 x 800".
    """
    data = load_daly_annotations(annotation_path)
    source = str(annotation_path)
    frames_root = Path(frames_root)
    labels = list(data["labels"])
    videos = _daly_videos(data, split)
    records = []
    for video, frames in _daly_keyframes(data, videos, exclude_flags).items():
        size = None
        for number in sorted(frames):
            path = daly_frame_path(frames_root, video, number)
            where = f"{source}: ['annot'][{video!r}] keyframe {number}"
            if not path.exists():
                raise DataError(f"{where}: frame {path} is missing (run extract_daly_frames)")
            if size is None:  # every frame of a video has the same size
                size = _image_size(path, where)
            height, width = size
            boxes, classes = [], []
            for box, action in frames[number]:
                pixels = np.clip(box, 0.0, 1.0) * np.float64([width, height, width, height])
                boxes.append(_check_box(pixels, height, width, where))
                classes.append(labels.index(action) + 1)
            key = path.relative_to(frames_root).as_posix()
            records.append(FrameRecord(
                frame_key=key, path=str(path), boxes=np.stack(boxes).astype(np.float32),
                classes=np.int32(classes), face_boxes=_face_boxes_for(face_boxes, key, source),
                resize=("fixed",) + DALY_FRAME_SIZE, size=size))
    return ActionData(records, labels, name=f"daly_{split}")


def extract_daly_frames(annotation_path: str | Path, videos_root: str | Path,
                        frames_root: str | Path, videos: Sequence[str] | None = None,
                        overwrite: bool = False, quality: int = 95) -> int:
    """Writes the annotated keyframes of the user's DALY videos as JPEG files (OpenCV).

    Each video `<videos_root>/<video>` (names as in the annotation, e.g. `abc.mp4`) is read
    once, front to back, and frame `frameNumber` (1-based; the n-th decoded frame) of every
    keyframe is written to `daly_frame_path(frames_root, video, frameNumber)`.

    Args:
        annotation_path: `daly1.1.0.pkl`.
        videos_root: folder with the videos.
        frames_root: output folder.
        videos: only these videos (default: all in the annotation).
        overwrite: rewrite frames that already exist.
        quality: JPEG quality.

    Returns:
        Number of frames written.
    """
    import cv2

    from privacy_anon.io_utils import atomic_path

    data = load_daly_annotations(annotation_path)
    names = sorted(data["annot"]) if videos is None else list(videos)
    unknown = [v for v in names if v not in data["annot"]]
    if unknown:
        raise DataError(f"{annotation_path}: video {unknown[0]!r} is not in the annotation")
    written = 0
    for video, frames in _daly_keyframes(data, names, ()).items():
        wanted = {n for n in frames if overwrite or not daly_frame_path(frames_root, video, n).exists()}
        if not wanted:
            continue
        video_path = Path(videos_root) / video
        if not video_path.exists():
            raise DataError(f"{video_path}: video is missing (named in {annotation_path})")
        capture = cv2.VideoCapture(str(video_path))
        if not capture.isOpened():
            raise DataError(f"{video_path}: OpenCV cannot open this video")
        try:
            number, last = 0, max(wanted)
            while number < last:
                ok = capture.grab()
                if not ok:
                    raise DataError(f"{video_path}: ended after {number} frames, but keyframe "
                                    f"{min(n for n in wanted if n > number)} is annotated")
                number += 1
                if number in wanted:
                    ok, frame = capture.retrieve()
                    if not ok:
                        raise DataError(f"{video_path}: cannot decode frame {number}")
                    target = daly_frame_path(frames_root, video, number)
                    with atomic_path(target) as tmp:
                        if not cv2.imwrite(str(tmp), frame, [cv2.IMWRITE_JPEG_QUALITY, quality]):
                            raise DataError(f"{target}: cannot write this frame")
                    written += 1
        finally:
            capture.release()
    return written


# ----------------------------------------------------------------------------- CSV


def read_csv(csv_path: str | Path, image_size: tuple[int, int], root: str | Path | None = None,
             class_names: Sequence[str] | None = None, face_boxes: Mapping | None = None) -> ActionData:
    """Custom action data: `frame_path,x1,y1,x2,y2,action`, one row per action box.

    Rows of the same `frame_path` make one frame (in order of first appearance). Every box
    must lie inside its frame (the frame's size is read from the image header).

    Args:
        csv_path: the CSV file.
        image_size: (height, width) frames are fitted inside, aspect kept.
        root: folder `frame_path` is relative to (default: the CSV's folder).
        class_names: the action names, in class-id order; default: sorted unique names.
        face_boxes: optional {frame_path: (F, 4) original-pixel boxes}.

    Returns:
        `ActionData` with resize rule "fit image_size".
    """
    csv_path = Path(csv_path)
    root = Path(root) if root is not None else csv_path.parent
    try:
        with open(csv_path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != CSV_COLUMNS:
                raise DataError(f"{csv_path}: line 1: header must be {','.join(CSV_COLUMNS)}, "
                                f"got {','.join(header or [])!r}")
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: cannot read this CSV ({exc.__class__.__name__})") from None
    rows = [(n, [c.strip() for c in row]) for n, row in rows if any(c.strip() for c in row)]
    for line, row in rows:
        if len(row) != len(CSV_COLUMNS):
            raise DataError(f"{csv_path}: line {line}: expected {len(CSV_COLUMNS)} fields, got {len(row)}")
        if not row[0] or not row[5]:
            raise DataError(f"{csv_path}: line {line}: empty frame_path or action")
    if class_names is None:
        class_names = sorted({row[5] for _, row in rows})
    class_names = [str(c) for c in class_names]
    frames: dict[str, dict] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for line, row in rows:
        where = f"{csv_path}: line {line}"
        frame_path, action = row[0], row[5]
        if action not in class_names:
            raise DataError(f"{where}: action {action!r} is not one of {class_names}")
        try:
            box = [float(v) for v in row[1:5]]
        except ValueError:
            raise DataError(f"{where}: box {row[1:5]} is not 4 numbers") from None
        if frame_path not in sizes:
            sizes[frame_path] = _image_size(root / frame_path, where)
        height, width = sizes[frame_path]
        entry = frames.setdefault(frame_path, {"boxes": [], "classes": []})
        entry["boxes"].append(_check_box(box, height, width, where))
        entry["classes"].append(class_names.index(action) + 1)
    records = [
        FrameRecord(frame_key=key, path=str(root / key), boxes=np.stack(v["boxes"]).astype(np.float32),
                    classes=np.int32(v["classes"]),
                    face_boxes=_face_boxes_for(face_boxes, key, str(csv_path)),
                    resize=("fit", int(image_size[0]), int(image_size[1])), size=sizes[key])
        for key, v in frames.items()
    ]
    return ActionData(records, class_names, name=csv_path.stem)


# ----------------------------------------------------------------------------- synthetic


def _pose(action: str, flip: bool, rng: np.random.Generator) -> dict:
    """Limb segments of a person of height 1, feet at (0, 0), head up (y negative).

    Returns {"limbs": [(p, q)], "head": (centre, radius), "prop": (kind, centre) | None}.
    """
    head_r = 0.085
    head = np.array([0.0, -1.0 + head_r])
    neck = np.array([0.0, -1.0 + 2 * head_r + 0.02])
    hip = np.array([0.0, -0.48])
    side = -1.0 if flip else 1.0  # which arm acts
    shoulders = [neck + [-0.13, 0.04], neck + [0.13, 0.04]]
    upper, lower = 0.19, 0.18
    jitter = lambda: rng.normal(0, 0.015, 2)  # noqa: E731 - small pose noise

    def hanging(shoulder, out):
        elbow = shoulder + [out * 0.05, upper]
        return [elbow + jitter(), elbow + [out * 0.03, lower] + jitter()]

    arms = {}
    for s, shoulder in zip((-1.0, 1.0), shoulders):
        arms[s] = hanging(shoulder, s)
    prop = None
    act = shoulders[0] if side < 0 else shoulders[1]
    if action == "phoning":  # hand at the ear, a phone in it
        hand = head + [side * (head_r + 0.02), 0.01]
        arms[side] = [act + [side * 0.12, 0.12] + jitter(), hand]
        prop = ("phone", hand)
    elif action == "arms_out":  # both arms stretched sideways
        for s, shoulder in zip((-1.0, 1.0), shoulders):
            arms[s] = [shoulder + [s * upper, -0.01] + jitter(), shoulder + [s * (upper + lower), -0.02] + jitter()]
    elif action == "drinking":  # a cup held at the mouth
        hand = head + [side * 0.02, head_r * 0.75]
        arms[side] = [act + [side * 0.08, 0.16] + jitter(), hand]
        prop = ("cup", hand)
    elif action == "waving":  # one arm straight up above the head
        elbow = act + [side * 0.06, -upper] + jitter()
        arms[side] = [elbow, elbow + [side * 0.03, -lower] + jitter()]
    elif action != "standing":
        raise ValueError(f"unknown synthetic action {action!r}")
    limbs = [(neck, hip)]
    for s, shoulder in zip((-1.0, 1.0), shoulders):
        elbow, hand = arms[s]
        limbs += [(neck, shoulder), (shoulder, elbow), (elbow, hand)]
    for s in (-1.0, 1.0):
        knee = hip + [s * 0.07, 0.25] + jitter()
        limbs += [(hip, knee), (knee, [s * 0.09 + rng.normal(0, 0.01), 0.0])]
    return {"limbs": limbs, "head": (head, head_r), "prop": prop}


def _draw_person(image: np.ndarray, mask: np.ndarray, pose: dict, origin, height: float,
                 colors: dict) -> np.ndarray:
    """Draws a pose into `image` (and 1s into `mask`); returns the face box in pixels."""
    import cv2

    def pt(p):
        p = np.asarray(p, np.float64) * height + origin
        return (int(round(p[0] * 16)), int(round(p[1] * 16)))  # 4 fractional bits

    def size(v):
        return max(1, int(round(v * height * 16)))

    thick = max(2, int(round(0.055 * height)))
    for i, (p, q) in enumerate(pose["limbs"]):
        color = colors["shirt"] if i < 7 else colors["trousers"]
        for target, value in ((image, color), (mask, 1)):
            cv2.line(target, pt(p), pt(q), value, thick if i else thick * 2, cv2.LINE_AA, shift=4)
    centre, radius = pose["head"]
    for target, value in ((image, colors["hair"]), (mask, 1)):
        cv2.circle(target, pt(centre + [0, -0.01]), size(radius * 1.05), value, -1, cv2.LINE_AA, shift=4)
    cv2.circle(image, pt(centre + [0, 0.01]), size(radius * 0.92), colors["skin"], -1, cv2.LINE_AA, shift=4)
    for dx in (-0.032, 0.032):  # eyes and mouth make the face region a face
        cv2.circle(image, pt(centre + [dx, -0.01]), size(0.012), (20, 20, 20), -1, cv2.LINE_AA, shift=4)
    cv2.line(image, pt(centre + [-0.025, 0.045]), pt(centre + [0.025, 0.045]), (120, 40, 40),
             max(1, int(0.012 * height)), cv2.LINE_AA, shift=4)
    if pose["prop"] is not None:
        kind, where = pose["prop"]
        if kind == "phone":
            w, h, color = 0.035, 0.075, (30, 30, 40)
        else:
            w, h, color = 0.05, 0.07, colors["cup"]
        p, q = np.asarray(where) - [w / 2, h / 2], np.asarray(where) + [w / 2, h / 2]
        for target, value in ((image, color), (mask, 1)):
            cv2.rectangle(target, pt(p), pt(q), value, -1, cv2.LINE_AA, shift=4)
    c = np.asarray(centre) * height + origin
    r = radius * height
    return np.float32([c[0] - r, c[1] - r, c[0] + r, c[1] + r])


def _pose_extent(pose: dict) -> np.ndarray:
    """[x1, y1, x2, y2] of a pose in person units, with a margin for limb thickness."""
    points = np.array([p for limb in pose["limbs"] for p in limb], np.float64)
    centre, radius = pose["head"]
    points = np.vstack([points, centre - radius, centre + radius])
    if pose["prop"] is not None:
        points = np.vstack([points, np.asarray(pose["prop"][1]) - 0.05, np.asarray(pose["prop"][1]) + 0.05])
    return np.concatenate([points.min(0) - 0.04, points.max(0) + 0.04])


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    import cv2

    top, bottom = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    ramp = np.linspace(0, 1, height)[:, None, None]
    image = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (height, width, 3)).copy()
    for _ in range(rng.integers(1, 4)):  # furniture-like clutter
        x1, y1 = rng.integers(0, width), rng.integers(0, height)
        x2, y2 = x1 + rng.integers(width // 8, width // 2), y1 + rng.integers(height // 8, height // 2)
        cv2.rectangle(image, (int(x1), int(y1)), (int(x2), int(y2)), rng.uniform(30, 230, 3).tolist(), -1)
    return image


def synthetic_actions(num_frames: int, image_size: int | tuple[int, int] = 128, num_classes: int = 3,
                      seed: int = 0) -> ActionData:
    """Generated frames of one person doing one of a few actions, with a face region.

    Actions by class id (first `num_classes` of `SYNTHETIC_ACTIONS`): 1 phoning (hand and
    phone at the ear), 2 arms out, 3 drinking (cup at the mouth), 4 waving (arm above the
    head), 5 standing. The person's position, size (40-90 % of the frame height), left/right
    arm, colours and the background vary per frame. The action box is the person's box, the
    face box the head's. Deterministic for a seed.

    Args:
        num_frames: number of frames (classes cycle, so every class appears).
        image_size: side, or (height, width), of the frames.
        num_classes: number of action classes, 1..5.
        seed: random seed.

    Returns:
        `ActionData` of in-memory frames (resize rule: identity).
    """
    if not 1 <= num_classes <= len(SYNTHETIC_ACTIONS):
        raise ValueError(f"num_classes must be in 1..{len(SYNTHETIC_ACTIONS)}, received {num_classes}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, received {num_frames}")
    height, width = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    if min(height, width) < 32:
        raise ValueError(f"image_size must be at least 32 pixels, received {image_size}")
    rng = np.random.default_rng(seed)
    records = []
    for i in range(num_frames):
        class_id = i % num_classes + 1
        pose = _pose(SYNTHETIC_ACTIONS[class_id - 1], bool(rng.integers(2)), rng)
        x1, y1, x2, y2 = _pose_extent(pose)
        # person height: 40-90 % of the frame, shrunk further if the pose would not fit
        scale = rng.uniform(0.4, 0.9) * height
        scale = min(scale, 0.98 * width / (x2 - x1), 0.98 * height / (y2 - y1))
        ox = rng.uniform(-x1 * scale, width - x2 * scale)
        oy = rng.uniform(-y1 * scale, height - y2 * scale)
        colors = {"shirt": rng.uniform(0, 255, 3).tolist(), "trousers": rng.uniform(0, 160, 3).tolist(),
                  "skin": rng.uniform([90, 60, 40], [240, 200, 170]).tolist(),
                  "hair": (rng.uniform(0, 120, 3)).tolist(), "cup": rng.uniform(150, 255, 3).tolist()}
        image = _background(height, width, rng)
        mask = np.zeros((height, width), np.uint8)
        face = _draw_person(image, mask, pose, np.array([ox, oy]), scale, colors)
        image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
        box = _mask_box(mask > 0)
        face = np.clip(face, 0, [width, height, width, height]).astype(np.float32)
        records.append(FrameRecord(
            frame_key=f"synthetic/{i:06d}", path=None, boxes=box[None], classes=np.int32([class_id]),
            face_boxes=face[None], resize=("fixed", height, width), size=(height, width), image=image))
    return ActionData(records, list(SYNTHETIC_ACTIONS[:num_classes]), name="synthetic")


# ----------------------------------------------------------------------------- tf.data


def _as_records(records) -> list[FrameRecord]:
    return list(records.records if isinstance(records, ActionData) else records)


def make_dataset(records: ActionData | Sequence[FrameRecord], batch_size: int,
                 image_size: tuple[int, int], max_boxes: int = 8, max_faces: int = 8,
                 shuffle: bool = True, seed: int = 0, repeat: bool = False,
                 drop_remainder: bool = True):
    """A `tf.data` pipeline of fixed-size frame batches for the detector.

    Each frame is read, resized by its data set's rule, then letterboxed into `image_size`
    (aspect kept, padded bottom/right with mid-grey) so that a batch shares one size.

    Args:
        records: `ActionData` or a list of `FrameRecord`s.
        batch_size: frames per batch.
        image_size: (height, width), the detector's (`ActionDetectorConfig.image_height/width`).
        max_boxes: action boxes per frame after padding; more is an error.
        max_faces: face boxes per frame after padding; more is an error (a face left out
            would reach A unmodified).
        shuffle: shuffle the frames (again every epoch).
        seed: shuffle seed.
        repeat: repeat forever (for `fit` with `steps_per_epoch`).
        drop_remainder: drop a last, smaller batch (fixed shapes under a strategy).

    Returns:
        `tf.data.Dataset` of dicts: `images` float32 (B, H, W, 3) in [-1, 1], `boxes`
        float32 (B, max_boxes, 4) padded with -1, `classes` int32 (B, max_boxes) padded with
        -1, `face_boxes` float32 (B, max_faces, 4) padded with 0, `num_faces` int32 (B,).
    """
    import tensorflow as tf

    records = _as_records(records)
    if not records:
        raise DataError("make_dataset: no frames (the data set is empty)")
    height, width = int(image_size[0]), int(image_size[1])
    for record in records:
        if len(record.boxes) > max_boxes:
            raise DataError(f"{record.frame_key}: {len(record.boxes)} action boxes, more than "
                            f"max_boxes={max_boxes}")
        if len(record.face_boxes) > max_faces:
            raise DataError(f"{record.frame_key}: {len(record.face_boxes)} face boxes, more than "
                            f"max_faces={max_faces}")

    def load(index):
        frame = load_frame(records[int(index)])
        image, boxes, faces, _ = letterbox(frame["image"], frame["boxes"], frame["face_boxes"],
                                           (height, width))
        out_boxes = np.full((max_boxes, 4), -1, np.float32)
        out_classes = np.full((max_boxes,), -1, np.int32)
        out_faces = np.zeros((max_faces, 4), np.float32)
        out_boxes[:len(boxes)] = boxes
        out_classes[:len(boxes)] = frame["classes"]
        out_faces[:len(faces)] = faces
        return image, out_boxes, out_classes, out_faces, np.int32(len(faces))

    def to_dict(index):
        image, boxes, classes, faces, num_faces = tf.numpy_function(
            load, [index], [tf.uint8, tf.float32, tf.int32, tf.float32, tf.int32], stateful=False)
        image.set_shape([height, width, 3])
        boxes.set_shape([max_boxes, 4])
        classes.set_shape([max_boxes])
        faces.set_shape([max_faces, 4])
        num_faces.set_shape([])
        return {"images": tf.cast(image, tf.float32) / 127.5 - 1.0, "boxes": boxes,
                "classes": classes, "face_boxes": faces, "num_faces": num_faces}

    dataset = tf.data.Dataset.range(len(records))
    if shuffle:
        dataset = dataset.shuffle(len(records), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.map(to_dict, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(records, batch_size: int) -> int:
    """Full batches in one pass over the records."""
    return max(1, len(_as_records(records)) // batch_size)
