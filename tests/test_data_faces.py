import subprocess
import sys

import cv2
import numpy as np
import pytest

from privacy_anon.data.faces import (alignment_matrices, load_identity_folder, make_face_dataset,
                                     read_landmarks_csv, synthetic_faces)
from privacy_anon.errors import DataError


def _write_folder(root, ids=3, per_id=3, size=40):
    rng = np.random.default_rng(0)
    for i in range(ids):
        (root / f"person_{i}").mkdir(parents=True)
        for j in range(per_id):
            img = rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)
            cv2.imwrite(str(root / f"person_{i}" / f"{j}.jpg"), img)
    return root


def test_synthetic_faces_are_deterministic_with_landmarks():
    a = synthetic_faces(3, 4, 64, seed=5)
    b = synthetic_faces(3, 4, 64, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (12, 64, 64, 3) and a.num_identities == 3
    assert np.all((a.landmarks >= 0) & (a.landmarks < 64))
    train, held = a.split(0.25, seed=0)
    assert len(train) + len(held) == 12 and set(held.labels) == {0, 1, 2}


def test_folder_loader_reads_identities_and_landmarks(tmp_path):
    root = _write_folder(tmp_path / "faces")
    csv = tmp_path / "marks.csv"
    rows = ["path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5"]
    for i in range(3):
        for j in range(3):
            rows.append(f"person_{i}/{j}.jpg,15,16,33,16,24,24,17,32,31,32")
    csv.write_text("\n".join(rows) + "\n")
    faces = load_identity_folder(root, 32, csv, progress=False)
    assert faces.images.shape == (9, 32, 32, 3) and faces.identities == ["person_0", "person_1", "person_2"]
    # landmarks are scaled from the 48x40 originals to 32x32
    np.testing.assert_allclose(faces.landmarks[0, 0], [15 * 32 / 48, 16 * 32 / 40], rtol=1e-5)
    align = alignment_matrices(faces, 56, 48)
    batch = next(iter(make_face_dataset(faces, align, 4, seed=0)))
    assert batch["faces"].shape == (4, 32, 32, 3) and float(batch["faces"].numpy().max()) <= 1.0


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        load_identity_folder(tmp_path / "nowhere", 32, progress=False)
    root = _write_folder(tmp_path / "f")
    (root / "person_1" / "1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="1.jpg"):
        load_identity_folder(root, 32, progress=False)
    bad = tmp_path / "bad.csv"
    bad.write_text("path,x1,y1\nperson_0/0.jpg,1,2\n")
    with pytest.raises(DataError, match="bad.csv"):
        read_landmarks_csv(bad)


@pytest.mark.parametrize("case", ["missing", "empty_identity", "unreadable", "csv_mismatch"])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, case):
    root = _write_folder(tmp_path / "faces")
    extra = []
    if case == "missing":
        root = tmp_path / "no_such_folder"
    elif case == "empty_identity":
        (root / "person_9").mkdir()
    elif case == "unreadable":
        (root / "person_2" / "0.jpg").write_bytes(b"\x00" * 10)
    else:
        csv = tmp_path / "marks.csv"
        csv.write_text("path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5\nperson_7/0.jpg,1,1,2,2,3,3,4,4,5,5\n")
        extra = ["--landmarks", str(csv)]
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "privacy_anon.cli", "train", "--stage", "classifier",
                           "--data", str(root), "--steps", "1", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("privacy-anon")]
    assert len(lines) == 1
    expected = {"missing": "no_such_folder", "empty_identity": "person_9",
                "unreadable": "0.jpg", "csv_mismatch": "marks.csv"}[case]
    assert expected in lines[0]
    assert not out.exists()


def test_face_crop_cuts_a_square_around_the_landmarks(tmp_path):
    root = _write_folder(tmp_path / "faces", ids=2, per_id=1, size=100)
    csv = tmp_path / "marks.csv"
    csv.write_text("path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5\n"
                   "person_0/0.jpg,40,40,60,40,50,50,42,60,58,60\n"
                   "person_1/0.jpg,10,10,30,10,20,20,12,30,28,30\n")
    faces = load_identity_folder(root, 64, csv, progress=False, face_crop=3.0)
    # extent 20 px x 3 = 60 px square -> 64 px: landmarks centred, scaled by 64/60
    np.testing.assert_allclose(faces.landmarks[0].mean(0), [32, 32], atol=1e-3)
    np.testing.assert_allclose(faces.landmarks[0, 1, 0] - faces.landmarks[0, 0, 0], 20 * 64 / 60, rtol=1e-4)


def test_whole_identities_held_out_are_never_in_training():
    faces = synthetic_faces(10, 4, 32, seed=1)
    train, strangers = faces.split_identities(0.3, seed=2)
    assert strangers.num_identities == 3 and train.num_identities == 7
    assert not set(train.identities) & set(strangers.identities)
    # each part is relabelled over its own people, and the pixels follow their names
    assert set(train.labels) == set(range(7)) and set(strangers.labels) == {0, 1, 2}
    for part in (train, strangers):
        for label, name in enumerate(part.identities):
            original = faces.identities.index(name)
            np.testing.assert_array_equal(part.images[part.labels == label],
                                          faces.images[faces.labels == original])
    again, _ = faces.split_identities(0.3, seed=2)
    assert again.identities == train.identities
    same, none = faces.split_identities(0.0)
    assert same.num_identities == 10 and len(none) == 0
    with pytest.raises(DataError, match="holdout_identities"):
        faces.split_identities(1.0)
