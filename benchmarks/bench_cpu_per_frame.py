"""CPU time per frame of `Anonymizer.process`, for one or more checkouts of privacy-anon, side by side.

Wall-clock frames/s (`bench_vs_deface.py`) needs an idle machine; CPU time
(`time.process_time()`, all threads of the process) is much less disturbed by other jobs,
so it is the figure to compare code changes with on a shared machine. Each checkout runs
in its own subprocess (`PYTHONPATH=<checkout>`) on the same decoded frames of the
generated clips of `bench_vs_deface.py`; checkouts alternate within each round.

    git archive main | tar -x -C /tmp/base       # the code to compare against
    python benchmarks/bench_cpu_per_frame.py --repo /tmp/base --repo . --bundle BUNDLE
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# run in the child: python -c CHILD frames.npy method-or-bundle threads warmup
CHILD = r"""
import json, sys, time
import numpy as np
from privacy_anon.runtime.pipeline import Anonymizer
frames = np.load(sys.argv[1])
what, threads, warmup = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
kw = {"bundle": what} if "/" in what else {"method": what}
anonymizer = Anonymizer(num_threads=threads, **kw)
for frame in frames[:warmup]:
    anonymizer.process(frame)
anonymizer.reset()
faces = 0
cpu, wall = time.process_time(), time.perf_counter()
for frame in frames:
    faces += len(anonymizer.process(frame).regions)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
print(json.dumps({"cpu_ms": 1000 * cpu / len(frames), "wall_ms": 1000 * wall / len(frames),
                  "faces": faces, "module": __import__("privacy_anon").__file__}))
"""


def measure(repo: Path, frames_file: Path, what: str, threads: int, warmup: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(repo.resolve()), "TF_CPP_MIN_LOG_LEVEL": "2"}
    # cwd: `python -c` puts the working directory before PYTHONPATH on sys.path
    out = subprocess.run([sys.executable, "-c", CHILD, str(frames_file), what, str(threads), str(warmup)],
                         env=env, capture_output=True, text=True, check=True, cwd=frames_file.parent)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["module"].startswith(str(repo.resolve()) + os.sep):
        raise RuntimeError(f"{repo}: imported privacy_anon from {result['module']}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", action="append", type=Path, required=True,
                   help="a privacy-anon checkout to measure (repeat to compare)")
    p.add_argument("--bundle", help="a learned bundle folder (measured beside blur8)")
    p.add_argument("--clips", default="640x360,1280x720")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args()

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_vs_deface import CLIPS, make_clip, read_frames

    methods = ["blur8"] + ([str(Path(args.bundle).resolve())] if args.bundle else [])
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for clip_name in args.clips.split(","):
            width, height, sizes = CLIPS[clip_name]
            clip = make_clip(Path(tmp) / f"{clip_name}.mp4", width, height, sizes, args.frames)
            frames_file = Path(tmp) / f"{clip_name}.npy"
            np.save(frames_file, np.stack(read_frames(clip.path)))
            for r in range(args.rounds):
                for what in methods:
                    repos = args.repo if r % 2 == 0 else args.repo[::-1]
                    for repo in repos:
                        m = measure(repo, frames_file, what, args.threads, args.warmup)
                        results.setdefault((clip_name, what, str(repo)), []).append(m)
    print(f"CPU ms per frame (process_time, all threads), {args.frames} frames, threads {args.threads}, "
          f"best of {args.rounds}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{'clip':<10} {'method':<8} {'checkout':<32} {'cpu ms':>8} {'wall ms':>8} {'regions':>8}")
    for (clip_name, what, repo), ms in results.items():
        best = min(ms, key=lambda m: m["cpu_ms"])
        name = "blur8" if what == "blur8" else "learned"
        print(f"{clip_name:<10} {name:<8} {repo[-32:]:<32} {best['cpu_ms']:8.1f} {best['wall_ms']:8.1f} "
              f"{best['faces']:8d}")


if __name__ == "__main__":
    main()
