"""Reading and writing what `privacy-anon anonymize` works on: images, videos, folders, cameras.

Videos are decoded and encoded with PyAV (FFmpeg's libraries): audio streams are copied
packet by packet (not re-encoded), the frame rate, size and timestamps are kept. A video
whose container says to display it rotated (a phone's portrait clip) is turned upright
before the detector sees it and written upright, with no rotation left to apply. Every
output is written to a temporary file beside the target and renamed when complete, so a
crash or an error leaves no half file; a video whose decoding fails part-way keeps the
frames anonymized so far as `NAME.partial.EXT` and is still an error. No TensorFlow here.

Example:
    >>> from privacy_anon.runtime import Anonymizer
    >>> Anonymizer(method="blur8").anonymize_video("in.mp4", "out.mp4")
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from privacy_anon.errors import InputError, PartialOutputError
from privacy_anon.io_utils import atomic_path, atomic_write_bytes, publish
from privacy_anon.runtime.boxes_log import boxes_log
from privacy_anon.runtime.overlap import DEFAULT_DEPTH, BackgroundWriter, map_ahead, prefetch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")
LOSSLESS_CODECS = ("ffv1", "png", "huffyuv", "ffvhuff", "libx264rgb", "utvideo", "qtrle", "rawvideo")
DEFAULT_CODECS = {".webm": "libvpx-vp9", ".avi": "mpeg4", ".mpg": "mpeg2video", ".mpeg": "mpeg2video"}
DEFAULT_CRF = 18  # visually lossless for x264; the anonymized face must not be smeared by the codec


# ----------------------------------------------------------------------------- planning


def is_camera(source) -> bool:
    """A camera index: an int, or a string of digits that is not an existing path."""
    if isinstance(source, int):
        return True
    return isinstance(source, str) and source.isdigit() and not os.path.exists(source)


def plan(inputs, output) -> list[tuple[str, object, Path]]:
    """Pairs every input with its output: `[(kind, source, destination)]`, kind in
    "image" / "video" / "camera". Checks everything before any work starts.

    A single file (or camera) goes to `output` as a file (or into it, if `output` is an
    existing folder); several inputs or a folder go into the folder `output`, keeping names
    (and sub-folders) relative to each input folder.

    Raises:
        InputError: missing input, unknown file type, empty folder, an output that would
            overwrite an input or another output, or an output location that is not writable.
    """
    inputs = [inputs] if isinstance(inputs, (str, int, os.PathLike)) else list(inputs)
    if not inputs:
        raise InputError("no input given")
    output = Path(output)
    jobs = []
    single = len(inputs) == 1 and (is_camera(inputs[0]) or Path(inputs[0]).is_file())
    for source in inputs:
        if is_camera(source):
            if not single:
                raise InputError(f"camera {source}: a camera must be the only input")
            jobs.append(("camera", int(source), _file_target(output, f"camera{source}.mp4")))
            continue
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) and not p.name.startswith("."))
            if not files:
                raise InputError(f"{path}: no images or videos in this folder")
            base = output if len(inputs) == 1 else output / path.name
            jobs.extend((_kind(f), f, base / f.relative_to(path)) for f in files)
        elif path.is_file():
            kind = _kind(path)
            if kind is None:
                raise InputError(f"{path}: not an image or video file (suffix {path.suffix or 'none'})")
            jobs.append((kind, path, _file_target(output, path.name) if single else output / path.name))
        else:
            raise InputError(f"{path}: input not found")
    _check_plan(jobs)
    return jobs


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def _file_target(output: Path, name: str) -> Path:
    return output / name if output.is_dir() else output


def _check_plan(jobs) -> None:
    seen = set()
    for kind, source, dst in jobs:
        if dst.is_dir():
            raise InputError(f"{dst}: output is a folder; give a file name")
        wanted = IMAGE_SUFFIXES if kind == "image" else VIDEO_SUFFIXES
        if dst.suffix.lower() not in wanted:
            raise InputError(f"{dst}: output suffix must be one of {', '.join(wanted)} for {kind} input {source}")
        key = os.path.abspath(dst)
        if kind != "camera" and key == os.path.abspath(source):
            raise InputError(f"{dst}: output would overwrite its input")
        if key in seen:
            raise InputError(f"{dst}: two inputs would be written to this output")
        seen.add(key)
        check_writable(dst)


def check_writable(dst: Path) -> None:
    """InputError unless `dst`'s folder exists and is writable, or can be created."""
    ancestor = Path(os.path.abspath(dst)).parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{dst}: cannot write here ({ancestor} is a file, not a folder)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{dst}: cannot write here ({ancestor} is not writable)")


# ----------------------------------------------------------------------------- entry point


def anonymize_paths(anonymizer, inputs, output, codec: str | None = None, quality: int | None = None,
                    boxes_json=None, preview: bool = False, progress: bool = True,
                    max_frames: int | None = None) -> dict:
    """Anonymizes images, videos, folders of either, or a camera; returns a summary.

    Args:
        anonymizer: a `runtime.pipeline.Anonymizer`.
        inputs: a path / camera index, or a list of them.
        output: the output file (one input) or folder (several inputs or a folder).
        codec: video codec (default by output suffix: libx264; .webm: VP9; .avi: MPEG-4).
        quality: CRF for x264 / x265 / VP9 (lower is better; default 18).
        boxes_json: write what was anonymized where (per input, per frame) to this file,
            streamed as the frames are done (`runtime.boxes_log`).
        preview: show frames in a window while working (needs OpenCV with GUI support).
        progress: tqdm progress bars (frames/s).
        max_frames: stop a camera after this many frames (default: until Ctrl-C / no frame).

    Returns:
        `{"method", "enlarge", "inputs": [per-input totals]}`; the per-frame records are in
        `boxes_json` only, so memory does not grow with the length of a video.
    """
    jobs = plan(inputs, output)
    if boxes_json is not None:
        key = os.path.realpath(boxes_json)
        for kind, source, dst in jobs:
            if key == os.path.realpath(dst) or kind != "camera" and key == os.path.realpath(source):
                raise InputError(f"{boxes_json}: --boxes-json would overwrite "
                                 f"{'the output' if key == os.path.realpath(dst) else 'an input'}")
        check_writable(Path(boxes_json))
    if preview:
        _check_preview()
    for kind, source, _ in jobs:  # fail fast on an unreadable video before writing anything
        if kind == "video":
            _probe(source)
    results = []
    targets = [Path(dst) for _, _, dst in jobs] + ([Path(boxes_json)] if boxes_json is not None else [])
    new_folders = sorted({p for dst in targets for p in dst.parents if not p.exists()},
                         key=lambda p: len(p.parts), reverse=True)
    images = sum(kind == "image" for kind, _, _ in jobs)
    bar = _progress(progress and images > 1, images, "images", unit="image")  # folders of photos
    try:
        # an error removes the boxes file's temporary copy too: no half file under its name
        with boxes_log(boxes_json, anonymizer.name, anonymizer.enlarge) as log:
            for kind, source, dst in jobs:
                anonymizer.reset()
                on_frame = None
                if log is not None:
                    log.begin(input=f"camera {source}" if kind == "camera" else str(source), type=kind)
                    on_frame = log.frame
                if kind == "image":
                    entry = anonymize_image_file(anonymizer, source, dst, on_frame=on_frame)
                    if bar is not None:
                        bar.update(1)
                elif kind == "video":
                    entry = anonymize_video(anonymizer, source, dst, codec=codec, quality=quality,
                                            preview=preview, progress=progress, on_frame=on_frame)
                else:
                    entry = anonymize_camera(anonymizer, source, dst, codec=codec, quality=quality, preview=preview,
                                             progress=progress, max_frames=max_frames, on_frame=on_frame)
                results.append(entry)
                if log is not None:
                    log.end(entry)
    except Exception:
        # A bad file part-way through a folder: the outputs of this run go too, so a folder
        # is never left half-done (the error names the file to fix or remove).
        _remove_outputs([r["output"] for r in results if r.get("output")], new_folders)
        raise
    finally:
        if bar is not None:
            bar.close()
    return {"method": anonymizer.name, "enlarge": anonymizer.enlarge, "inputs": results}


def _remove_outputs(files, new_folders) -> None:
    for f in files:
        with contextlib.suppress(OSError):
            os.remove(f)
    for folder in new_folders:  # deepest first; only if empty
        with contextlib.suppress(OSError):
            folder.rmdir()


# ----------------------------------------------------------------------------- images


def read_image(path) -> np.ndarray:
    """RGB uint8 from an image file; InputError if it cannot be decoded."""
    data = np.fromfile(str(path), np.uint8) if os.path.isfile(path) else None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if bgr is None:
        raise InputError(f"{path}: not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def anonymize_image_file(anonymizer, src, dst, on_frame=None) -> dict:
    """One image file -> `dst` (same format as its suffix); nothing written if dropped.

    Returns `{"input", "output" (None if dropped), "type", **FrameTotals}`; `on_frame`, if
    given, is called with the image's record (`FrameResult.to_dict(0)`).
    """
    image = read_image(src)
    anonymizer.reset()
    result = anonymizer.process(image)
    anonymizer.reset()
    totals = FrameTotals()
    totals.add(result)
    if on_frame is not None:
        on_frame(result.to_dict(0))
    entry = {"input": str(src), "output": str(dst), "type": "image", **totals.as_dict()}
    if result.image is None:
        entry["output"] = None
        return entry
    ok, encoded = cv2.imencode(Path(dst).suffix.lower(), cv2.cvtColor(result.image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"{dst}: cannot encode an image with this suffix")
    atomic_write_bytes(dst, encoded.tobytes())
    return entry


# ----------------------------------------------------------------------------- per-frame totals


class FrameTotals:
    """Running counts over an input's frames: all that is kept in memory of them (the
    per-frame records go to `on_frame`, e.g. streamed to `--boxes-json`), so a long video
    costs no more memory than a short one."""

    def __init__(self):
        self.frames = self.faces = self.frames_with_faces = 0
        self.status = {"ok": 0, "masked": 0, "dropped": 0}

    def add(self, result) -> None:
        self.frames += 1
        self.status[result.status] += 1
        self.faces += len(result.regions)
        self.frames_with_faces += int(len(result.regions) > 0)

    @property
    def written(self) -> int:
        return self.status["ok"] + self.status["masked"]

    def as_dict(self) -> dict:
        """`frames_in` (processed), `written`, `masked` / `dropped` (after a detector or
        modifier failure), `faces` (face regions anonymized, summed over frames) and
        `frames_with_faces`."""
        return {"frames_in": self.frames, "written": self.written, "masked": self.status["masked"],
                "dropped": self.status["dropped"], "faces": self.faces,
                "frames_with_faces": self.frames_with_faces}


# ----------------------------------------------------------------------------- video


def _av():
    try:
        import av
    except ImportError:
        raise InputError("video needs PyAV: pip install av") from None
    return av


def _probe(src) -> None:
    av = _av()
    try:
        with av.open(str(src)) as container:
            if not container.streams.video:
                raise InputError(f"{src}: no video stream")
    except av.FFmpegError as exc:
        raise InputError(f"{src}: not a readable video ({_first_line(exc)})") from None


def _first_line(exc) -> str:
    return str(exc).split("\n")[0]


class _DecodeFailed(Exception):
    """Decoding stopped part-way (raised on the reader thread): the frames before are kept."""


class Orientation:
    """How a stored video frame is turned to be displayed: transpose, then flip rows / columns.

    Built from FFmpeg's display matrix (what MP4/MOV's track matrix, as phones write it, is
    read as) or from a legacy `rotate` tag; angles that are not a multiple of 90 degrees are
    taken to the nearest one (phones write only those).
    """

    def __init__(self, matrix=None):
        # FFmpeg's display matrix maps a stored pixel (x, y) to (a x + c y, b x + d y)
        a, b, c, d = (0, 0, 0, 0) if matrix is None else (matrix[0], matrix[1], matrix[3], matrix[4])
        if matrix is None or abs(a) + abs(d) >= abs(b) + abs(c):
            self.transpose, self.flip_cols, self.flip_rows = False, a < 0, d < 0
        else:  # x' ~ c y, y' ~ b x: rows and columns swap
            self.transpose, self.flip_cols, self.flip_rows = True, c < 0, b < 0
        # for the summary, as ffprobe reports them: counter-clockwise degrees (FFmpeg's
        # av_display_rotation_get) and whether the matrix also mirrors
        self.rotation = 0 if matrix is None else round(-math.degrees(math.atan2(b, a)))
        self.mirrored = matrix is not None and a * d - b * c < 0

    @classmethod
    def of_frame(cls, frame, stream) -> "Orientation":
        """The first frame's display matrix, else the stream's `rotate` tag (clockwise degrees,
        as older FFmpeg versions exported it and files remuxed by them, e.g. Matroska, carry)."""
        av = _av()
        for side in frame.side_data:
            if side.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
                return cls(np.frombuffer(bytes(side), np.int32)[:9].tolist())
        tag = next((v for k, v in stream.metadata.items() if k.lower() == "rotate"), None)
        try:
            angle = math.radians(-float(tag))  # counter-clockwise, as the matrix has it
            cos, sin = round(math.cos(angle)), round(math.sin(angle))
        except (TypeError, ValueError, OverflowError):  # no tag, not a number, nan / inf
            return cls()
        return cls([cos, -sin, 0, sin, cos, 0, 0, 0, 1])

    @property
    def upright(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def size(self, width: int, height: int) -> tuple[int, int]:
        """Displayed (width, height) of a stored width x height frame."""
        return (height, width) if self.transpose else (width, height)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The stored (H, W, C) frame as it is displayed."""
        if self.upright:
            return image
        if self.transpose:
            image = image.transpose(1, 0, 2)
        if self.flip_rows:
            image = image[::-1]
        if self.flip_cols:
            image = image[:, ::-1]
        return np.ascontiguousarray(image)


def _orientation(av, src: Path) -> Orientation:
    """Read from the first decodable frame; upright if none decodes (the main loop says why)."""
    try:
        with av.open(str(src)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                return Orientation.of_frame(frame, stream)
    except (av.FFmpegError, IndexError):
        pass
    return Orientation()


def partial_path(dst) -> Path:
    """Where the anonymized frames before a decode error go: `NAME.partial.EXT` beside `dst`."""
    dst = Path(dst)
    return dst.with_name(f"{dst.stem}.partial{dst.suffix}")


def _cut_short(stream, src: Path) -> bool:
    """True if the container's index lists frame data past the end of the file (a truncated
    MP4/MOV/AVI: the demuxer then just stops early, with no error)."""
    size = os.path.getsize(src)
    entries = getattr(stream, "index_entries", ())  # not in older PyAV: no check
    return any(entry.pos + entry.size > size for entry in entries if entry.pos >= 0)


def _video_stream(out, codec: str | None, dst: Path, width: int, height: int, rate, quality):
    """Adds the output video stream: codec by suffix, a pixel format the codec takes."""
    av = _av()
    name = codec or DEFAULT_CODECS.get(dst.suffix.lower(), "libx264")
    try:
        formats = [f.name for f in (av.codec.Codec(name, "w").video_formats or [])]
    except (av.FFmpegError, ValueError):
        raise InputError(f"{dst}: unknown video encoder {name!r}") from None
    if name in LOSSLESS_CODECS:  # keep RGB as it is: no chroma subsampling
        order = ("rgb24", "bgr0", "gbrp", "bgra", "rgba", "yuv444p")
    elif width % 2 or height % 2:
        order = ("yuv444p", "yuv420p")
    else:
        order = ("yuv420p", "yuv444p")
    pix_fmt = next((f for f in order if f in formats), formats[0] if formats else "yuv420p")
    try:
        stream = out.add_stream(name, rate=rate)
    except (av.FFmpegError, ValueError) as exc:
        raise InputError(f"{dst}: cannot write {name!r} into this container ({_first_line(exc)})") from None
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    if name in ("libx264", "libx265", "libx264rgb"):
        stream.options = {"crf": str(DEFAULT_CRF if quality is None else int(quality))}
    elif name == "libvpx-vp9":
        stream.options = {"crf": str(32 if quality is None else int(quality)), "b": "0"}
    elif quality is not None and name not in LOSSLESS_CODECS:
        stream.options = {"qscale": str(int(quality))}
    return stream


def anonymize_video(anonymizer, src, dst, codec: str | None = None, quality: int | None = None,
                    preview: bool = False, progress: bool = True, overlap: int = DEFAULT_DEPTH,
                    on_frame=None) -> dict:
    """Anonymizes a video file into `dst`, keeping audio, frame rate, size and timestamps.

    A rotated video (display matrix or `rotate` tag) is turned upright before anonymizing
    and written upright with no rotation (its width and height swap for 90 / 270 degrees):
    the frames the detector saw are the frames written, and every player, and every
    container (AVI, MPEG, WebM carry no display matrix), shows them the same way.

    Decoding and encoding run on their own threads, `overlap` frames ahead / behind, and
    faces are detected on `anonymizer.frame_detectors()` threads up to `overlap` frames
    ahead of the frame being modified (`runtime.overlap`; 0: all in this thread, the same
    output).

    Nothing per frame is kept: `on_frame`, if given, is called in order with each frame's
    record (`FrameResult.to_dict(index)`) as soon as it is processed (to stream it to a file,
    or `list.append` it for a short clip).

    Returns:
        `{"input", "output", "type", "fps", "width", "height", "rotation", "mirrored",
        "seconds", "processing_fps", **FrameTotals}` (`frames_in`, `written`, `faces`, ...).

    Raises:
        InputError: unreadable or corrupt input, unwritable output; the output is then absent.
            If decoding fails after some frames (corrupt data, a file cut short), those
            frames, anonymized, are kept as `partial_path(dst)` and the error names it.
    """
    av = _av()
    src, dst = Path(src), Path(dst)
    check_writable(dst)
    totals = FrameTotals()
    started = time.perf_counter()
    try:
        source = av.open(str(src))
    except av.FFmpegError as exc:
        raise InputError(f"{src}: not a readable video ({_first_line(exc)})") from None
    bar = None
    try:
        if not source.streams.video:
            raise InputError(f"{src}: no video stream")
        vin = source.streams.video[0]
        vin.thread_type = "AUTO"
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        audio_in = list(source.streams.audio)
        orientation = _orientation(av, src)
        width, height = orientation.size(vin.codec_context.width, vin.codec_context.height)
        bar = _progress(progress, vin.frames or _estimate_frames(source, rate), src.name)
        with atomic_path(dst) as tmp:
            with av.open(str(tmp), "w") as out:
                vout = _video_stream(out, codec, dst, width, height, rate, quality)
                audio_map = {}
                for stream in audio_in:
                    try:
                        audio_map[stream.index] = out.add_stream_from_template(stream)
                    except (av.FFmpegError, ValueError) as exc:
                        raise InputError(f"{dst}: cannot copy the audio ({stream.codec_context.name}) into "
                                         f"this container ({_first_line(exc)}); try .mkv") from None
                index = 0

                def decoded():  # on the reader thread (runtime.overlap)
                    try:
                        for packet in source.demux(vin, *audio_in):
                            if packet.stream.type == "audio":
                                if packet.dts is not None and packet.stream.index in audio_map:
                                    yield packet, None
                                continue
                            for frame in packet.decode():
                                yield frame, orientation.apply(frame.to_ndarray(format="rgb24"))
                    except av.FFmpegError as exc:
                        raise _DecodeFailed(_first_line(exc)) from None
                    if _cut_short(vin, src):
                        raise _DecodeFailed("the file ends before the frames its index lists: cut short")

                def write(item):  # on the writer thread: encoding and all muxing
                    what, image = item
                    if image is None:
                        what.stream = audio_map[what.stream.index]
                        out.mux(what)
                        return
                    new = av.VideoFrame.from_ndarray(image, format="rgb24")
                    new.pts, new.time_base = what.pts, what.time_base
                    out.mux(vout.encode(new))

                failure = None
                try:
                    with BackgroundWriter(write, overlap) as writer:
                        frame_detectors = getattr(anonymizer, "frame_detectors", None)  # duck-typed wrappers
                        detectors = frame_detectors() if overlap > 0 and frame_detectors else []
                        for (what, image), found in map_ahead(prefetch(decoded(), overlap), detectors,
                                                              key=lambda item: item[1], depth=overlap):
                            if image is None:
                                writer.put((what, None))
                                continue
                            result = anonymizer.process(image, found) if detectors else anonymizer.process(image)
                            totals.add(result)
                            if on_frame is not None:
                                on_frame(result.to_dict(index))
                            index += 1
                            if result.image is not None:
                                writer.put((what, result.image))
                                if preview:
                                    _show(result.image)
                            if bar is not None:
                                bar.update(1)
                except _DecodeFailed as exc:
                    failure = f"{src}: video decoding failed at frame {index} ({exc})"
                except av.FFmpegError as exc:  # the writer's: encoding or muxing, nothing kept
                    raise InputError(f"{src}: video encoding into {dst} failed at frame {index} "
                                     f"({_first_line(exc)})") from None
                try:
                    out.mux(vout.encode(None))  # also for a partial: the last frames are in the encoder
                except av.FFmpegError as exc:
                    raise InputError(f"{dst}: video encoding failed ({_first_line(exc)})") from None
                if index == 0:
                    raise InputError(failure or f"{src}: no video frames could be decoded")
            written = totals.written
            if failure and written:  # out is closed: keep what was written, still an error
                publish(tmp, partial_path(dst))
                raise PartialOutputError(failure, partial_path(dst), written)
            if failure:
                raise InputError(failure)
    finally:
        if bar is not None:
            bar.close()
        source.close()
    seconds = time.perf_counter() - started
    return {"input": str(src), "output": str(dst), "type": "video", "fps": float(rate),
            "width": width, "height": height, "rotation": orientation.rotation, "mirrored": orientation.mirrored,
            **totals.as_dict(), "seconds": round(seconds, 3),
            "processing_fps": round(index / seconds, 2) if seconds > 0 else None}


def anonymize_camera(anonymizer, index: int, dst, codec: str | None = None, quality: int | None = None,
                     preview: bool = False, progress: bool = True, max_frames: int | None = None,
                     on_frame=None) -> dict:
    """Anonymizes a camera's frames into a video file until Ctrl-C, the end, or `max_frames`;
    per-frame records go to `on_frame` as in `anonymize_video`, totals are returned."""
    av = _av()
    dst = Path(dst)
    capture = cv2.VideoCapture(int(index))
    if not capture.isOpened():
        raise InputError(f"camera {index}: cannot open")
    ok, bgr = capture.read()
    if not ok:
        capture.release()
        raise InputError(f"camera {index}: no frame")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    rate = Fraction(fps).limit_denominator(1001)
    totals, count = FrameTotals(), 0
    bar = _progress(progress, max_frames, f"camera {index}")
    try:
        with atomic_path(dst) as tmp, av.open(str(tmp), "w") as out:
            vout = _video_stream(out, codec, dst, bgr.shape[1], bgr.shape[0], rate, quality)
            try:
                while ok and (max_frames is None or count < max_frames):
                    result = anonymizer.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                    totals.add(result)
                    if on_frame is not None:
                        on_frame(result.to_dict(count))
                    if result.image is not None:
                        new = av.VideoFrame.from_ndarray(result.image, format="rgb24")
                        new.pts, new.time_base = count, 1 / rate
                        out.mux(vout.encode(new))
                        if preview:
                            _show(result.image)
                    count += 1
                    if bar is not None:
                        bar.update(1)
                    ok, bgr = capture.read()
            except KeyboardInterrupt:  # the normal way to stop a camera: finish the file
                pass
            out.mux(vout.encode(None))
    finally:
        capture.release()
        if bar is not None:
            bar.close()
    return {"input": f"camera {index}", "output": str(dst), "type": "camera", "fps": float(rate),
            **totals.as_dict()}


# ----------------------------------------------------------------------------- display


def _estimate_frames(container, rate) -> int | None:
    """Frame count from the container's duration (Matroska stores no count), for the bar."""
    if not container.duration or not rate:
        return None
    return int(round(container.duration / 1_000_000 * float(rate)))


def _progress(enabled: bool, total, desc: str, unit: str = "frame"):
    if not enabled:
        return None
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (a log file, a pipe)
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=None)


def _check_preview() -> None:
    try:
        cv2.namedWindow("privacy-anon")
    except cv2.error:
        raise InputError("--preview needs OpenCV with GUI support (opencv-python, not -headless) "
                         "and a display") from None


def _show(image: np.ndarray) -> None:
    cv2.imshow("privacy-anon", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if cv2.waitKey(1) & 0xFF == ord("q"):
        raise KeyboardInterrupt
