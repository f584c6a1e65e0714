"""Runtime speed, run by hand; results go to benchmarks/RESULTS.md.

1. Per-crop latency of M on LiteRT (batch 1), float32 vs full int8, for the `mobile` M, the
   same without `pixel_shuffle`, and the `paper` M (random weights: speed does not depend on
   them), and the int8 file size.
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

# per-crop rows: name -> (preset, ModifierConfig overrides); `mobile` off one switch shows
# what that switch buys
MODIFIERS = {
    "mobile": ("mobile", {}),
    "mobile, full-resolution ends": ("mobile", {"pixel_shuffle": False}),
    "paper": ("paper", {}),
}


def build_modifier_for(name):
    """The row's M (residual output) with random head weights: speed does not depend on them."""
    import dataclasses

    from privacy_anon.config import get_preset
    from privacy_anon.models.modifier import build_modifier

    preset, overrides = MODIFIERS[name]
    cfg = dataclasses.replace(get_preset(preset).modifier, output_mode="residual",
                              residual_amplitude=0.5, **overrides)
    m = build_modifier(cfg)
    m.head.kernel.assign(np.random.default_rng(1).normal(0, 0.05, m.head.kernel.shape).astype("float32"))
    return m


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

    timer = (lambda path, size, _threads: cpu_time_model(path, size)) if cpu_time else time_model
    unit = "CPU ms (1 thread, best of 30)" if cpu_time else f"ms ({threads} threads)"
    print(f"| M | input / filters / blocks | GMACs | float32 {unit} | int8 {unit} | int8 speed-up | "
          f"int8, float variance {unit} | int8 MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in MODIFIERS:
        if skip_paper and name == "paper":
            continue
        m = build_modifier_for(name)
        size = m.input_size
        calib = np.random.default_rng(0).integers(0, 256, (8, size, size, 3), dtype=np.uint8)
        row = []
        # int8 with the instance norms' variance kept in float (`export --float-variance`)
        for q, float_variance in (("none", False), ("int8", False), ("int8", True)):
            data = convert_modifier(m, q, calib, float_variance=float_variance)
            path = tmp / f"{name.replace(' ', '_').replace(',', '')}_{q}{'_fv' * float_variance}.tflite"
            path.write_bytes(data)
            row.append((timer(path, size, threads), len(data)))
        print(f"| {name} | {size} / {m.filters} / {m.num_blocks} | {m.macs() / 1e9:.2f} | "
              f"{row[0][0]:.2f} | {row[1][0]:.2f} | {row[0][0] / row[1][0]:.2f}x | {row[2][0]:.2f} | "
              f"{row[1][1] / 1e6:.2f} |", flush=True)


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
