"""The TensorFlow-free runtime: bundle validation, the per-frame pipeline, no face leaks."""

import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from skimage.data import astronaut

from privacy_anon.errors import InputError
from privacy_anon.runtime import Anonymizer, load_bundle
from privacy_anon.runtime.bundle import sha256_file

# the astronaut's face in astronaut() (512x512), as BlazeFace finds it
FACE = np.array([171, 67, 279, 175], np.float32)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    from test_export import face_crops, tiny_modifier

    from privacy_anon.export import export_bundle

    out = tmp_path_factory.mktemp("rt") / "bundle"
    # a dynamic batch here (the export default is batch 1), so batched crops are exercised too
    export_bundle(tiny_modifier(), out, quantize="int8", representative=face_crops(), min_psnr=25,
                  batch=None, verbose=False)
    return out


def copy_bundle(src, dst):
    shutil.copytree(src, dst)
    return dst


def rewrite_manifest(path, change):
    manifest = json.loads((path / "bundle.json").read_text())
    change(manifest)
    (path / "bundle.json").write_text(json.dumps(manifest))


def test_runtime_imports_without_tensorflow(bundle_dir):
    # TensorFlow and Keras made unimportable: the runtime must load a bundle and anonymize.
    code = f"""
import sys
sys.modules['tensorflow'] = None
sys.modules['keras'] = None
import numpy as np
import privacy_anon.runtime
from privacy_anon import Anonymizer
from privacy_anon.runtime import video
a = Anonymizer({str(bundle_dir)!r})
frame = np.full((240, 320, 3), 128, np.uint8)
assert a.process(frame).status == 'ok'
assert sys.modules['tensorflow'] is None
print('ok')
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_package_import_stays_light():
    done = subprocess.run([sys.executable, "-c", "import sys, privacy_anon; "
                           "print(any(m in sys.modules for m in ('tensorflow', 'cv2', 'ai_edge_litert')))"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_bundle_loads_from_folder_and_zip(bundle_dir, tmp_path):
    b = load_bundle(bundle_dir)
    assert b.input_size == 64 and b.enlarge == 1.6
    m = b.modifier()
    assert m.dynamic_batch and m.max_batch == 8 and b.manifest["modifier"]["batch"] == "dynamic"
    crops = [np.full((s, s, 3), 100, np.uint8) for s in (30, 64, 90)]
    assert [c.shape for c in m.modify_crops(crops)] == [c.shape for c in crops]
    z = tmp_path / "b.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in bundle_dir.iterdir():
            zf.write(p, arcname=p.name)
    bz = load_bundle(z)
    root = bz.root
    assert root != bundle_dir and (root / "modifier.tflite").is_file()
    del bz
    import gc

    gc.collect()
    assert not root.exists()  # the extracted copy goes with the object


@pytest.mark.parametrize("damage, message", [
    ("missing", "missing from the bundle"),
    ("truncated", "sha256 mismatch"),
    ("not_tflite", "not a TFLite model"),
    ("wrong_shape", "wrong tensor shapes"),
    ("version", "format version 99 is not supported"),
    ("no_manifest", "not a privacy-anon bundle"),
    ("bad_zip", "not a readable bundle"),
])
def test_bad_bundles_give_one_line_errors(bundle_dir, tmp_path, damage, message):
    b = copy_bundle(bundle_dir, tmp_path / "b")
    m = b / "modifier.tflite"
    if damage == "missing":
        m.unlink()
    elif damage == "truncated":
        m.write_bytes(m.read_bytes()[:1000])
    elif damage == "not_tflite":
        m.write_bytes(b"\x00" * 2000)
        rewrite_manifest(b, lambda d: d["files"]["modifier.tflite"].update(sha256=sha256_file(m)))
    elif damage == "wrong_shape":
        rewrite_manifest(b, lambda d: d["modifier"].update(input_size=128))
    elif damage == "version":
        rewrite_manifest(b, lambda d: d.update(format_version=99))
    elif damage == "no_manifest":
        (b / "bundle.json").unlink()
    elif damage == "bad_zip":
        zb = tmp_path / "b.zip"
        zb.write_bytes(b"PK\x03\x04 truncated")
        b = zb
    with pytest.raises(InputError, match=message) as info:
        load_bundle(b)
    assert "\n" not in str(info.value) and str(b) in str(info.value)


class ScriptedDetector:
    """Returns the astronaut's face on every call except the ones listed in `miss` (0-based)."""

    def __init__(self, miss=(), fail=()):
        self.miss, self.fail, self.calls = set(miss), set(fail), 0

    def __call__(self, image):
        i, self.calls = self.calls, self.calls + 1
        if i in self.fail:
            raise RuntimeError("detector crashed")
        if i in self.miss:
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        return FACE[None], np.array([0.9], np.float32)


def test_face_lost_in_frame_11_is_still_anonymized(bundle_dir):
    frames = [astronaut()] * 20  # frames 1-20 show the face; the detector misses it in frame 11
    held = Anonymizer(bundle_dir, detector=ScriptedDetector(miss={10}), hold=5)
    out = [held.process(f) for f in frames]
    x1, y1, x2, y2 = FACE.astype(int)
    face = slice(y1, y2), slice(x1, x2)
    for i, r in enumerate(out):
        assert r.status == "ok" and len(r.regions) == 1, i
        assert np.abs(r.image[face].astype(int) - frames[i][face]).mean() > 2, f"frame {i + 1} leaks the face"
    assert len(out[10].detections) == 0  # really a miss, covered by the held track
    np.testing.assert_array_equal(out[10].regions, out[9].regions)
    # without the hold, frame 11 would have leaked: that is what the hold is for
    bare = Anonymizer(method="mask", detector=ScriptedDetector(miss={10}), hold=0)
    leaked = [bare.process(f) for f in frames][10]
    np.testing.assert_array_equal(leaked.image, frames[10])


def test_pixels_outside_regions_are_untouched(bundle_dir):
    a = Anonymizer(bundle_dir, detector=ScriptedDetector())
    frame = astronaut()
    r = a.process(frame)
    x1, y1, x2, y2 = r.regions[0]
    inside = np.zeros(frame.shape[:2], bool)
    inside[y1:y2, x1:x2] = True
    np.testing.assert_array_equal(r.image[~inside], frame[~inside])
    assert (r.image[inside] != frame[inside]).any(axis=-1).mean() > 0.3


@pytest.mark.parametrize("on_failure", ["mask", "drop"])
def test_detector_or_modifier_failure_never_passes_the_frame(on_failure):
    frame = astronaut()
    a = Anonymizer(method="blur8", detector=ScriptedDetector(fail={1}), on_failure=on_failure)
    assert a.process(frame).status == "ok"
    r = a.process(frame)
    assert r.status == ("masked" if on_failure == "mask" else "dropped") and "detector crashed" in r.error
    if on_failure == "mask":
        assert not r.image.any()
    else:
        assert r.image is None

    class Broken:
        name = "broken"

        def modify_crops(self, crops):
            raise MemoryError("out of memory")

    b = Anonymizer(method=Broken(), detector=ScriptedDetector(), on_failure=on_failure)
    r = b.process(frame)
    assert r.status != "ok" and "out of memory" in r.error
    assert r.image is None or not r.image.any()


def test_real_detector_finds_the_face_and_baselines_work():
    a = Anonymizer(method="blur8")
    r = a.process(astronaut())
    assert len(r.detections) == 1
    box = r.detections[0]
    assert np.abs(box - FACE).max() < 25
    with pytest.raises(InputError, match="either a bundle or a method"):
        Anonymizer()
    with pytest.raises(InputError, match="unknown face modifier"):
        Anonymizer(method="blur7")
