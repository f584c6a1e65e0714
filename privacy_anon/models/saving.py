"""Loading saved M and D: a `.keras` file, or a run directory that holds one.

One place for training (`--classifier-checkpoint`, `--init-run`), evaluation (`--modifier`,
`--classifier`) and export (`CHECKPOINT`), so all three accept the same paths and fail with
the same one-line `InputError`.
"""

from __future__ import annotations

import os
from pathlib import Path

from privacy_anon.errors import InputError


def model_file(path: str | os.PathLike, file_name: str, flag: str = "",
               suffixes=(".keras",)) -> Path:
    """`path` itself if it is a model file (`suffixes`), else `path / file_name` (a run directory)."""
    path = Path(path)
    where = f"{flag} {path}" if flag else str(path)
    if path.is_dir():
        candidate = path / file_name
        if not candidate.is_file():
            raise InputError(f"{where}: directory has no {file_name}")
        return candidate
    if not path.is_file():
        raise InputError(f"{where}: no such file or directory")
    if path.suffix not in suffixes:
        raise InputError(f"{where}: expected a {' or '.join(suffixes)} file or a run "
                         f"directory holding {file_name}")
    return path


def check_keras_file(path, where: str | None = None) -> None:
    """InputError if a `.keras` file is not a zip archive: found before Keras (seconds) loads."""
    import zipfile

    if Path(path).suffix == ".keras" and not zipfile.is_zipfile(path):
        raise InputError(f"{where or path}: not a .keras file (not a zip archive; truncated or another format?)")


def load_model_file(path: Path, expected: type, flag: str = ""):
    """A Keras model from `path`, which must be an `expected` instance."""
    where = f"{flag} {path}" if flag else str(path)
    check_keras_file(path, where)
    import keras

    # importing the model modules registers their classes for deserialization
    import privacy_anon.models.face_classifier  # noqa: F401
    import privacy_anon.models.modifier  # noqa: F401

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{where}: cannot be loaded as a Keras model ({reason})") from None
    if not isinstance(model, expected):
        raise InputError(f"{where}: holds a {type(model).__name__}, not a {expected.__name__}")
    return model


def load_part(path: str | os.PathLike, name: str, flag: str = "", file_name: str | None = None):
    """"modifier" (M) or "classifier" (D) from a `.keras` file or `<run dir>/<file_name>`
    (default `<name>.keras`; e.g. `classifier-2.keras` for a run's second D)."""
    from privacy_anon.models.face_classifier import FaceClassifier
    from privacy_anon.models.modifier import FaceModifier

    expected = {"modifier": FaceModifier, "classifier": FaceClassifier}[name]
    return load_model_file(model_file(path, file_name or f"{name}.keras", flag), expected, flag)
