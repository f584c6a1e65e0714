"""The TensorFlow-free install: `pip install privacy-anon` (no extras) in a clean virtual
environment runs `privacy-anon anonymize --bundle`, and TensorFlow is not there.

Needs the package registry (pip downloads numpy, OpenCV, LiteRT, PyAV, tqdm, PyYAML), as
`.ci/run` does; about 1-2 minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

ROOT = Path(__file__).resolve().parents[1]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory):
    """A fresh venv with only `pip install <this repo>`: the base (runtime) dependencies."""
    root = tmp_path_factory.mktemp("runtime-install")
    src = root / "src"  # a copy of what the package is built from, so no build/ lands in the repo
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "privacy_anon", src / "privacy_anon",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(src)], env=_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return env_dir


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from test_export import face_crops, tiny_modifier

    from privacy_anon.export import export_bundle

    out = tmp_path_factory.mktemp("runtime-bundle") / "bundle"
    export_bundle(tiny_modifier(), out, quantize="int8", representative=face_crops(), min_psnr=25, verbose=False)
    return out


def test_runtime_install_anonymizes_without_tensorflow(runtime_venv, bundle, tmp_path):
    python, cli = runtime_venv / "bin" / "python", runtime_venv / "bin" / "privacy-anon"
    image = astronaut()
    cv2.imwrite(str(tmp_path / "in.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    proc = subprocess.run([str(cli), "anonymize", "in.png", "-o", "out.png", "--bundle", str(bundle),
                           "--boxes-json", "boxes.json"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cv2.cvtColor(cv2.imread(str(tmp_path / "out.png")), cv2.COLOR_BGR2RGB)
    assert out.shape == image.shape
    changed = np.abs(out.astype(int) - image).sum(-1) > 0
    face = changed[60:200, 160:300]  # the astronaut's face
    assert face.mean() > 0.5 and changed.mean() < 0.2, "the face changed, the rest did not"

    for module in ("tensorflow", "keras", "tf_keras", "mtcnn"):
        probe = subprocess.run([str(python), "-c", f"import {module}"], env=_env(), capture_output=True,
                               text=True, timeout=120)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module


def test_runtime_install_names_the_train_extra(runtime_venv, tmp_path):
    cli = runtime_venv / "bin" / "privacy-anon"
    for argv in (["export", "run", "--out", "b"], ["train", "--stage", "classifier", "--out", "r"],
                 ["anonymize", "x.png", "-o", "y.png", "--method", "blur8"]):
        proc = subprocess.run([str(cli), *argv], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert "privacy-anon[train]" in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []
