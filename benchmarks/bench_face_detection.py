"""Face detection speed and recall, run by hand; results go to benchmarks/RESULTS.md.

Measures, on 640x480 frames of the panned/scaled astronaut video the tests use (her face
40 -> 300 px wide):
- ms per frame: BlazeFace alone (whole frame only, and with the default tiles) and with
  the MTCNN stage;
- in how many of the 100 frames the face is found (IoU > 0.4 with the true box).
With `--photos DIR`, also the fraction of a random sample of photos (folder-per-identity,
e.g. ../shared/data/celeba-mini) where a face is found. Photos are only read, never written.

Example:
    python benchmarks/bench_face_detection.py --threads 2 --photos ../shared/data/celeba-mini --sample 200
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent


def _panned_astronaut():
    # the very video the tests check (98/100), loaded from the test module by path
    spec = importlib.util.spec_from_file_location("_faces_test", HERE.parent / "tests" / "test_faces_detector.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.panned_astronaut()


def _time_per_frame(detector, frames, repeats: int) -> tuple[float, list]:
    detector(frames[0])  # warm-up (loads MTCNN / TensorFlow on first use)
    results = []
    start = time.perf_counter()
    for _ in range(repeats):
        results = [detector(frame) for frame in frames]
    return (time.perf_counter() - start) * 1000 / (repeats * len(frames)), results


def _found(results, boxes) -> int:
    from privacy_anon.faces.boxes import iou_matrix

    hits = 0
    for faces, box in zip(results, boxes):
        if faces and iou_matrix(box[None], np.stack([f.box for f in faces]))[0].max() > 0.4:
            hits += 1
    return hits


def bench_video(threads: int, repeats: int) -> None:
    from privacy_anon.config import FaceDetectionConfig
    from privacy_anon.faces.detector import FaceDetector

    frames, boxes = _panned_astronaut()
    setups = [
        ("BlazeFace, one letterboxed call (min_face_size=0, zoom_out=0)",
         FaceDetectionConfig(min_face_size=0, zoom_out=0), False),
        ("BlazeFace, default: + zoomed-out call + tiles (min_face_size=40)", FaceDetectionConfig(), False),
        ("BlazeFace + MTCNN stage (default)", FaceDetectionConfig(), True),
    ]
    print(f"640x480, {len(frames)} frames, {threads} thread(s)")
    print("| detector | windows / frame | ms / frame | frames with the face | with MTCNN landmarks |")
    print("| --- | --- | --- | --- | --- |")
    for name, cfg, mtcnn in setups:
        detector = FaceDetector(cfg, use_mtcnn=mtcnn, num_threads=threads)
        ms, results = _time_per_frame(detector, frames, repeats if not mtcnn else 1)
        windows = len(detector.blazeface.windows(640, 480))
        marks = sum(any(f.landmarks is not None for f in faces) for faces in results)
        print(f"| {name} | {windows} | {ms:.1f} | {_found(results, boxes)}/{len(frames)} | "
              f"{marks if mtcnn else '-'} |")


def bench_photos(root: Path, sample: int, threads: int, seed: int) -> None:
    from privacy_anon.data.face_boxes import read_image
    from privacy_anon.faces.detector import FaceDetector

    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    random.Random(seed).shuffle(paths)
    paths = paths[:sample]
    images = [read_image(p) for p in paths]
    sizes = np.array([im.shape[:2] for im in images])
    print(f"\n{len(images)} photos from {root} (seed {seed}), median size "
          f"{int(np.median(sizes[:, 1]))}x{int(np.median(sizes[:, 0]))}")
    print("| detector | ms / photo | photos with a face | with MTCNN landmarks | > 1 face |")
    print("| --- | --- | --- | --- | --- |")
    for name, mtcnn in [("BlazeFace alone", False), ("BlazeFace + MTCNN", True)]:
        detector = FaceDetector(use_mtcnn=mtcnn, num_threads=threads)
        ms, results = _time_per_frame(detector, images, 1)
        found = sum(bool(r) for r in results)
        marks = sum(any(f.landmarks is not None for f in r) for r in results)
        many = sum(len(r) > 1 for r in results)
        print(f"| {name} | {ms:.1f} | {found}/{len(images)} ({100 * found / len(images):.1f} %) | "
              f"{marks if mtcnn else '-'} | {many} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="BlazeFace interpreter threads")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the video (BlazeFace timings)")
    parser.add_argument("--photos", type=Path, default=None, help="folder of photos to sample (read only)")
    parser.add_argument("--sample", type=int, default=200, help="photos to sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bench_video(args.threads, args.repeats)
    if args.photos:
        bench_photos(args.photos, args.sample, args.threads, args.seed)


if __name__ == "__main__":
    main()
