"""The face-box cache: faces detected once per data set by `privacy-anon detect-faces`.

Training reads face boxes (and landmarks) from here instead of running the detector on every
epoch. The cache is a folder:

    CACHE/index.json            what was run and on what
    CACHE/groups/<name>.json    one file per group: a video folder (jhmdb, daly), an
                                identity (folders), a frame folder (csv), a video file (video)
    CACHE/no_face.txt           keys of frames/images where no face was found

`index.json`: `{"version": 1, "format": ..., "dataset": absolute path, "detector": the
detector's settings (thresholds, MTCNN on/off, model file), "complete": bool, "groups":
{group: file name under groups/}, "counts": {"frames": n, "with_face": n, "faces": n}}`.

A group file: `{"group": name, "complete": bool, "files": {path: [size, mtime_ns, digest]},
"sizes": {path: [width, height]}, "frames": {key: [face, ...]}}`, where a face is
`{"box": [x1, y1, x2, y2], "score": s, "landmarks": [[x, y] x 5] or null, "keypoints":
[[x, y] x 6]}` in pixels of the original frame (landmarks in MTCNN order, see
`faces.detector.Face`). A video group also has `"frames_done": n`.

Keys are frame paths relative to the data-set root, `/`-separated:
- `jhmdb`: DATASET holds `Rename_Images/<class>/<video>/%05d.png`; keys
  `Rename_Images/<class>/<video>/00001.png` (as `data.actions.read_jhmdb` uses).
- `daly`: DATASET is a folder of extracted frames `<video>/<frame>.jpg` (jpg, jpeg or png;
  `data.actions.extract_daly_frames` writes `<video stem>/<frameNumber:06d>.jpg`); keys
  `<video>/<frame>.jpg`.
- `folders`: DATASET is `<identity>/<image>` (CASIA-WebFace, LFW); keys `<identity>/<image>`.
- `csv`: DATASET is the action CSV `frame_path,x1,y1,x2,y2,action` (header required);
  every distinct `frame_path` (relative to the CSV's folder) is one frame; keys are
  `frame_path` as written.
- `video`: DATASET is a video file or a folder of videos (read with OpenCV); keys
  `<video path>#<frame index, 0-based>` (see `video_frame_key`).

Staleness: each group file records the size, modification time (ns) and a content digest
(BLAKE2b of the bytes) of every file it covers. `load_face_boxes` lists the data set again and
raises `DataError` naming the command to run if a file was added, removed or changed, if a
group is missing, or if the run was interrupted. A file whose size and time match is taken
as unchanged without reading it; one whose time moved (a copy without `cp -p`, a data set
unpacked again) is read and judged by its digest, so only new content costs detection again.
(Caches written before the digest was recorded judge by size and time alone.)
Resuming: `detect_faces_in_dataset` writes each group file atomically
when the group is done and, for long groups, every `flush_seconds` and on interruption;
a re-run skips every frame already recorded for an unchanged file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from privacy_anon.errors import DataError, InputError
from privacy_anon.io_utils import atomic_write_json, atomic_write_text

__all__ = [
    "FORMATS",
    "FaceBoxes",
    "Group",
    "detect_faces_in_dataset",
    "list_dataset",
    "load_face_boxes",
    "primary_face",
    "read_image",
    "video_frame_key",
    "write_landmarks_csv",
]

VERSION = 1
FORMATS = ("jhmdb", "daly", "folders", "csv", "video")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
LANDMARK_COLUMNS = ["path"] + [f"{a}{i}" for i in range(1, 6) for a in ("x", "y")]


@dataclass
class Group:
    """Files detected and cached together. `video` groups hold one video file."""

    name: str
    files: list[str]  # paths relative to the data-set root
    video: bool = False


@dataclass
class DatasetListing:
    root: Path  # keys and file paths are relative to this
    groups: list[Group]
    source: Path = field(default=None)  # what the user named (a folder, a CSV, a video)


def video_frame_key(video: str, index: int) -> str:
    """Cache key of frame `index` (0-based) of `video` (path relative to the root)."""
    return f"{video}#{int(index)}"


def _command(dataset, fmt: str, cache) -> str:
    return f"privacy-anon detect-faces {dataset} --format {fmt} --out {cache}"


# ----------------------------------------------------------------------------- listing


def list_dataset(dataset: str | Path, fmt: str) -> DatasetListing:
    """The groups and files of a data set in one of `FORMATS` (see the module docstring).

    Raises:
        InputError: unknown format; DataError: missing folder or file, wrong layout.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown data-set format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = Path(dataset)
    if not path.exists():
        raise DataError(f"{path}: data set not found")
    return {"jhmdb": _list_jhmdb, "daly": _list_daly, "folders": _list_folders,
            "csv": _list_csv, "video": _list_video}[fmt](path)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_image_groups(root: Path, folders: list[Path], what: str) -> DatasetListing:
    groups = []
    for folder in folders:
        files = [p.relative_to(root).as_posix() for p in _images_in(folder)]
        if files:
            groups.append(Group(folder.relative_to(root).as_posix(), files))
    if not groups:
        raise DataError(f"{root}: no images found (expected {what})")
    return DatasetListing(root, groups, root)


def _list_jhmdb(root: Path) -> DatasetListing:
    frames = root / "Rename_Images"
    if not frames.is_dir():
        raise DataError(f"{root}: no Rename_Images folder (expected JHMDB: Rename_Images/<class>/<video>/00001.png)")
    videos = [v for c in _subfolders(frames) for v in _subfolders(c)]
    return _list_image_groups(root, videos, "Rename_Images/<class>/<video>/00001.png")


def _list_daly(root: Path) -> DatasetListing:
    if not root.is_dir():
        raise DataError(f"{root}: expected a folder of extracted DALY frames <video>/<frame>.jpg")
    return _list_image_groups(root, _subfolders(root), "<video>/<frame>.jpg")


def _list_folders(root: Path) -> DatasetListing:
    if not root.is_dir():
        raise DataError(f"{root}: expected a folder-per-identity root <identity>/<image>")
    return _list_image_groups(root, _subfolders(root), "<identity>/<image>")


def _list_csv(path: Path) -> DatasetListing:
    if not path.is_file():
        raise DataError(f"{path}: expected the action CSV file (frame_path,x1,y1,x2,y2,action)")
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            if not header or header[0] != "frame_path":
                raise DataError(f"{path}: line 1: header must start with frame_path "
                                f"(frame_path,x1,y1,x2,y2,action), got {','.join(header)!r}")
            frames = list(dict.fromkeys(row[0].strip() for row in reader if row and row[0].strip()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read this CSV ({exc.__class__.__name__})") from None
    if not frames:
        raise DataError(f"{path}: no frames listed")
    by_folder: dict[str, list[str]] = {}
    for frame in frames:
        by_folder.setdefault(Path(frame).parent.as_posix(), []).append(frame)
    groups = [Group(name, files) for name, files in sorted(by_folder.items())]
    return DatasetListing(path.parent, groups, path)


def _list_video(path: Path) -> DatasetListing:
    if path.is_file():
        return DatasetListing(path.parent, [Group(path.name, [path.name], video=True)], path)
    videos = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                    and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not videos:
        raise DataError(f"{path}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
    rels = [p.relative_to(path).as_posix() for p in videos]
    return DatasetListing(path, [Group(r, [r], video=True) for r in rels], path)


def _stat(root: Path, rel: str) -> list[int] | None:
    try:
        st = (root / rel).stat()
    except OSError:
        return None
    return [int(st.st_size), int(st.st_mtime_ns)]


def _digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _signature(root: Path, rel: str) -> list | None:
    """[size, mtime_ns, content digest] of a file, None when it cannot be read."""
    stat = _stat(root, rel)
    try:
        return None if stat is None else stat + [_digest(root / rel)]
    except OSError:
        return None


def _unchanged(recorded, root: Path, rel: str) -> list | None:
    """The file's current signature if it still holds what `recorded` describes, else None.

    Size and time as recorded: unchanged, not read. Time moved: its digest decides (a touched
    or copied file keeps its faces; a rewritten one does not)."""
    stat = _stat(root, rel)
    if stat is None or not recorded or recorded[0] != stat[0]:
        return None
    if list(recorded[:2]) == stat:
        return stat + list(recorded[2:])
    if len(recorded) > 2:
        try:
            if _digest(root / rel) == recorded[2]:
                return stat + [recorded[2]]
        except OSError:
            return None
    return None


# ----------------------------------------------------------------------------- reading


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3) (grayscale/alpha converted by OpenCV).

    Raises:
        DataError: the file is missing, empty or not a readable image.
    """
    import cv2

    path = Path(path)
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None or image.size == 0:
        raise DataError(f"{path}: cannot read image (missing, empty or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _video_frames(path: Path, start: int) -> Iterator[np.ndarray]:
    """RGB frames of a video from frame `start` on (earlier frames are grabbed, not decoded)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: OpenCV cannot open this video")
    try:
        for index in range(start):
            if not capture.grab():
                raise DataError(f"{path}: video has fewer than {start} frames (changed since the cache?)")
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def _video_length(path: Path) -> int:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        return max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))) if capture.isOpened() else 0
    finally:
        capture.release()


# ----------------------------------------------------------------------------- cache files


def _group_file(name: str) -> str:
    """A file name for a group: readable, and unique (a hash of the full name)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[-60:] or "root"
    return f"{slug}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:10]}.json"


def _read_json(path: Path, cache: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable face-box cache file ({exc.__class__.__name__}); "
                        f"delete {cache} and run detect-faces again") from None


def _face_dicts(faces) -> list[dict]:
    return [face.to_dict() for face in faces]


# ----------------------------------------------------------------------------- detection


def detect_faces_in_dataset(dataset: str | Path, fmt: str, cache: str | Path, detector,
                            landmarks_csv: str | Path | None = None, progress: bool = True,
                            flush_seconds: float = 60.0, log: Callable[[str], None] = print) -> dict:
    """Runs `detector` over a whole data set once and writes (or completes) the cache.

    Args:
        dataset: the data-set root (a CSV file for `csv`; a file or folder for `video`).
        fmt: one of `FORMATS`.
        cache: the cache folder (created).
        detector: a callable RGB uint8 image -> list of `Face`; its `settings()` (if any)
            are recorded, and a cache written with other settings is refused.
        landmarks_csv: for `folders`, where to write the landmarks CSV (default
            `CACHE/landmarks.csv`); ignored for other formats.
        progress: show a tqdm progress bar.
        flush_seconds: a group in progress is saved at least this often.
        log: where summary lines go.

    Returns:
        A summary dict: frames, with_face, without_face, faces, skipped (already cached),
        and for `folders` landmarks_csv / landmark_rows / estimated_landmarks.
    """
    from tqdm import tqdm

    listing = list_dataset(dataset, fmt)
    cache = Path(cache)
    if cache.exists() and not cache.is_dir():
        raise InputError(f"{cache}: --out must be a folder (the face-box cache), not a file")
    settings = detector.settings() if hasattr(detector, "settings") else {"detector": type(detector).__name__}
    settings = json.loads(json.dumps(settings))  # as it will read back from JSON
    source = str(listing.source.resolve())
    index_path = cache / "index.json"
    index = _read_json(index_path, cache)
    if index is not None:
        if index.get("version") != VERSION or index.get("format") != fmt:
            raise InputError(f"{cache}: holds a cache of format {index.get('format')!r} "
                             f"(version {index.get('version')}); choose another --out or delete it")
        if index.get("dataset") != source:
            raise InputError(f"{cache}: holds the faces of {index.get('dataset')}, not {source}; "
                             "choose another --out or delete it")
        if index.get("detector") != settings:
            raise InputError(f"{cache}: was written with other detector settings "
                             f"({index.get('detector')}); choose another --out or delete it")
    group_files = {g.name: _group_file(g.name) for g in listing.groups}
    index = {"version": VERSION, "format": fmt, "dataset": source, "detector": settings,
             "complete": False, "groups": group_files, "counts": {}}
    atomic_write_json(index_path, index)

    # what is already done: frames of unchanged files in existing group files
    states, todo_frames, skipped = {}, 0, 0
    for group in listing.groups:
        state = _resume_state(cache / "groups" / group_files[group.name], group, listing.root, cache)
        states[group.name] = state
        if group.video:
            length = _video_length(listing.root / group.files[0])
            todo_frames += 0 if state["complete"] else max(0, length - state["frames_done"])
        else:
            done = sum(1 for f in group.files if f in state["frames"])
            skipped += done
            todo_frames += len(group.files) - done

    bar = tqdm(total=todo_frames, unit="frame", desc="detect-faces", dynamic_ncols=True,
               disable=None if progress else True)  # None: no bar when stderr is not a terminal
    try:
        for group in listing.groups:
            state = states[group.name]
            if state["complete"]:
                continue
            path = cache / "groups" / group_files[group.name]
            _detect_group(group, state, listing.root, detector, path, bar, flush_seconds)
    finally:
        bar.close()

    counts = {"frames": 0, "with_face": 0, "faces": 0}
    no_face = []
    for group in listing.groups:
        for key, faces in states[group.name]["frames"].items():
            counts["frames"] += 1
            counts["faces"] += len(faces)
            if faces:
                counts["with_face"] += 1
            else:
                no_face.append(key)
    atomic_write_text(cache / "no_face.txt", "".join(f"{k}\n" for k in no_face))
    index["complete"] = True
    index["counts"] = counts
    atomic_write_json(index_path, index)

    summary = dict(counts, without_face=len(no_face), skipped=skipped, cache=str(cache))
    log(f"{counts['frames']} frames ({skipped} already cached): {counts['with_face']} with a face, "
        f"{len(no_face)} without (listed in {cache / 'no_face.txt'}), {counts['faces']} faces")
    if fmt == "folders":
        csv_path = Path(landmarks_csv) if landmarks_csv else cache / "landmarks.csv"
        rows, estimated = write_landmarks_csv(csv_path, states, listing)
        summary.update(landmarks_csv=str(csv_path), landmark_rows=rows, estimated_landmarks=estimated)
        note = (f"; {estimated} estimated from BlazeFace keypoints (no MTCNN landmarks)" if estimated else "")
        log(f"landmarks CSV: {csv_path} ({rows} rows{note}; {len(no_face)} images without a face left out)")
    return summary


def _resume_state(path: Path, group: Group, root: Path, cache: Path) -> dict:
    """The group's cached frames that are still valid (their files are unchanged)."""
    data = _read_json(path, cache) or {}
    old_files = data.get("files", {})
    stats = {f: _unchanged(old_files.get(f), root, f) for f in group.files}
    unchanged = {f for f in group.files if stats[f] is not None}
    state = {"group": group.name, "complete": False, "files": {}, "sizes": {}, "frames": {},
             "frames_done": 0}
    if group.video:
        video = group.files[0]
        if video in unchanged:
            state["frames_done"] = int(data.get("frames_done", 0))
            state["frames"] = {k: v for k, v in data.get("frames", {}).items()}
            state["files"] = {video: stats[video]}
            state["sizes"] = data.get("sizes", {})
            state["complete"] = bool(data.get("complete"))
        return state
    for f in unchanged:
        if f in data.get("frames", {}):
            state["frames"][f] = data["frames"][f]
            state["files"][f] = stats[f]
            if f in data.get("sizes", {}):
                state["sizes"][f] = data["sizes"][f]
    state["complete"] = bool(data.get("complete")) and len(state["frames"]) == len(group.files)
    return state


def _save(path: Path, state: dict) -> None:
    atomic_write_json(path, state)


def _detect_group(group: Group, state: dict, root: Path, detector, path: Path, bar,
                  flush_seconds: float) -> None:
    last_save = time.monotonic()
    dirty = False
    try:
        if group.video:
            video = group.files[0]
            state["files"] = {video: _signature(root, video)}
            index = state["frames_done"]
            for image in _video_frames(root / video, index):
                faces = detector(image)
                state["frames"][video_frame_key(video, index)] = _face_dicts(faces)
                state["sizes"].setdefault(video, [int(image.shape[1]), int(image.shape[0])])
                index += 1
                state["frames_done"] = index
                dirty = True
                bar.update(1)
                if time.monotonic() - last_save >= flush_seconds:
                    _save(path, state)
                    last_save, dirty = time.monotonic(), False
        else:
            for rel in group.files:
                if rel in state["frames"]:
                    continue
                stat = _signature(root, rel)
                image = read_image(root / rel)
                faces = detector(image)
                state["frames"][rel] = _face_dicts(faces)
                state["files"][rel] = stat
                state["sizes"][rel] = [int(image.shape[1]), int(image.shape[0])]
                dirty = True
                bar.update(1)
                if time.monotonic() - last_save >= flush_seconds:
                    _save(path, state)
                    last_save, dirty = time.monotonic(), False
        state["complete"] = True
        dirty = True
    finally:
        # interrupted or failed: keep what was done, so a re-run resumes here
        if dirty:
            _save(path, state)


# ----------------------------------------------------------------------------- landmarks CSV


def primary_face(faces: list, width: float, height: float):
    """The face an identity photo is about: large and central (area x centrality)."""
    if not faces:
        return None
    centre = np.array([width, height], np.float64) / 2
    half_diag = max(float(np.hypot(*centre)), 1e-6)

    def weight(face):
        box = np.asarray(face.box, np.float64)
        area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
        dist = np.hypot(*((box[:2] + box[2:]) / 2 - centre)) / half_diag
        return area * (1.0 - 0.5 * min(dist, 1.0))

    return max(faces, key=weight)


def write_landmarks_csv(path: str | Path, states: dict, listing: DatasetListing) -> tuple[int, int]:
    """Writes `path,x1,y1,...,x5,y5` (one row per image with a face) from detection results.

    The landmarks are MTCNN's; when MTCNN gave none (it was off, or did not confirm the
    face) they are estimated from BlazeFace's keypoints (`landmarks_from_keypoints`).

    Returns:
        (rows written, rows with estimated landmarks).
    """
    from privacy_anon.faces.detector import Face, landmarks_from_keypoints

    lines = [",".join(LANDMARK_COLUMNS)]
    estimated = 0
    for group in listing.groups:
        state = states[group.name]
        for rel in group.files:
            faces = [Face.from_dict(d) for d in state["frames"].get(rel, [])]
            width, height = state["sizes"].get(rel, (0, 0))
            face = primary_face(faces, width, height)
            if face is None:
                continue
            marks = face.landmarks
            if marks is None:
                if face.keypoints is None:
                    continue
                marks = landmarks_from_keypoints(face.keypoints)
                estimated += 1
            values = ",".join(f"{v:.2f}" for v in np.asarray(marks, np.float64).reshape(-1))
            lines.append(f"{_csv_field(rel)},{values}")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return len(lines) - 1, estimated


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


# ----------------------------------------------------------------------------- loading


class FaceBoxes(Mapping):
    """A loaded face-box cache: {frame key: (F, 4) float32 boxes}, plus the full faces.

    It is the `face_boxes` mapping that `data.actions` readers accept. `faces(key)` gives
    the `Face` objects (score, landmarks, keypoints); `format`, `settings` and `counts` come
    from the index.
    """

    def __init__(self, frames: dict[str, list[dict]], fmt: str, settings: dict, counts: dict):
        self._frames = frames
        self.format = fmt
        self.settings = settings
        self.counts = counts

    def __getitem__(self, key: str) -> np.ndarray:
        faces = self._frames[key]
        return np.asarray([f["box"] for f in faces], np.float32).reshape(-1, 4)

    def __iter__(self):
        return iter(self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    def faces(self, key: str) -> list:
        """The `Face`s of a frame (KeyError if the frame is not in the cache)."""
        from privacy_anon.faces.detector import Face

        return [Face.from_dict(d) for d in self._frames[key]]


def load_face_boxes(cache: str | Path, dataset_root: str | Path) -> FaceBoxes:
    """Loads the cache written by `privacy-anon detect-faces` and checks it is up to date.

    Args:
        cache: the cache folder (`--out` of detect-faces).
        dataset_root: the data set it must describe (the CSV file for `csv`).

    Raises:
        DataError: "... missing / incomplete / stale: run `privacy-anon detect-faces ...`"
            when the cache does not exist, was interrupted, or the data set changed since
            (files added, removed or modified).
    """
    cache = Path(cache)
    index = _read_json(cache / "index.json", cache) if cache.is_dir() else None
    if index is None:
        raise DataError(f"{cache}: face-box cache missing: run `{_command(dataset_root, '<format>', cache)}` "
                        f"(format: {'|'.join(FORMATS)})")
    fmt = index.get("format")
    run = _command(dataset_root, fmt, cache)
    if index.get("detector", {}).get("mtcnn") is False:
        run += " --no-mtcnn"  # a re-run must use the same settings
    if index.get("version") != VERSION:
        raise DataError(f"{cache}: face-box cache version {index.get('version')} is not {VERSION}: "
                        f"delete it and run `{run}`")
    if not index.get("complete"):
        raise DataError(f"{cache}: face-box cache incomplete (interrupted?): run `{run}` to finish it")
    listing = list_dataset(dataset_root, fmt)
    problems: list[str] = []
    frames: dict[str, list[dict]] = {}
    groups = index.get("groups", {})
    for group in listing.groups:
        name = groups.get(group.name)
        data = _read_json(cache / "groups" / name, cache) if name else None
        if data is None or not data.get("complete"):
            problems.append(f"{group.name}/ not in the cache")
            continue
        recorded = data.get("files", {})
        for rel in group.files:
            if rel not in recorded:
                problems.append(f"{rel} added")
            elif _unchanged(recorded[rel], listing.root, rel) is None:
                problems.append(f"{rel} changed")
        problems += [f"{rel} removed" for rel in recorded if rel not in set(group.files)]
        frames.update(data.get("frames", {}))
    listed = {g.name for g in listing.groups}
    problems += [f"{name}/ removed" for name in groups if name not in listed]
    if problems:
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise DataError(f"{cache}: face-box cache stale ({problems[0]}{more}; the data set changed "
                        f"since it was written): run `{run}`")
    return FaceBoxes(frames, fmt, index.get("detector", {}), index.get("counts", {}))
