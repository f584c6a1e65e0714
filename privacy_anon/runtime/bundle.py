"""The deployable bundle: `modifier.tflite`, `face_detector.tflite` and `bundle.json`.

A bundle is a folder or a `.zip` of that folder's files. `bundle.json` (written by
`privacy_anon.export.tflite`) says how to feed the models:

    {
      "format": "privacy-anon-bundle", "format_version": 1,
      "modifier": {"file": "modifier.tflite", "input_size": 128, "quantize": "int8",
                   "pixels": "RGB 0..255 in, RGB 0..255 out (scaling to [-1, 1] is inside the model)",
                   "input": {"dtype": "uint8", "scale": 1.0, "zero_point": 0}, "output": {...},
                   "config": {...}},
      "face_detector": {"file": "face_detector.tflite", "model": "BlazeFace full-range",
                        "score_threshold": 0.6, "nms_iou": 0.3, "min_face_size": 40, "zoom_out": 2},
      "enlarge": 1.6,
      "files": {"modifier.tflite": {"sha256": "...", "bytes": 123}, ...},
      "versions": {...}, "quality": {"psnr": ..., "ssim": ...}
    }

Loading checks everything a device could trip on later (missing file, hash mismatch, a file
that is not TFLite, wrong tensor shapes, an incompatible format version) and reports it as
one `InputError` line naming the file. No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import shutil
import tempfile
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from privacy_anon.errors import InputError

FORMAT = "privacy-anon-bundle"
FORMAT_VERSION = 1  # bumped when a reader of the old format would misread the new one
MANIFEST = "bundle.json"
MODIFIER_FILE = "modifier.tflite"
DETECTOR_FILE = "face_detector.tflite"
REQUIRED_FILES = (MODIFIER_FILE, DETECTOR_FILE)
TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8 of every .tflite


def interpreter_class():
    """LiteRT's `Interpreter` (`ai-edge-litert`), or `tflite_runtime`'s if that is what is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise InputError("no TFLite interpreter installed: pip install ai-edge-litert") from None
    return Interpreter


@contextlib.contextmanager
def quiet_native_stderr():
    """Silences C-level writes to stderr (LiteRT's "INFO: Created TensorFlow Lite XNNPACK
    delegate" line, which no setting turns off) while interpreters are created, so that
    errors stay one line. Python exceptions are unaffected."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # no real stderr (e.g. captured): nothing to do
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_tflite_file(path) -> None:
    """InputError unless `path` starts like a TFLite flatbuffer."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
        raise InputError(f"{path}: not a TFLite model (no TFL3 identifier)")


@dataclass
class Bundle:
    """A loaded, validated bundle.

    Attributes:
        path: what the user gave (folder or .zip).
        root: folder holding the files (a temporary copy for a .zip, removed with the object).
        manifest: the parsed `bundle.json`.
    """

    path: Path
    root: Path
    manifest: dict
    _cleanup: object = field(default=None, repr=False)

    @property
    def modifier_path(self) -> Path:
        return self.root / MODIFIER_FILE

    @property
    def detector_path(self) -> Path:
        return self.root / DETECTOR_FILE

    @property
    def input_size(self) -> int:
        return int(self.manifest["modifier"]["input_size"])

    @property
    def enlarge(self) -> float:
        return float(self.manifest.get("enlarge", 1.6))

    @property
    def detector_settings(self) -> dict:
        return dict(self.manifest.get("face_detector", {}))

    def modifier(self, num_threads: int = 2):
        """The bundle's M as a face modifier (`.name`, `.modify_crops`)."""
        from privacy_anon.runtime.modifier import TFLiteModifier

        return TFLiteModifier(self.modifier_path, input_size=self.input_size, num_threads=num_threads)


def load_bundle(path, check_models: bool = True) -> Bundle:
    """Opens and validates a bundle folder or `.zip`.

    Args:
        path: the bundle folder, or a `.zip` of its files.
        check_models: also load both models in the interpreter and check tensor shapes.

    Raises:
        InputError: one line naming the offending file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: bundle not found")
    if path.is_dir():
        return _validate(Bundle(path=path, root=path, manifest=_read_manifest(path, path)), check_models)
    root = Path(tempfile.mkdtemp(prefix="privacy-anon-bundle-"))
    try:
        _extract_zip(path, root)
        bundle = Bundle(path=path, root=root, manifest=_read_manifest(path, root))
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    # the extracted copy lives as long as the bundle object
    bundle._cleanup = weakref.finalize(bundle, shutil.rmtree, str(root), True)
    return _validate(bundle, check_models)


def _validate(bundle: Bundle, check_models: bool) -> Bundle:
    _check_files(bundle)
    if check_models:
        with quiet_native_stderr():
            bundle.modifier(num_threads=1)  # raises on wrong shapes / unloadable model
            _check_detector(bundle)
    return bundle


def _extract_zip(path: Path, root: Path) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            wanted = (MANIFEST, *REQUIRED_FILES)
            # the files may sit at the top or inside one folder
            for name in names:
                base = name.rsplit("/", 1)[-1]
                if base in wanted and not name.endswith("/"):
                    with zf.open(name) as src, open(root / base, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InputError(f"{path}: not a readable bundle folder or .zip ({exc})") from None


def _read_manifest(path: Path, root: Path) -> dict:
    manifest_path = root / MANIFEST
    where = path / MANIFEST if path.is_dir() else f"{path}!{MANIFEST}"
    if not manifest_path.is_file():
        raise InputError(f"{where}: missing (not a privacy-anon bundle)")
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{where}: not a privacy-anon bundle manifest (format {manifest.get('format')!r})"
                         if isinstance(manifest, dict) else f"{where}: not a bundle manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version != FORMAT_VERSION:
        raise InputError(f"{where}: bundle format version {version!r} is not supported "
                         f"(this runtime reads version {FORMAT_VERSION}); re-export the bundle")
    try:
        size = int(manifest["modifier"]["input_size"])
        files = manifest["files"]
        if size < 4 or not isinstance(files, dict):
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where}: incomplete manifest (needs modifier.input_size and files)") from None
    return manifest


def _check_files(bundle: Bundle) -> None:
    for name in REQUIRED_FILES:
        where = bundle.path / name if bundle.path.is_dir() else f"{bundle.path}!{name}"
        file = bundle.root / name
        if not file.is_file():
            raise InputError(f"{where}: missing from the bundle")
        expected = (bundle.manifest["files"].get(name) or {}).get("sha256")
        if not expected:
            raise InputError(f"{where}: no sha256 in {MANIFEST}")
        if sha256_file(file) != expected:
            raise InputError(f"{where}: sha256 mismatch (file truncated or modified since export)")
        check_tflite_file(file)


def _check_detector(bundle: Bundle) -> None:
    from privacy_anon.faces.detector import BlazeFace

    BlazeFace(str(bundle.detector_path), num_threads=1, min_face_size=0, zoom_out=0)
