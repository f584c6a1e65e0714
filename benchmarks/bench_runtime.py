"""Runtime speed, run by hand; results go to benchmarks/RESULTS.md.

1. Per-crop latency of M on LiteRT (batch 1), float32 vs full int8, at the `mobile` and
   `paper` sizes (random weights: speed does not depend on them), and the int8 file size.
2. End-to-end frames/s of the runtime pipeline (BlazeFace + tracker + int8 M + paste, PyAV
   decode/encode, x264) on generated 640x360 and 1280x720 clips of astronaut() (one face),
   with the default detector tiles and with whole-frame detection only (`--min-face 0`).

Example:
    python benchmarks/bench_runtime.py --threads 2 --frames 60
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

PRESETS = ("mobile", "paper")
# issue 10's real-face recipe (planned for `mobile`): 128 px, 16 filters, 3 blocks
EXTRA_SIZES = {"recipe 128/16/3": (128, 16, 3)}


def preset_size(name):
    if name in EXTRA_SIZES:
        return EXTRA_SIZES[name]
    from privacy_anon.config import get_preset

    c = get_preset(name).modifier
    return c.input_size, c.filters, c.num_blocks


def macs(size, filters, blocks):
    """Multiply-accumulates of one M forward pass (convs and transposed convs)."""
    f, s = filters, size
    total = s * s * 7 * 7 * 3 * f  # stem
    total += (s // 2) ** 2 * 9 * f * 2 * f + (s // 4) ** 2 * 9 * 2 * f * 4 * f  # down
    total += blocks * 2 * (s // 4) ** 2 * 9 * (4 * f) ** 2  # residual blocks
    total += (s // 4) ** 2 * 9 * 4 * f * 2 * f + (s // 2) ** 2 * 9 * 2 * f * f  # up (per input pixel)
    total += s * s * 7 * 7 * f * 3  # head
    return total


def time_model(path, size, threads, repeats=20):
    from privacy_anon.runtime.modifier import TFLiteModifier

    m = TFLiteModifier(path, num_threads=threads)
    x = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    for _ in range(3):
        m.run(x)
    t = time.perf_counter()
    for _ in range(repeats):
        m.run(x)
    return (time.perf_counter() - t) / repeats * 1000


def cpu_time_model(path, size, repeats=30):
    """CPU ms of one call on 1 interpreter thread (the work runs in this thread), best of
    `repeats`: far less sensitive to other jobs on a shared machine than wall-clock time."""
    from privacy_anon.runtime.modifier import TFLiteModifier

    m = TFLiteModifier(path, num_threads=1)
    x = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    m.run(x)
    best = float("inf")
    for _ in range(repeats):
        t = time.thread_time()
        m.run(x)
        best = min(best, time.thread_time() - t)
    return best * 1000


def bench_crops(threads, tmp, cpu_time=False, skip_paper=False):
    from privacy_anon.export.tflite import convert_modifier
    from privacy_anon.models.modifier import FaceModifier

    timer = (lambda path, size, _threads: cpu_time_model(path, size)) if cpu_time else time_model
    unit = "CPU ms (1 thread, best of 30)" if cpu_time else f"ms ({threads} threads)"
    print(f"| preset | input / filters / blocks | GMACs | float32 {unit} | int8 {unit} | int8 MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in (*PRESETS[:1], *EXTRA_SIZES, *(() if skip_paper else PRESETS[1:])):
        size, filters, blocks = preset_size(name)
        m = FaceModifier(size, filters, blocks, output_mode="residual", residual_amplitude=0.5)
        m.build()
        calib = np.random.default_rng(0).integers(0, 256, (8, size, size, 3), dtype=np.uint8)
        row = []
        for q in ("none", "int8"):
            data = convert_modifier(m, q, calib)
            path = tmp / f"{name}_{q}.tflite"
            path.write_bytes(data)
            row.append((timer(path, size, threads), len(data)))
        print(f"| {name} | {size} / {filters} / {blocks} | {macs(size, filters, blocks) / 1e9:.2f} | "
              f"{row[0][0]:.1f} | {row[1][0]:.1f} | {row[1][1] / 1e6:.2f} |", flush=True)


def make_clip(path, width, height, frames):
    import av
    import cv2
    from skimage.data import astronaut

    img = astronaut()
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            scale = 0.5 + 0.5 * i / max(frames - 1, 1)  # face 55 -> 110 px at 640x360
            face = cv2.resize(img, None, fx=scale * height / 360, fy=scale * height / 360)
            frame = np.zeros((height, width, 3), np.uint8)
            h, w = min(height, face.shape[0]), min(width, face.shape[1])
            x0 = int((width - w) * i / max(frames - 1, 1))
            frame[:h, x0:x0 + w] = face[:h, :w]
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            c.mux(v.encode(vf))
        c.mux(v.encode(None))


def bench_pipeline(threads, frames, tmp):
    from privacy_anon.config import get_preset
    from privacy_anon.export import export_bundle
    from privacy_anon.models.modifier import build_modifier
    from privacy_anon.runtime import Anonymizer

    m = build_modifier(get_preset("mobile").modifier)
    calib = np.random.default_rng(0).integers(0, 256, (8, 128, 128, 3), dtype=np.uint8)
    bundle = tmp / "bundle"
    export_bundle(m, bundle, representative=list(calib), min_psnr=0, verbose=False)
    print("| clip | detector | frames/s (whole pipeline) |")
    print("| --- | --- | --- |")
    for width, height in ((640, 360), (1280, 720)):
        clip = tmp / f"clip_{width}x{height}.mp4"
        make_clip(clip, width, height, frames)
        for label, min_face in (("tiles (min face 40 px)", None), ("whole frame (--min-face 0)", 0)):
            a = Anonymizer(bundle, num_threads=threads, min_face_size=min_face)
            t = time.perf_counter()
            summary = a.anonymize_video(clip, tmp / f"out_{width}.mp4", progress=False)
            fps = summary["frames_in"] / (time.perf_counter() - t)
            found = summary["frames_with_faces"]
            print(f"| {width}x{height} | {label} | {fps:.1f} (face in {found}/{frames} frames) |", flush=True)


def main():
    p = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--skip-crops", action="store_true")
    p.add_argument("--cpu-time", action="store_true", help="per-crop CPU time on 1 thread instead of wall clock")
    p.add_argument("--skip-paper", action="store_true", help="per-crop: leave out the (slow) paper size")
    p.add_argument("--skip-pipeline", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_crops:
            bench_crops(args.threads, tmp, args.cpu_time, args.skip_paper)
        if not args.skip_pipeline:
            bench_pipeline(args.threads, args.frames, tmp)


if __name__ == "__main__":
    main()
