#!/usr/bin/env python3
"""Golden vectors from the Python runtime, for the Android (JVM) and browser runners' tests.

Runs `privacy_anon.runtime.Anonymizer` on a few generated frames (the public-domain
astronaut photo placed in a larger frame, moved, covered for one frame so the tracker has to
hold the face, then a close-up) and records, through a thin wrapper around each interpreter,
every model call: the exact input tensor and the raw output tensors. With them it writes the
runtime's decoded detections, the boxes the tracker returns, the pasted regions and the
anonymized frames. A runner that feeds the same model outputs through its own decoding,
tracking and pasting must reproduce them.

It also writes broken copies of the bundle (one per check of `runtime/bundle.py`) with the
words the runners' one-line errors must contain.

    python mobile/golden.py BUNDLE_DIR OUT_DIR

OUT_DIR/golden.json lists everything; arrays are raw little-endian files beside it
(`.u8`: uint8, `.f32`: float32), shapes in the JSON. No TensorFlow here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

try:
    import privacy_anon  # noqa: F401
except ImportError:  # running from a checkout
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from privacy_anon.errors import InputError  # noqa: E402
from privacy_anon.runtime import Anonymizer, load_bundle  # noqa: E402

FRAME_W, FRAME_H = 400, 300  # wider than one 320 px tile: the tiles are exercised too


class RecordingInterpreter:
    """Passes every call to a LiteRT interpreter and keeps each invoke's input and outputs."""

    def __init__(self, interpreter, calls: list, kind: str):
        self._i, self._calls, self._kind = interpreter, calls, kind
        self._input = None

    def set_tensor(self, index, value):
        self._input = np.array(value, copy=True)
        return self._i.set_tensor(index, value)

    def invoke(self):
        self._i.invoke()
        outputs = [np.array(self._i.get_tensor(d["index"]), copy=True) for d in self._i.get_output_details()]
        shapes = [list(d["shape"]) for d in self._i.get_output_details()]
        self._calls.append({"kind": self._kind, "input": self._input, "outputs": outputs, "shapes": shapes})

    def __getattr__(self, name):
        return getattr(self._i, name)


def golden_frames() -> list[np.ndarray]:
    """Five 400x300 frames: the astronaut (face ~60 px) moving right, covered in frame 3, and
    a 400x300 close-up whose face only the zoomed-out pass sees whole."""
    import cv2
    from skimage.data import astronaut

    face = cv2.resize(astronaut(), (300, 300), interpolation=cv2.INTER_AREA)
    frames = []
    for i, x in enumerate((20, 26, 32, 38)):
        frame = np.full((FRAME_H, FRAME_W, 3), 90, np.uint8)
        frame[:, x:x + 300] = face
        if i == 2:  # the detector cannot see it: the tracker must still hide it
            frame[20:130, x + 80:x + 190] = 90
        frames.append(frame)
    close = cv2.resize(astronaut()[40:240, 110:340], (400, 300), interpolation=cv2.INTER_AREA)
    frames.append(np.ascontiguousarray(close))
    return frames


def write_golden(bundle_dir, out_dir) -> dict:
    """Runs the runtime on `golden_frames()` with the bundle and writes OUT_DIR/golden.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    anonymizer = Anonymizer(str(bundle_dir), num_threads=1)
    calls: list = []
    anonymizer.detector._interpreter = RecordingInterpreter(anonymizer.detector._interpreter, calls, "detector")
    anonymizer.modifier._interpreter = RecordingInterpreter(anonymizer.modifier._interpreter, calls, "modifier")
    det = anonymizer.detector
    frames_meta = []
    files = {}

    def save(name, array):
        array = np.ascontiguousarray(array)
        suffix = {np.dtype(np.uint8): "u8", np.dtype(np.float32): "f32"}[array.dtype]
        path = f"{name}.{suffix}"
        (out / path).write_bytes(array.astype(array.dtype.newbyteorder("<")).tobytes())
        files[name] = {"file": path, "shape": list(array.shape)}
        return name

    for i, frame in enumerate(golden_frames()):
        if i == 4:  # the close-up is a separate still image: fresh tracker
            anonymizer.reset()
        start = len(calls)
        result = anonymizer.process(frame)
        assert result.status == "ok", result.error
        det_calls, mod_calls = [], []
        for k, call in enumerate(calls[start:]):
            name = f"f{i}_{call['kind']}{k}"
            if call["kind"] == "detector":
                by_width = {int(o.shape[-1]): o for o in call["outputs"]}
                det_calls.append({"input": save(name + "_in", call["input"]),
                                  "regressors": save(name + "_reg", by_width[16]),
                                  "classificators": save(name + "_cls", by_width[1])})
            else:  # one entry per crop, whatever the batch
                for j in range(len(call["input"])):
                    mod_calls.append({"input": save(f"{name}_{j}_in", call["input"][j]),
                                      "output": save(f"{name}_{j}_out", call["outputs"][0][j])})
        tracked = anonymizer.tracker._boxes  # the tracks after this frame (smoothed boxes)
        frames_meta.append({
            "frame": save(f"f{i}", frame),
            "reset_before": i == 4,
            "windows": [list(map(int, w)) for w in det.windows(frame.shape[1], frame.shape[0])],
            "detector_calls": det_calls,
            "detections": result.detections.astype(float).tolist(),
            "scores": result.scores.astype(float).tolist(),
            "tracks": np.asarray(tracked, float).tolist(),
            "regions": result.regions.astype(int).tolist(),
            "modifier_calls": mod_calls,
            "output": save(f"f{i}_out", result.image),
        })
    manifest = load_bundle(bundle_dir, check_models=False).manifest
    # the stills as PNG (lossless) for runners that read image files, and the bundle as a .zip
    import cv2
    import zipfile

    for i in (0, 4):
        cv2.imwrite(str(out / f"f{i}.png"), cv2.cvtColor(golden_frames()[i], cv2.COLOR_RGB2BGR))
    with zipfile.ZipFile(out / "bundle.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("bundle.json", "modifier.tflite", "face_detector.tflite"):
            zf.write(Path(bundle_dir) / name, f"bundle/{name}")
    golden = {
        "bundle": str(Path(bundle_dir).resolve()),
        "settings": {"score_threshold": det.score_threshold, "nms_iou": det.nms_iou,
                     "min_face_size": det.min_face_size, "zoom_out": det.zoom_out,
                     "enlarge": anonymizer.enlarge, "hold": anonymizer.tracker.hold_frames,
                     "smoothing": anonymizer.tracker.smoothing, "match_iou": anonymizer.tracker.match_iou,
                     "input_size": int(manifest["modifier"]["input_size"])},
        "frames": frames_meta,
        "pngs": {"0": "f0.png", "4": "f4.png"},
        "zip": "bundle.zip",
        "arrays": files,
        "bad_bundles": write_bad_bundles(bundle_dir, out / "bad"),
    }
    (out / "golden.json").write_text(json.dumps(golden, indent=1))
    return golden


def write_bad_bundles(bundle_dir, out_dir) -> list[dict]:
    """One broken copy of the bundle per check the runtime makes; each is confirmed to fail
    `load_bundle` first. Returns `[{"name", "path", "expect": words the error must contain,
    "needs_interpreter": whether only loading the models shows the fault}]`."""
    src = Path(bundle_dir)
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    def manifest_edit(change):
        def edit(d):
            m = json.loads((d / "bundle.json").read_text())
            change(m)
            (d / "bundle.json").write_text(json.dumps(m))
        return edit

    def write(name, text):
        return lambda d: (d / name).write_bytes(text)

    cases = [
        ("missing_manifest", lambda d: (d / "bundle.json").unlink(), ["bundle.json", "missing"]),
        ("manifest_not_json", write("bundle.json", b"{not json"), ["bundle.json", "JSON"]),
        ("wrong_format", manifest_edit(lambda m: m.update(format="something-else")), ["bundle.json", "format"]),
        ("future_version", manifest_edit(lambda m: m.update(format_version=99)), ["bundle.json", "version"]),
        ("incomplete_manifest", manifest_edit(lambda m: m.pop("files")), ["bundle.json", "incomplete"]),
        ("missing_modifier", lambda d: (d / "modifier.tflite").unlink(), ["modifier.tflite", "missing"]),
        ("no_sha256", manifest_edit(lambda m: m["files"]["face_detector.tflite"].pop("sha256")),
         ["face_detector.tflite", "sha256"]),
        ("truncated_modifier", lambda d: (d / "modifier.tflite").write_bytes((d / "modifier.tflite").read_bytes()[:1000]),
         ["modifier.tflite", "sha256 mismatch"]),
        ("not_tflite", None, ["modifier.tflite", "not a TFLite model"]),
        # right hashes, wrong models: only a runner that loads the models can tell
        ("modifier_is_detector", None, ["modifier.tflite", "expected 1 input and 1 output"]),
        ("detector_is_modifier", None, ["face_detector.tflite", "not BlazeFace full-range"]),
    ]
    result = []
    for name, damage, expect in cases:
        d = out / name
        shutil.copytree(src, d)
        replace = {"not_tflite": ("modifier.tflite", lambda: b"this is not a model " * 50),
                   "modifier_is_detector": ("modifier.tflite", lambda: (src / "face_detector.tflite").read_bytes()),
                   "detector_is_modifier": ("face_detector.tflite", lambda: (src / "modifier.tflite").read_bytes())}
        if name in replace:  # new content with its hash in bundle.json
            import hashlib

            target, content = replace[name]
            data = content()
            (d / target).write_bytes(data)
            manifest_edit(lambda m: m["files"][target].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data)))(d)
        else:
            damage(d)
        models = name in ("modifier_is_detector", "detector_is_modifier")
        try:
            load_bundle(d, check_models=models)
        except InputError as exc:
            message = str(exc)
        else:
            raise AssertionError(f"{name}: the Python runtime accepted a broken bundle")
        missing = [w for w in expect if w not in message]
        assert not missing, f"{name}: Python's error {message!r} lacks {missing}"
        result.append({"name": name, "path": f"bad/{name}", "expect": expect, "python_error": message,
                       "needs_interpreter": models})
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("bundle", help="bundle folder")
    parser.add_argument("out", help="output folder")
    args = parser.parse_args(argv)
    try:
        golden = write_golden(args.bundle, args.out)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(golden['frames'])} frames, {len(golden['arrays'])} arrays -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
