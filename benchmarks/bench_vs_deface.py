"""privacy-anon against deface, side by side on the same generated clips, in the same run.

deface (PyPI `deface`: CenterFace on ONNX Runtime + blur) is what people use today. This
script runs, on each clip, deface and `privacy-anon anonymize` with `--method blur8` and
with a learned int8 bundle, interleaved (the order rotates every round) so that the load of
a shared machine hits every tool alike, and prints frames/s *ratios* against deface:
per frame after start-up (a 2-frame run of each tool is subtracted), and wall clock.

Recall: a separate pass per tool fills the faces it finds with black (deface
`--replacewith solid`, privacy-anon `--method mask`; detection does not depend on the fill)
and counts a true face as covered when >= 70 % of the pixels of the central 60 % of its
known box are black in the output. The clips are generated from real public-domain photos
(scikit-image's astronaut, Eileen Collins, NASA; matplotlib's Grace Hopper, US Navy) pasted,
scaled and moving over a panned background photo (scikit-image's coffee), so the true face
boxes are known exactly and the benchmark runs anywhere.

deface pulls in `opencv-python` (which clashes with this project's `opencv-python-headless`)
so it lives in its own venv and runs as a subprocess:

    python3 -m venv /tmp/deface-venv && /tmp/deface-venv/bin/pip install -r benchmarks/requirements-deface.txt
    python benchmarks/bench_vs_deface.py --deface /tmp/deface-venv/bin/deface --frames 48 --rounds 2
    python benchmarks/bench_vs_deface.py --deface /tmp/deface-venv/bin/deface --cpus 0 --threads 1   # Pi-class

Without `--bundle` it builds the learned bundle from the `mobile` preset's M (128 px, 16
filters, 3 residual blocks) with random (not trained) weights: speed does not depend on the
weights, but such an M is no anonymizer. `--cpus 0` pins every tool
to one core (taskset) as the closest stand-in for a Raspberry Pi here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# face boxes (x0, y0, x1, y1) in the source photos (BlazeFace, checked by eye)
ASTRONAUT_FACE = (175, 70, 280, 175)
HOPPER_FACE = (157, 117, 369, 330)
# default clips: (width, height, [(face side start, face side end), ...])
CLIPS = {
    "640x360": (640, 360, [(70, 110), (60, 90)]),
    "1280x720": (1280, 720, [(140, 220), (100, 160), (90, 130)]),
    "1920x1080": (1920, 1080, [(220, 320), (150, 240), (120, 180), (100, 150)]),
}


# ----------------------------------------------------------------------------- clips


def _photos():
    """(patch, face box in the patch) for each source face: the face with hair and shoulders."""
    from matplotlib import cbook
    from skimage.data import astronaut
    from skimage.io import imread

    hopper = imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))[..., :3]
    out = []
    for image, (x0, y0, x1, y1) in ((astronaut(), ASTRONAUT_FACE), (hopper, HOPPER_FACE)):
        side = x1 - x0
        px0, py0 = max(0, x0 - side // 2), max(0, y0 - side // 2)
        px1, py1 = min(image.shape[1], x1 + side // 2), min(image.shape[0], y1 + side)
        patch = np.ascontiguousarray(image[py0:py1, px0:px1])
        out.append((patch, (x0 - px0, y0 - py0, x1 - px0, y1 - py0)))
        out.append((patch[:, ::-1].copy(), (px1 - x1, y0 - py0, px1 - x0, y1 - py0)))  # mirrored
    return out


@dataclass
class Clip:
    name: str
    path: Path
    width: int
    height: int
    frames: int
    boxes: list  # per frame: (F, 4) true face boxes


def make_clip(path: Path, width: int, height: int, sizes, frames: int, seed: int = 0) -> Clip:
    """Faces of the given start/end sides moving over a panned background, x264 CRF 18."""
    import av
    import cv2
    from skimage.data import coffee

    rng = np.random.default_rng(seed)
    photos = _photos()
    bg = cv2.resize(coffee(), (int(width * 1.3), int(height * 1.3)), interpolation=cv2.INTER_LINEAR)
    lanes = len(sizes)
    plan = []
    for k, (s0, s1) in enumerate(sizes):
        patch, box = photos[k % len(photos)]
        lane_w = width / lanes
        x_start = lane_w * k + rng.uniform(0.05, 0.2) * lane_w
        x_end = lane_w * k + rng.uniform(0.2, 0.35) * lane_w
        plan.append((patch, box, s0, s1, x_start, x_end, rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3)))
    boxes = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        for i in range(frames):
            t = i / max(frames - 1, 1)
            ox, oy = int((bg.shape[1] - width) * t), int((bg.shape[0] - height) * (1 - t))
            frame = bg[oy:oy + height, ox:ox + width].copy()
            frame_boxes = []
            for patch, (fx0, fy0, fx1, fy1), s0, s1, xs, xe, ys, ye in plan:
                scale = (s0 + (s1 - s0) * t) / (fx1 - fx0)
                p = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                ph, pw = min(p.shape[0], height), min(p.shape[1], int(width / lanes))
                x0 = int(min(xs + (xe - xs) * t, width - pw))
                y0 = int(min((ys + (ye - ys) * t) * height, height - ph))
                frame[y0:y0 + ph, x0:x0 + pw] = p[:ph, :pw]
                frame_boxes.append([x0 + fx0 * scale, y0 + fy0 * scale, x0 + fx1 * scale, y0 + fy1 * scale])
            boxes.append(np.asarray(frame_boxes, np.float32))
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    return Clip(path.stem, path, width, height, frames, boxes)


def read_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def recall(clip: Clip, masked: Path) -> float:
    """Fraction of true faces (over all frames) that the black fill covers."""
    frames = read_frames(masked)
    covered = total = 0
    for image, boxes in zip(frames, clip.boxes):
        for x0, y0, x1, y1 in boxes:
            dx, dy = 0.2 * (x1 - x0), 0.2 * (y1 - y0)
            inner = image[int(y0 + dy):int(y1 - dy), int(x0 + dx):int(x1 - dx)]
            covered += bool((inner.max(axis=2) <= 40).mean() >= 0.7)
            total += 1
    total += sum(len(b) for b in clip.boxes[len(frames):])  # frames a tool left out count as misses
    return covered / max(total, 1)


# ----------------------------------------------------------------------------- tools


def build_bundle(out: Path, seed: int = 0) -> Path:
    """The learned int8 bundle: the recipe's M with random weights (head included, so M is
    not the identity), calibrated on crops of the clips' faces."""
    import keras

    from privacy_anon.config import get_preset
    from privacy_anon.export import export_bundle
    from privacy_anon.models.modifier import build_modifier

    import cv2

    keras.utils.set_random_seed(seed)
    m = build_modifier(get_preset("mobile").modifier)  # the `mobile` preset's M
    rng = np.random.default_rng(seed)
    for w in m.weights:  # the residual head starts at zero (identity): give it weights
        if "head" in w.path and np.abs(w.numpy()).max() == 0:
            w.assign(rng.normal(0, 0.02, w.shape).astype(np.float32))
    crops = []
    for patch, (x0, y0, x1, y1) in _photos():
        side = int((x1 - x0) * 1.6)
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        crop = patch[max(0, cy - side // 2):cy + side // 2, max(0, cx - side // 2):cx + side // 2]
        for s in (0.8, 1.0):
            crops.append(cv2.resize(cv2.resize(crop, None, fx=s, fy=s), (128, 128)))
    export_bundle(m, out, representative=crops, min_psnr=0, verbose=False)
    return out


def privacy_anon_cmd(clip: Path, out: Path, how: list[str], threads: int) -> list[str]:
    return [sys.executable, "-m", "privacy_anon.cli", "anonymize", str(clip), "-o", str(out),
            *how, "--threads", str(threads), "--no-progress"]


def deface_cmd(deface: str, clip: Path, out: Path, solid: bool = False) -> list[str]:
    cmd = [deface, str(clip), "-o", str(out)]
    return cmd + ["--replacewith", "solid"] if solid else cmd


def run_timed(cmd: list[str], cpus: str | None) -> float:
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t
    if done.returncode:
        raise RuntimeError(f"{cmd[:4]}... failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return seconds


# ----------------------------------------------------------------------------- main


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, load {os.getloadavg()[0]:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--deface", default=shutil.which("deface") or "/tmp/deface-venv/bin/deface",
                   help="the deface executable")
    p.add_argument("--bundle", help="a learned int8 bundle (default: build the recipe's, random weights)")
    p.add_argument("--clips", default=",".join(CLIPS), help=f"which of {', '.join(CLIPS)}")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--rounds", type=int, default=2, help="timed runs per tool and clip (order rotates)")
    p.add_argument("--threads", type=int, default=2, help="privacy-anon interpreter threads")
    p.add_argument("--cpus", default=None, help="taskset CPU list for every tool, e.g. 0 (one core)")
    p.add_argument("--no-recall", action="store_true")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    if not Path(args.deface).exists() and not shutil.which(args.deface):
        sys.exit(f"{args.deface}: deface not found (see this script's docstring to install it)")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = Path(args.bundle) if args.bundle else build_bundle(tmp / "bundle")
        tools = {
            "deface": lambda clip, out: deface_cmd(args.deface, clip, out),
            "blur8": lambda clip, out: privacy_anon_cmd(clip, out, ["--method", "blur8"], args.threads),
            "learned int8": lambda clip, out: privacy_anon_cmd(clip, out, ["--bundle", str(bundle)], args.threads),
        }
        print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine()}; "
              f"privacy-anon threads {args.threads}; cpus {args.cpus or 'all'}; {args.frames} frames/clip",
              flush=True)
        print("| clip | faces | deface f/s | blur8 f/s (x deface) | learned int8 f/s (x deface) | "
              "wall-clock ratio blur8 / learned | recall deface | recall privacy-anon | load |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        rows = []
        for name in args.clips.split(","):
            width, height, sizes = CLIPS[name]
            clip = make_clip(tmp / f"{name}.mp4", width, height, sizes, args.frames)
            # a 2-frame copy measures each tool's start-up (imports, model loading), so that
            # frames/s can be given both with it (wall clock) and without it (per extra frame)
            short = make_clip(tmp / f"{name}_short.mp4", width, height, sizes, 2)
            times = {tool: [] for tool in tools}
            startup = {tool: [] for tool in tools}
            order = list(tools)
            for r in range(args.rounds):
                for tool in order[r % len(order):] + order[:r % len(order)]:
                    out = tmp / f"out_{name}_{tool.replace(' ', '_')}.mp4"
                    times[tool].append(run_timed(tools[tool](clip.path, out), args.cpus))
                    startup[tool].append(run_timed(tools[tool](short.path, out), args.cpus))
            wall = {tool: clip.frames / float(np.median(t)) for tool, t in times.items()}
            fps = {tool: (clip.frames - short.frames) / max(1e-3, float(np.median(times[tool]) - np.median(startup[tool])))
                   for tool in tools}
            row = {"clip": name, "faces": len(sizes), "fps": fps, "wall_fps": wall,
                   "startup_s": {tool: float(np.median(t)) for tool, t in startup.items()},
                   "ratio": {tool: fps[tool] / fps["deface"] for tool in tools if tool != "deface"},
                   "wall_ratio": {tool: wall[tool] / wall["deface"] for tool in tools if tool != "deface"},
                   "load": os.getloadavg()[0]}
            if not args.no_recall:
                masked = {"deface": deface_cmd(args.deface, clip.path, tmp / "mask_deface.mp4", solid=True),
                          "privacy-anon": privacy_anon_cmd(clip.path, tmp / "mask_ours.mp4",
                                                           ["--method", "mask"], args.threads)}
                row["recall"] = {}
                for tool, cmd in masked.items():
                    run_timed(cmd, args.cpus)
                    row["recall"][tool] = recall(clip, Path(cmd[cmd.index("-o") + 1]))
            rows.append(row)
            rec = row.get("recall", {})
            print(f"| {name} | {len(sizes)} | {fps['deface']:.2f} | {fps['blur8']:.2f} ({row['ratio']['blur8']:.2f}x) | "
                  f"{fps['learned int8']:.2f} ({row['ratio']['learned int8']:.2f}x) | "
                  f"{row['wall_ratio']['blur8']:.2f}x / {row['wall_ratio']['learned int8']:.2f}x | "
                  f"{rec.get('deface', float('nan')):.3f} | {rec.get('privacy-anon', float('nan')):.3f} | "
                  f"{row['load']:.1f} |", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine(), "args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
