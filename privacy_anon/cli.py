"""`privacy-anon`: the command-line entry point.

Each subcommand has an `_add_<name>` (its arguments) and a `_run_<name>` (imports what it
needs lazily, so `--help` and the TensorFlow-free commands start fast). Errors from bad
input (`InputError`) become one line on stderr and exit code 2; anything else exit code 1.
"""

from __future__ import annotations

import argparse
import sys

from privacy_anon.errors import InputError

PRESETS = ("paper", "mobile", "tiny")


def _common_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=PRESETS, default="tiny", help="config preset")
    p.add_argument("--config", metavar="YAML", help="YAML file of config overrides")
    p.add_argument("--seed", type=int, help="random seed (overrides train.seed)")


def _load_config(args):
    from privacy_anon.config import load_config

    overrides = {}
    if getattr(args, "seed", None) is not None:
        overrides = {"train": {"seed": args.seed}}
    return load_config(args.preset, args.config, overrides)


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
                   help="face data: 'synthetic' or a folder-per-identity root (overrides data.faces)")
    p.add_argument("--landmarks", default=None, help="landmarks CSV for --data (see README)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: from the preset)")
    p.add_argument("--classifier-checkpoint", default=None,
                   help="D weights to start from (a .keras file or a --stage classifier run directory)")
    p.add_argument("--out", required=True, help="run directory: config, checkpoints, metrics")


def _run_train(args) -> int:
    from privacy_anon.training import runs

    cfg = _load_config(args)
    if args.data:
        cfg.data.faces = args.data
        if args.stage in ("joint", "finetune") and args.data == "synthetic":
            cfg.data.actions = "synthetic"
            cfg.data.actions_format = "synthetic"
    if args.landmarks:
        cfg.data.landmarks_csv = args.landmarks
    runs.train(cfg, stage=args.stage, out=args.out, steps=args.steps,
               classifier_checkpoint=args.classifier_checkpoint)
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
    metrics = demo.run_demo(cfg, args.out)
    for key in sorted(metrics):
        value = metrics[key]
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
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
    detect_faces_in_dataset(args.dataset, args.format, args.out, detector,
                            landmarks_csv=args.landmarks_csv)
    return 0


# ----------------------------------------------------------------------------- main

COMMANDS = {
    "train": (_add_train, _run_train),
    "demo": (_add_demo, _run_demo),
    "detect-faces": (_add_detect_faces, _run_detect_faces),
}


def build_parser() -> argparse.ArgumentParser:
    from privacy_anon import __version__

    parser = argparse.ArgumentParser(
        prog="privacy-anon",
        description="Learned face anonymization that keeps actions detectable.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _, run = COMMANDS[args.command]
    try:
        return run(args)
    except InputError as exc:
        print(f"privacy-anon {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"privacy-anon {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
