"""The yardstick on a generated folder-per-identity photo set made from public-domain faces
(the astronaut, Grace Hopper, scikit-image's lfw_subset), with BlazeFace's face-box cache,
dlib as the attacker and MTCNN as the independent detector: the figures move the way each
method must move them, the report is written, inputs are checked."""

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from privacy_anon.cli import main
from privacy_anon.errors import DataError, InputError
from privacy_anon.evaluation import yardstick as Y

pytestmark = pytest.mark.skipif(importlib.util.find_spec("dlib") is None,
                                reason="needs the eval extra (dlib)")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PER_IDENTITY = 3


def _face_sources(n_lfw: int) -> dict:
    """Public-domain face photos shipped by installed packages: the astronaut (Eileen Collins,
    NASA; scikit-image), Grace Hopper (US Navy; matplotlib) and lfw_subset's 25 px grey LFW
    crops upscaled (no identity labels: each crop is one "identity" here)."""
    from matplotlib import cbook
    from skimage.io import imread

    faces = {"astronaut": skimage.data.astronaut()[0:260, 100:340],
             "hopper": imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))[40:440, 70:470]}
    lfw = (skimage.data.lfw_subset()[:n_lfw] * 255).round().astype(np.uint8)
    for i, face in enumerate(lfw):
        big = cv2.resize(face, (120, 120), interpolation=cv2.INTER_CUBIC)
        faces[f"lfw{i:02d}"] = np.repeat(big[..., None], 3, axis=2)
    return faces


def _photo(face: np.ndarray, rng, size: int = 240) -> np.ndarray:
    """The face pasted at a random place and scale on a smooth random background, flipped half
    the time, brightness x0.85-1.15: "another photo of the same person"."""
    background = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), (0, 0), 8)
    side = int(rng.uniform(0.45, 0.6) * size)
    face = cv2.resize(face, (side, int(side * face.shape[0] / face.shape[1])), interpolation=cv2.INTER_AREA)
    face = face[:size - 4, ::-1] if rng.random() < 0.5 else face[:size - 4]
    face = np.clip(face.astype(np.float32) * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)
    y, x = rng.integers(0, size - face.shape[0] + 1), rng.integers(0, size - face.shape[1] + 1)
    background[y:y + face.shape[0], x:x + face.shape[1]] = face
    return background


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory):
    """(root, face-box cache) of 10 identities x 3 photos; BlazeFace finds ~8 of the 10 faces."""
    from privacy_anon.data.face_boxes import detect_faces_in_dataset
    from privacy_anon.faces.detector import FaceDetector

    base = tmp_path_factory.mktemp("yardstick")
    root, cache = base / "photos", base / "boxes"
    rng = np.random.default_rng(0)
    for name, face in _face_sources(8).items():
        (root / name).mkdir(parents=True)
        for j in range(PER_IDENTITY):
            cv2.imwrite(str(root / name / f"{j}.png"), cv2.cvtColor(_photo(face, rng), cv2.COLOR_RGB2BGR))
    detect_faces_in_dataset(root, "folders", cache, FaceDetector(use_mtcnn=False), progress=False,
                            log=lambda _: None)
    return root, cache


@pytest.fixture(scope="module")
def measures(photo_set, tmp_path_factory):
    root, cache = photo_set
    out = tmp_path_factory.mktemp("report")
    results = Y.run_yardstick(root, cache, None, ["none", "blur8", "mask"], out, max_photos=None,
                              workers=2, progress=False)
    return results, out


def test_none_keeps_the_face_and_the_person(measures):
    none = measures[0]["none"]
    assert none["num_photos"] >= 18 and none["num_pairs"] >= 20
    assert none["reid_accuracy"] >= 0.9 and none["verification_accuracy"] >= 0.9
    assert none["face_found"] >= 0.9
    assert none["ssim"] == pytest.approx(1.0) and none["psnr"] == Y.PSNR_CAP
    assert none["saturation_added"] == 0.0
    assert none["landmark_shift_iod"] < 0.01 and none["landmark_photos"] >= 0.9 * none["num_photos"]


def test_mask_is_no_face_and_near_chance(measures):
    results = measures[0]
    mask = results["mask"]
    assert mask["face_found"] <= 0.1
    assert mask["reid_accuracy"] <= 0.65 and mask["reid_accuracy"] < results["none"]["reid_accuracy"] - 0.3
    assert mask["ssim"] < 0.2 and mask["saturation_added"] < -5  # black has no saturation


def test_blur_lowers_ssim_and_psnr(measures):
    results = measures[0]
    assert results["blur8"]["ssim"] < 0.75
    assert results["blur8"]["psnr"] < 30
    assert results["blur8"]["reid_accuracy"] < results["none"]["reid_accuracy"]


def test_report_files(measures):
    results, out = measures
    report = json.loads((out / "report.json").read_text())
    assert list(report["run"]["yardstick"]["methods"]) == ["none", "blur8", "mask"]
    for values in report["methods"].values():
        for key in Y.METRIC_NAMES + ("num_photos", "num_pairs"):
            assert key in values
    assert report["methods"]["mask"]["face_found"] == results["mask"]["face_found"]
    for name in ("privacy_plane.png", "before_after.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    table = (out / "yardstick.md").read_text()
    assert "| mask |" in table and "| blur8 |" in table


def test_second_run_reads_the_cache(measures, photo_set, tmp_path):
    results, out = measures
    root, cache = photo_set
    again = Y.run_yardstick(root, cache, None, ["none", "blur8", "mask"], tmp_path / "again",
                            max_photos=None, workers=1, progress=False, cache_dir=out / "cache")
    report = json.loads((tmp_path / "again" / "report.json").read_text())
    assert "dlib_s" not in report["run"]["yardstick"]["timings"]  # nothing embedded again
    assert "mtcnn_s" not in report["run"]["yardstick"]["timings"]
    for m in results:
        assert again[m]["reid_accuracy"] == results[m]["reid_accuracy"]
        assert again[m]["face_found"] == results[m]["face_found"]


def test_the_runtime_path_finds_its_own_faces(photo_set, tmp_path):
    """A runtime Anonymizer (here with a baseline, as a bundle's M would be) on whole photos:
    its own BlazeFace finds the faces, so the masked boxes are the faces MTCNN no longer sees."""
    from privacy_anon.runtime import Anonymizer

    root, cache = photo_set
    results = Y.run_yardstick(root, cache, None, ["none", Anonymizer(method="mask")], tmp_path,
                              max_photos=8, workers=1, progress=False)
    runtime = results["runtime-mask"]
    assert runtime["face_box_modified"] >= 0.85  # the runtime's region covers the face's centre
    assert runtime["face_found"] <= 0.15 < results["none"]["face_found"]
    assert runtime["ssim"] < 0.2


def test_attacker_at_the_original_box_embeds_where_hog_finds_nothing(photo_set):
    from privacy_anon import baselines
    from privacy_anon.data.face_boxes import load_face_boxes
    from privacy_anon.evaluation.verification import DlibRecognizer, load_rgb

    root, cache = photo_set
    boxes = load_face_boxes(cache, root)
    key = "astronaut/0.png"
    photo, box = load_rgb(root / key), boxes[key][0]
    rec = DlibRecognizer()
    original = rec.embed([photo], boxes=[box])[0]
    assert rec.last_no_face == [False]
    rect = rec.last_rects[0]  # HOG's face on the original, the one overlapping the cached box
    # the same rectangle on the same photo without the detector: the same descriptor
    assert rec.embed([photo], boxes=[rect], detect=False)[0] @ original > 0.999
    blurred = baselines.anonymize_frame(photo, boxes[key], "blur16")
    whole = rec.embed([blurred])[0]  # HOG finds no face: the whole photo is taken
    assert rec.last_no_face == [True]
    at_box = rec.embed([blurred], boxes=[rect], detect=False)[0]
    assert rec.last_no_face == [False] and np.array_equal(rec.last_rects[0], rect)
    # told where the face was, the attacker sees the blurred face, not the whole photo
    assert at_box @ original > whole @ original + 0.05


def test_photo_choice_by_identity_file_and_max_photos(photo_set, tmp_path):
    root, cache = photo_set
    names = tmp_path / "heldout.txt"
    names.write_text("# held out\nastronaut\nhopper\n\nlfw01\n")
    photos, facts = Y.select_photos(root, cache, names)
    assert {p.identity for p in photos} == {"astronaut", "hopper", "lfw01"}
    assert facts["identities_source"] == str(names)
    few, _ = Y.select_photos(root, cache, None, max_photos=4, seed=3)
    assert len(few) == 4 and len({p.identity for p in few}) == 2  # two photos per identity
    assert few == Y.select_photos(root, cache, None, max_photos=4, seed=3)[0]
    every, _ = Y.select_photos(root, cache, None)
    assert len(every) > len(photos) > 4
    names.write_text("astronaut\nnobody\n")
    with pytest.raises(DataError, match="heldout.txt: identity 'nobody' is not a folder"):
        Y.select_photos(root, cache, names)
    with pytest.raises(InputError, match="missing.txt: identities file not found"):
        Y.select_photos(root, cache, tmp_path / "missing.txt")


def test_measures_of_one_photo():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    box = (20, 10, 50, 40)
    same = Y.pixel_measures(photo, photo.copy(), box)
    assert same[0] == pytest.approx(1.0) and same[1] == Y.PSNR_CAP and same[2] == same[3]
    grey = photo.copy()
    grey[10:40, 20:50] = grey[10:40, 20:50].mean(axis=2, keepdims=True).astype(np.uint8)
    measured = Y.pixel_measures(photo, grey, box)
    assert measured[3] == 0 < measured[2]  # grey has no saturation
    assert measured[4] > 20 and same[4] == 0  # every pixel lost its colour
    grey[0, 0] = 0  # outside the box: not measured
    assert np.array_equal(Y.pixel_measures(photo, grey, box), measured)
    marks = np.array([[10, 10], [30, 10], [20, 20], [12, 30], [28, 30]], np.float64)
    # the same saturation in another hue: the box average misses it, the per-pixel shift not;
    # brighter by 30 keeps every pixel's chroma
    hsv = cv2.cvtColor(photo, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(int) + 60) % 180
    hue = Y.pixel_measures(photo, cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), box)
    brighter = Y.pixel_measures(photo, np.clip(photo.astype(int) + 30, 0, 255).astype(np.uint8), box)
    assert abs(hue[3] - hue[2]) < 3 and hue[4] > 30
    assert brighter[4] < 0.25 * hue[4]
    assert Y.landmark_shift(marks, marks + [2, 0]) == pytest.approx(0.1)  # 2 px / 20 px apart
    assert np.isnan(Y.landmark_shift(marks, np.full((5, 2), np.nan)))


# ----------------------------------------------------------------------------- the command


def _evaluate(capsys, photo_set, tmp_path, *extra, methods="none,mask"):
    root, cache = photo_set
    code = main(["evaluate", "--methods", methods, "--faces", str(root), "--faces-box-cache", str(cache),
                 "--recognizer", "dlib", "--out", str(tmp_path / "out"), *map(str, extra)])
    return code, capsys.readouterr()


def test_cli_restricts_to_the_identities(capsys, photo_set, tmp_path, measures):
    names = tmp_path / "ids.txt"
    names.write_text("astronaut\nhopper\nlfw00\nlfw01\nlfw02\n")
    code, io = _evaluate(capsys, photo_set, tmp_path, "--identities", names, "--max-photos", 8,
                         "--cache", measures[1] / "cache")
    assert code == 0, io.err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    facts = report["run"]["yardstick"]
    assert facts["num_photos"] == 8 and facts["identities"] == 4
    assert set(report["methods"]) == {"none", "mask"}
    assert report["methods"]["mask"]["face_found"] <= 0.2
    assert "privacy_plane.png" in io.out


def test_faceres_attacks_the_same_pairs(capsys, photo_set, tmp_path, measures, faceres_dir):
    """faceres, a second recognizer, re-identifies the untouched photos and not the masked ones."""
    code, io = _evaluate(capsys, photo_set, tmp_path, "--faceres", faceres_dir, "--cache",
                         measures[1] / "cache")
    assert code == 0, io.err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    none, mask = report["methods"]["none"], report["methods"]["mask"]
    assert none["faceres_reid_accuracy"] >= 0.9 and none["faceres_verification_accuracy"] >= 0.9
    assert mask["faceres_reid_accuracy"] <= 0.7 < none["faceres_reid_accuracy"] - 0.2
    assert "faceres" in report["run"]["yardstick"]["second_attacker"]
    assert "dlib_s" not in report["run"]["yardstick"]["timings"]  # dlib's figures came from the cache
    assert "re-id % (faceres)" in (tmp_path / "out" / "yardstick.md").read_text()


def test_square_view_is_the_box_resampled():
    photo = np.zeros((100, 120, 3), np.uint8)
    photo[20:60, 30:70] = 200  # the box (30, 20)-(70, 60) is a bright square
    view = Y.square_view(photo, (30, 20, 70, 60), 1.0, 80)
    assert view.shape == (80, 80, 3) and view[2:-2, 2:-2].min() == 200
    wider = Y.square_view(photo, (30, 20, 70, 60), 2.0, 80)  # box in the middle half
    assert wider[22:58, 22:58].min() == 200 and wider[:15].max() == 0


@pytest.mark.parametrize("case, message", [
    ("missing-ids", "identities file not found"),
    ("unknown-id", "identity 'nobody' is not a folder of"),
    ("bad-bundle", "bundle.json"),
    ("bundle-without-path", "method 'bundle' needs --bundle"),
    ("identities-without-yardstick", "--identities is for the yardstick"),
    ("faceres-folder-empty", "faceres.json: missing"),
])
def test_cli_bad_input_is_one_line_and_exit_2(capsys, photo_set, tmp_path, case, message):
    extra, methods = [], "none,mask"
    if case == "missing-ids":
        extra = ["--identities", tmp_path / "nope.txt"]
    elif case == "unknown-id":
        (tmp_path / "ids.txt").write_text("astronaut\nnobody\n")
        extra = ["--identities", tmp_path / "ids.txt"]
    elif case == "bad-bundle":
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        (bundle / "bundle.json").write_text("{not json")
        extra, methods = ["--bundle", bundle], "none,bundle"
    elif case == "bundle-without-path":
        methods = "none,bundle"
    elif case == "identities-without-yardstick":
        (tmp_path / "ids.txt").write_text("astronaut\n")
        extra = ["--identities", tmp_path / "ids.txt", "--recognizer", "d"]
    elif case == "faceres-folder-empty":
        (tmp_path / "faceres").mkdir()
        extra = ["--recognizer-weights", tmp_path / "faceres"]  # train's name for --faceres
    code, io = _evaluate(capsys, photo_set, tmp_path, *extra, methods=methods)
    assert code == 2
    lines = io.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], io.err
    assert not (tmp_path / "out" / "report.json").exists()


def test_learned_m_is_cached_by_its_weights():
    from privacy_anon.evaluation.models import KerasModifier
    from privacy_anon.models.modifier import FaceModifier

    def model(seed):
        import keras

        keras.utils.set_random_seed(seed)
        m = FaceModifier(input_size=16, filters=2, num_blocks=0)
        m.build()
        return m

    a, a_again, b = model(0), model(0), model(1)
    keys = [m.cache_key for m in Y.resolve_methods([KerasModifier(a)]) +
            Y.resolve_methods(["learned"], modifier=a_again) + Y.resolve_methods([b])]
    assert keys[0] == keys[1] != keys[2]  # same weights, same key; a FaceModifier is wrapped
    assert [m.name for m in Y.resolve_methods([b])] == ["learned"]
    with pytest.raises(InputError, match="method list names blur8 more than once"):
        Y.resolve_methods("blur8,mask,blur8")
    with pytest.raises(InputError, match="unknown face modifier 'blurr8'"):
        Y.resolve_methods("none,blurr8")
