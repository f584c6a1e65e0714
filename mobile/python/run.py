#!/usr/bin/env python3
"""Anonymize faces on a Raspberry Pi or any Linux board: camera or file in, video out.

Uses only `privacy_anon.runtime` (numpy, OpenCV, PyAV, LiteRT): no TensorFlow.

    pip install -r mobile/python/requirements.txt
    python mobile/python/run.py --bundle bundle.zip --input 0 --output cam.mp4 --threads 4
    python mobile/python/run.py --bundle bundle/ --input clip.mp4 --output anon.mp4

A rolling frames-per-second figure is printed once a second. Ctrl-C stops a camera cleanly
(the output file is finished, not left half-written).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

try:
    import privacy_anon  # noqa: F401
except ImportError:  # running from a checkout: the package sits two folders up
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


class FpsCounter:
    """Frames per second over the last `window` frames."""

    def __init__(self, window: int = 30):
        self.times = collections.deque(maxlen=window)

    def tick(self) -> float:
        self.times.append(time.perf_counter())
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


class CountingAnonymizer:
    """Wraps an `Anonymizer` so every processed frame ticks the FPS counter."""

    def __init__(self, anonymizer, every: float = 1.0):
        self._a = anonymizer
        self.fps = FpsCounter()
        self.every, self._last = every, 0.0
        self.frames = 0

    def __getattr__(self, name):
        return getattr(self._a, name)

    def process(self, frame, found=None):
        result = self._a.process(frame, found)
        self.frames += 1
        fps = self.fps.tick()
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            print(f"frame {self.frames}: {fps:5.1f} fps, {len(result.regions)} face(s), {result.status}",
                  file=sys.stderr, flush=True)
        return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--bundle", help="bundle folder or .zip from `privacy-anon export`")
    how.add_argument("--method", help="a baseline instead (blur8, mask, ...)")
    p.add_argument("--input", default="0", help="camera index or a video / image file")
    p.add_argument("--output", default="anonymized.mp4", help="output video (or image) file")
    p.add_argument("--threads", type=int, default=4, help="interpreter threads (a Pi 4/5 has 4 cores)")
    p.add_argument("--threshold", type=float, default=None, help="face score threshold (default: the bundle's)")
    p.add_argument("--min-face", type=float, default=40.0,
                   help="smallest face, pixels; 0 = whole-frame detection only (fastest)")
    p.add_argument("--hold", type=int, default=5, help="frames a lost face stays anonymized")
    p.add_argument("--max-frames", type=int, default=None, help="stop a camera after this many frames")
    p.add_argument("--preview", action="store_true", help="show the anonymized frames (needs a display)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from privacy_anon.errors import InputError
    from privacy_anon.runtime import Anonymizer

    try:
        anonymizer = Anonymizer(args.bundle, args.method, threshold=args.threshold, hold=args.hold,
                                num_threads=args.threads, min_face_size=args.min_face)
        counting = CountingAnonymizer(anonymizer)
        started = time.perf_counter()
        from privacy_anon.runtime.video import anonymize_paths

        # the video code only calls .process / .reset / .name / .enlarge / .frame_detectors,
        # which the wrapper passes on
        anonymize_paths(counting, [args.input], args.output, preview=args.preview,
                        progress=False, max_frames=args.max_frames)
    except InputError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    print(f"{counting.frames} frames in {seconds:.1f} s ({counting.frames / max(seconds, 1e-9):.1f} fps) "
          f"-> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
