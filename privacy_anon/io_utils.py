"""Writing outputs safely: to a temporary file beside the target, then renamed into place.

No TensorFlow here: the on-device runtime uses it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from privacy_anon.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yields a temporary path in the target's folder; renames it to `path` on success.

    On an exception the temporary file is removed, so nothing half-written is ever left
    where the user looks. `suffix` defaults to the target's (codecs pick formats by it).
    """
    path = Path(path)
    created = _missing_ancestors(path.parent)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    except OSError as exc:  # a read-only place, a file where a folder should be, /proc, ...
        _remove_empty(created)
        raise InputError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        publish(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Renames a finished temporary file (from `atomic_path`) to `path`, with the usual mode.

    Also for keeping a temporary file under another name than the target's, as a video cut
    short by a decode error is kept as `NAME.partial.EXT`.
    """
    if Path(tmp).is_file():  # mkstemp makes 0600; give the file the usual umask mode
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
    os.replace(tmp, path)


def check_can_write(path: str | os.PathLike) -> None:
    """InputError unless a file or folder can be created at `path`, checked by creating (and
    removing) a temporary file in its nearest existing ancestor. Nothing is left behind;
    unlike `os.access`, this also catches read-only mounts, /proc and running as root."""
    path = Path(os.path.abspath(path))
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{path}: cannot write here ({ancestor} is a file, not a folder)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".privacy-anon-probe.", dir=ancestor)
    except OSError as exc:
        raise InputError(f"{path}: cannot write here ({ancestor}: {exc.strerror or exc})") from None
    os.close(fd)
    os.remove(probe)


def _missing_ancestors(folder: Path) -> list[Path]:
    """The folders `mkdir(parents=True)` would create, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
