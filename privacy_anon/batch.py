"""Batch anonymization of an archive on Apache Beam (`privacy-anon anonymize-batch`).

Each input file (video or image, local or on any filesystem Beam supports: gs://, s3://,
hdfs://...) is one element; a worker anonymizes it with the TensorFlow-free runtime
(`privacy_anon.runtime.Anonymizer` and a bundle) and writes, beside each other,

    OUT/<path relative to the inputs' common folder>            the anonymized file
    OUT/<same path>.manifest.json                               what was done to it

The output is written under a hidden temporary name and renamed into place, and the
manifest is written (the same way) only after it: a manifest with `"status": "ok"` next to
its output means the file is complete. A rerun skips those, so a crashed or killed run
resumes where it stopped; failed files (status "failed", no output) are tried again, and so
is an output killed between its rename and its manifest (whole, but unrecorded).

Manifest: `{"version", "input", "output", "type", "status": "ok" | "failed", "error",
"frames", "faces" (face regions anonymized, summed over frames), "failed_frames" (frames
masked or dropped after a detector/modifier failure), "output_bytes", "seconds",
"bundle"}`.

Runs on the DirectRunner here (`--workers N` processes) and on Dataflow, Flink or Spark with
their pipeline options (`--beam-args="--runner DataflowRunner --project ..."`). Beam is the
`beam` extra of the runtime-only install; it is imported only when a pipeline runs.
"""

from __future__ import annotations

import json
import os
import posixpath
import shlex
import tempfile
import time
import uuid
from dataclasses import dataclass

from privacy_anon.errors import InputError, PartialOutputError

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts",
                  ".flv", ".wmv")


@dataclass
class BatchOptions:
    """What `anonymize-batch` does to every file (the `Anonymizer` and codec settings)."""

    bundle: str
    threshold: float | None = None
    enlarge: float | None = None
    min_face: float | None = None
    hold: int = 5
    on_failure: str = "mask"
    threads: int = 1
    codec: str | None = None
    quality: int | None = None


def _beam():
    try:
        import apache_beam as beam
    except ImportError:
        raise InputError("anonymize-batch needs Apache Beam: pip install 'privacy-anon[beam]' "
                         "(README: Anonymizing an archive)") from None
    return beam


def _kind(path: str) -> str | None:
    suffix = posixpath.splitext(path)[1].lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def list_inputs(patterns: list[str], file_list: str | None = None) -> list[str]:
    """Paths matched by globs (any Beam filesystem) and listed in `file_list` (one a line).

    Raises:
        InputError: a pattern that matches nothing, a listed file that does not exist, or
            no image/video among the matches.
    """
    from apache_beam.io.filesystems import FileSystems

    patterns = list(patterns)
    if file_list:
        try:
            with FileSystems.open(file_list) as handle:
                lines = handle.read().decode("utf-8").splitlines()
        except Exception as exc:  # noqa: BLE001 - any filesystem's error: one line
            raise InputError(f"{file_list}: cannot read the file list ({type(exc).__name__})") from None
        patterns += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not patterns:
        raise InputError("no inputs: give globs / files, or --file-list")
    paths = []
    for pattern, result in zip(patterns, FileSystems.match(patterns)):
        found = [m.path for m in result.metadata_list]
        if not found:
            raise InputError(f"{pattern}: matches no file")
        paths += found
    media = sorted({p for p in paths if _kind(p)})
    if not media:
        raise InputError(f"no image or video among the {len(paths)} matched file(s)")
    return media


def plan_outputs(inputs: list[str], output: str) -> list[tuple[str, str]]:
    """(input, output) pairs: outputs keep the inputs' paths relative to their common folder."""
    from apache_beam.io.filesystems import FileSystems

    folders = [posixpath.dirname(p) for p in inputs]
    base = posixpath.commonpath(folders) if all(f.startswith("/") for f in folders) else (
        os.path.commonprefix(folders).rstrip("/"))
    pairs = []
    for path in inputs:
        rel = path[len(base):].lstrip("/") if base else path.split("://", 1)[-1].lstrip("/")
        pairs.append((path, FileSystems.join(output, *rel.split("/"))))
    outs = [o for _, o in pairs]
    if len(set(outs)) != len(outs):
        raise InputError(f"{output}: two inputs map to the same output")
    if set(outs) & set(inputs):
        raise InputError(f"{output}: an output would overwrite its input")
    return pairs


def manifest_path(output: str) -> str:
    return output + MANIFEST_SUFFIX


def is_complete(output: str) -> bool:
    """True when `output` and its manifest (status ok, same size) are both in place."""
    from apache_beam.io.filesystems import FileSystems

    manifest = manifest_path(output)
    if not FileSystems.exists(manifest) or not FileSystems.exists(output):
        return False
    try:
        with FileSystems.open(manifest) as handle:
            record = json.loads(handle.read().decode("utf-8"))
        size = FileSystems.match([output])[0].metadata_list[0].size_in_bytes
    except Exception:  # noqa: BLE001 - unreadable or half-listed: do it again
        return False
    return record.get("status") == "ok" and record.get("output_bytes") == size


def _put(local: str, dst: str) -> None:
    """Copies a local file to `dst` under a hidden temporary name, then renames it."""
    from apache_beam.io.filesystems import FileSystems

    folder, name = posixpath.split(dst)
    tmp = FileSystems.join(folder, f".{name}.partial-{uuid.uuid4().hex[:8]}")
    if "://" not in dst:
        os.makedirs(folder or ".", exist_ok=True)
    with open(local, "rb") as src, FileSystems.create(tmp) as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    try:
        if FileSystems.exists(dst):
            FileSystems.delete([dst])
        FileSystems.rename([tmp], [dst])
    except Exception:
        FileSystems.delete([tmp])
        raise


def _get(src: str, local: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(src) as handle, open(local, "wb") as out:
        while chunk := handle.read(1 << 20):
            out.write(chunk)


def _write_manifest(output: str, record: dict, scratch: str) -> None:
    local = os.path.join(scratch, "manifest.json")
    with open(local, "w") as handle:
        json.dump(record, handle, indent=2, sort_keys=True)
    _put(local, manifest_path(output))


class AnonymizeFile:
    """The per-file work, as a Beam DoFn body (`process`), one `Anonymizer` per worker."""

    def __init__(self, options: BatchOptions):
        self.options = options
        self.anonymizer = None

    def setup(self):
        from privacy_anon.runtime import Anonymizer

        o = self.options
        self.anonymizer = Anonymizer(o.bundle, threshold=o.threshold, enlarge=o.enlarge,
                                     hold=o.hold, on_failure=o.on_failure,
                                     num_threads=o.threads, min_face_size=o.min_face)

    def process(self, pair):
        src, dst = pair
        if is_complete(dst):
            yield {"input": src, "status": "skipped"}
            return
        started = time.time()
        record = {"version": MANIFEST_VERSION, "input": src, "output": dst, "type": _kind(src),
                  "bundle": self.options.bundle}
        with tempfile.TemporaryDirectory(prefix="privacy-anon-batch-") as scratch:
            suffix = posixpath.splitext(src)[1].lower()
            local_in = os.path.join(scratch, "in" + suffix)
            local_out = os.path.join(scratch, "out" + suffix)
            try:
                _get(src, local_in)
                record.update(self._anonymize(local_in, local_out))
                if record["status"] == "ok":
                    record["output_bytes"] = os.path.getsize(local_out)
                    _put(local_out, dst)
            except InputError as exc:  # unreadable / corrupt file: recorded, no output
                # a video cut short keeps NAME.partial.EXT on its own, not in a batch: the
                # scratch folder that holds it is deleted, so the message must not point there
                reason = exc.reason if isinstance(exc, PartialOutputError) else str(exc)
                error = reason.replace(local_in, src)
                record.update(status="failed", error=error.removeprefix(f"{src}: "))
            record["seconds"] = round(time.time() - started, 3)
            _write_manifest(dst, record, scratch)  # last: its presence marks completion
        yield {"input": src, "status": record["status"], "frames": record.get("frames", 0),
               "faces": record.get("faces", 0), "error": record.get("error", "")}

    def _anonymize(self, local_in: str, local_out: str) -> dict:
        from privacy_anon.runtime.video import anonymize_image_file

        if _kind(local_in) == "image":
            entry = anonymize_image_file(self.anonymizer, local_in, local_out)
        else:
            self.anonymizer.reset()  # faces held from the previous video must not carry over
            entry = self.anonymizer.anonymize_video(local_in, local_out, codec=self.options.codec,
                                                    quality=self.options.quality, progress=False)
        written = entry["output"] is not None and os.path.isfile(local_out)
        return {"status": "ok" if written else "failed",
                "error": "" if written else "every frame was dropped",
                "frames": entry["frames_in"],
                "faces": entry["faces"],
                "failed_frames": entry["masked"] + entry["dropped"]}


def build_pipeline(pipeline, pairs, options: BatchOptions):
    """Adds the anonymization to a `beam.Pipeline`; returns the PCollection of results."""
    beam = _beam()
    work = AnonymizeFile(options)

    class _Do(beam.DoFn):
        def setup(self):
            work.setup()

        def process(self, pair):
            yield from work.process(pair)

    return (pipeline
            | "Files" >> beam.Create(pairs)
            | "Spread" >> beam.Reshuffle()  # one file per bundle of work, over all workers
            | "Anonymize" >> beam.ParDo(_Do()))


def _remove_leftovers(output: str) -> None:
    """Deletes what a killed run left: hidden partial outputs and result folders."""
    from apache_beam.io.filesystems import FileSystems

    results, partial = ".batch-results-*", ".*.partial-*"
    if "://" not in output:  # local: folders and hidden names, which Beam's match skips
        import glob
        import shutil

        for path in glob.glob(os.path.join(glob.escape(output), results)):
            shutil.rmtree(path, ignore_errors=True)
        for path in glob.glob(os.path.join(glob.escape(output), "**", partial), recursive=True):
            os.remove(path)
        return
    patterns = [FileSystems.join(output, results, "**"), FileSystems.join(output, "**", partial)]
    try:
        stale = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]
        if stale:
            FileSystems.delete(stale)
    except Exception:  # noqa: BLE001 - cleaning up is a courtesy; the run itself goes on
        pass


def run(inputs: list[str], output: str, options: BatchOptions, file_list: str | None = None,
        workers: int = 1, beam_args: str = "", summary_path: str | None = None) -> dict:
    """Plans, runs and summarises a batch; returns {"done", "skipped", "failed", "inputs"}."""
    beam = _beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    from privacy_anon.runtime import load_bundle

    load_bundle(options.bundle)  # a bad bundle fails here, once, before any worker starts
    pairs = plan_outputs(list_inputs(inputs, file_list), output)
    args = shlex.split(beam_args or "")
    if not any(a.startswith("--runner") for a in args):
        args += ["--runner", "DirectRunner"]
    if "DirectRunner" in args or "--runner=DirectRunner" in args:
        if workers > 1:
            args += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    # per-file results go through the output filesystem, so any runner can return them
    from apache_beam.io.filesystems import FileSystems

    _remove_leftovers(output)

    results_dir = FileSystems.join(output, f".batch-results-{uuid.uuid4().hex[:12]}")
    try:
        with beam.Pipeline(options=PipelineOptions(args, save_main_session=False)) as p:
            results = build_pipeline(p, pairs, options)
            (results
             | "Json" >> beam.Map(json.dumps)
             | "Summary" >> beam.io.WriteToText(FileSystems.join(results_dir, "results"),
                                                file_name_suffix=".jsonl"))
        rows = []
        for match in FileSystems.match([FileSystems.join(results_dir, "results*")])[0].metadata_list:
            with FileSystems.open(match.path) as handle:
                text = handle.read().decode("utf-8")
            rows += [json.loads(line) for line in text.splitlines() if line.strip()]
    finally:
        if FileSystems.exists(results_dir):
            FileSystems.delete([results_dir])
    summary = {"inputs": len(pairs),
               "done": sum(r["status"] == "ok" for r in rows),
               "skipped": sum(r["status"] == "skipped" for r in rows),
               "failed": [r for r in rows if r["status"] == "failed"]}
    if summary_path:
        from privacy_anon.io_utils import atomic_write_json

        atomic_write_json(summary_path, summary)
    return summary
