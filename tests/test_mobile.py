"""The phone runners against the Python runtime: the Android app's Kotlin core (JUnit on the JVM),
the APK build, and the browser page in headless Chromium, all on a bundle exported here.

The toolchains are installed by `mobile/ci-setup.sh` (run by `.ci/run`). Without them these tests
skip on a developer's machine and FAIL under CI=true: CI never skips them silently.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ANDROID = ROOT / "mobile" / "android"
WEB = ROOT / "mobile" / "web"
BUILD_SH = ANDROID / "build.sh"


def need(ok: bool, what: str):
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} missing under CI: mobile/ci-setup.sh should have installed it")
    pytest.skip(f"{what} missing: run mobile/ci-setup.sh")


def android_tools_ready() -> bool:
    tools = ANDROID / "build" / "tools"
    return all(shutil.which(t) for t in ("aapt2", "aapt", "zipalign", "apksigner", "java")) and all(
        (tools / p).exists() for p in ("android.jar", "dx.jar", "node_modules/kotlin-compiler/bin/kotlinc",
                                       "tflite/tensorflow-lite-api.jar"))


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """A tiny int8 bundle (export default: batch 1) with `mobile`'s layout (faces in and out as
    2x2 pixel blocks: SPACE_TO_DEPTH / DEPTH_TO_SPACE) and the Python runtime's golden vectors."""
    from test_export import face_crops, tiny_modifier

    from privacy_anon.export import export_bundle

    sys.path.insert(0, str(ROOT / "mobile"))
    try:
        from golden import write_golden
    finally:
        sys.path.remove(str(ROOT / "mobile"))
    base = tmp_path_factory.mktemp("mobile")
    bundle = base / "bundle"
    export_bundle(tiny_modifier(pixel_shuffle=True), bundle, quantize="int8", representative=face_crops(),
                  min_psnr=25, verbose=False)
    data = write_golden(bundle, base / "golden")
    return bundle, base / "golden", data


def run(cmd, timeout=900, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)


def test_golden_vectors_exercise_the_pipeline(golden):
    _, _, data = golden
    frames = data["frames"]
    assert [len(f["detections"]) for f in frames] == [1, 1, 0, 1, 1]  # frame 2: face covered
    assert len(frames[2]["regions"]) == 1  # ... and still anonymized by the tracker
    assert all(len(f["windows"]) >= 4 for f in frames)  # whole frame, zoomed out, two tiles
    assert len(data["bad_bundles"]) == 11


def test_android_core_matches_python_on_the_jvm(golden):
    need(android_tools_ready(), "the Android toolchain (aapt2, zipalign, apksigner, android.jar, dx, kotlinc, TFLite AARs)")
    _, golden_dir, _ = golden
    done = run(["bash", BUILD_SH, "test", golden_dir])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "OK (3 tests)" in done.stdout


def test_android_apk_is_signed_launchable_and_keeps_models_uncompressed(golden, tmp_path):
    need(android_tools_ready(), "the Android toolchain")
    bundle, _, _ = golden
    apk = tmp_path / "app.apk"
    done = run(["bash", BUILD_SH, "apk", bundle, apk])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert run(["apksigner", "verify", apk]).returncode == 0
    badging = run(["aapt", "dump", "badging", apk]).stdout
    assert "launchable-activity: name='org.privacyanon.app.MainActivity'" in badging
    assert "sdkVersion:'26'" in badging
    with zipfile.ZipFile(apk) as zf:
        for name in ("modifier.tflite", "face_detector.tflite"):
            info = zf.getinfo(f"assets/{name}")
            assert info.compress_type == zipfile.ZIP_STORED, name
            assert zf.read(info.filename) == (bundle / name).read_bytes()
        assert zf.read("assets/bundle.json") == (bundle / "bundle.json").read_bytes()
        dex = zf.read("classes.dex")
        names = zf.namelist()
    # the app, the Kotlin core and the real TFLite Java API are in the dex; the JNI library beside it
    for cls in (b"Lorg/privacyanon/app/MainActivity;", b"Lorg/privacyanon/core/BlazeFace;",
                b"Lorg/tensorflow/lite/Interpreter;", b"Lkotlin/jvm/internal/Intrinsics;"):
        assert cls in dex, cls
    assert b"GoldenTest" not in dex
    assert "lib/arm64-v8a/libtensorflowlite_jni.so" in names


def test_android_build_refuses_a_bad_bundle(golden, tmp_path):
    need(android_tools_ready(), "the Android toolchain")
    _, golden_dir, data = golden
    case = next(c for c in data["bad_bundles"] if c["name"] == "truncated_modifier")
    apk = tmp_path / "bad.apk"
    done = run(["bash", BUILD_SH, "apk", golden_dir / case["path"], apk])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "modifier.tflite: sha256 mismatch" in lines[0], done.stderr
    assert not apk.exists()


def test_web_runner_in_headless_chromium_matches_python(golden):
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    need(Path(chromium).exists() and shutil.which("node") is not None, "Chromium and node")
    need((WEB / "node_modules" / "@litertjs" / "core").is_dir() and (WEB / "node_modules" / "playwright-core").is_dir(),
         "mobile/web/node_modules (npm ci)")
    _, golden_dir, _ = golden
    done = run(["node", WEB / "test" / "web_test.mjs", golden_dir], timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 failed" in done.stdout and "not ok" not in done.stdout
