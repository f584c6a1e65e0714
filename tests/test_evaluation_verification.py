"""LFW-protocol verification: hand-checked folds and thresholds, pairs.txt parsing, the two
protocols, the embedding cache, and (with dlib installed) real photographs."""

import importlib.util

import cv2
import numpy as np
import pytest
import skimage.data

from privacy_anon.errors import DataError, InputError
from privacy_anon.evaluation.verification import (
    EmbeddingCache,
    KerasClassifierRecognizer,
    Recognizer,
    best_threshold,
    evaluate_faces,
    kfold_accuracy,
    make_pairs,
    read_pairs,
    verify,
)

# fold -> [(similarity, same)]: the small case the hand computation below works through
CASE = {
    0: [(0.9, True), (0.6, True), (0.4, False), (0.7, False)],
    1: [(0.8, True), (0.5, True), (0.2, False), (0.45, False)],
    2: [(0.95, True), (0.3, True), (0.1, False), (0.55, False)],
}


def _case_arrays():
    sim, same, fold = [], [], []
    for k, rows in CASE.items():
        for s, y in rows:
            sim.append(s), same.append(y), fold.append(k)
    return np.array(sim), np.array(same), np.array(fold)


def test_kfold_accuracy_agrees_with_the_hand_computation():
    # A pair is "same" when similarity > threshold; candidates are midpoints between sorted
    # training similarities (plus one below / above all); ties -> the lowest threshold.
    #
    # Test fold 0, train on folds 1+2, sorted: .1D .2D .3S .45D .5S .55D .8S .95S
    #   correct with i pairs below = different below + same above:
    #   i: 0->4, 1->5, 2->6 (t=.25), 3->5, 4->6 (t=.475), 5->5, 6->6 (t=.675), 7->5, 8->4
    #   best 6/8, lowest threshold .25. Fold 0 at > .25: .9S ok, .6S ok, .4D wrong, .7D wrong: 2/4
    # Test fold 1, train on folds 0+2, sorted: .1D .3S .4D .55D .6S .7D .9S .95S
    #   i: 0->4, 1->5, 2->4, 3->5, 4->6 (t=.575), 5->5, 6->6 (t=.8), 7->5, 8->4
    #   best 6/8 at .575. Fold 1 at > .575: .8S ok, .5S wrong, .2D ok, .45D ok: 3/4
    # Test fold 2, train on folds 0+1, sorted: .2D .4D .45D .5S .6S .7D .8S .9S
    #   i: 0->4, 1->5, 2->6, 3->7 (t=.475), 4->6, 5->5, 6->6, 7->5, 8->4
    #   best 7/8 at .475. Fold 2 at > .475: .95S ok, .3S wrong, .1D ok, .55D wrong: 2/4
    # mean = (1/2 + 3/4 + 1/2) / 3 = 7/12; std (ddof 0) = sqrt(((1/12)^2*2 + (1/6)^2) / 3)
    sim, same, fold = _case_arrays()
    result = kfold_accuracy(sim, same, fold)
    assert result["thresholds"] == pytest.approx([0.25, 0.575, 0.475])
    assert result["per_fold"] == pytest.approx([0.5, 0.75, 0.5])
    assert result["mean"] == pytest.approx(7 / 12)
    assert result["std"] == pytest.approx(np.sqrt((2 * (1 / 12) ** 2 + (1 / 6) ** 2) / 3))
    assert result["folds"] == 3 and result["num_pairs"] == 12


def test_verify_uses_cosine_similarity_of_the_embeddings():
    # unit vectors at angle acos(s) have cosine similarity s: the same case through verify()
    sim, same, fold = _case_arrays()
    first = {f"a{i}": np.array([2.0, 0.0]) for i in range(len(sim))}  # not normalised: verify does
    second = {f"b{i}": np.array([s, np.sqrt(1 - s * s)]) for i, s in enumerate(sim)}
    from privacy_anon.evaluation.verification import Pair

    pairs = [Pair(f"a{i}", f"b{i}", bool(y), int(k)) for i, (y, k) in enumerate(zip(same, fold))]
    result = verify(pairs, {**first, **second})
    assert result["mean"] == pytest.approx(7 / 12)
    assert result["similarity"] == pytest.approx(sim.tolist())
    # re-identification protocol: gallery vectors for the first image, probe for the second
    result = verify(pairs, first, probe_embeddings=second)
    assert result["thresholds"] == pytest.approx([0.25, 0.575, 0.475])
    with pytest.raises(InputError, match="no embedding for image 'b0'"):
        verify(pairs, first)


def test_best_threshold_on_separable_and_tied_scores():
    assert best_threshold([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == (pytest.approx(0.5), 1.0)
    # all similarities equal: no threshold can separate; predicting all same or all different
    t, acc = best_threshold([0.3] * 4, [True, False, True, False])
    assert acc == 0.5 and t == pytest.approx(-0.7)


def _write_pairs(tmp_path, text, images=()):
    root = tmp_path / "lfw"
    for rel in images:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), np.zeros((8, 8, 3), np.uint8))
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    return path, root


PAIRS_TXT = """2\t1
Aaron_Peirsol\t1\t2
Abel_Pacheco\t1\tAkhmed_Zakayev\t3
Zico\t1\t3
Zach_Safrin\t1\tZoe_Ball\t1
"""


def test_read_pairs_parses_lfw_format(tmp_path):
    path, _ = _write_pairs(tmp_path, PAIRS_TXT)
    pairs = read_pairs(path)
    assert [(p.first, p.second, p.same, p.fold) for p in pairs] == [
        ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg", True, 0),
        ("Abel_Pacheco/Abel_Pacheco_0001.jpg", "Akhmed_Zakayev/Akhmed_Zakayev_0003.jpg", False, 0),
        ("Zico/Zico_0001.jpg", "Zico/Zico_0003.jpg", True, 1),
        ("Zach_Safrin/Zach_Safrin_0001.jpg", "Zoe_Ball/Zoe_Ball_0001.jpg", False, 1),
    ]
    assert pairs[3].where.endswith("pairs.txt:5")


def test_malformed_pairs_lines_name_the_line(tmp_path):
    bad_same = PAIRS_TXT.replace("Zico\t1\t3", "Zico\t1\tZoe\t3")
    path, _ = _write_pairs(tmp_path, bad_same)
    with pytest.raises(DataError, match=r"pairs.txt:4: expected a same-person 'name n1 n2' line"):
        read_pairs(path)
    path, _ = _write_pairs(tmp_path, PAIRS_TXT.replace("Zoe_Ball\t1", "Zoe_Ball\tone"))
    with pytest.raises(DataError, match=r"pairs.txt:5: image numbers must be integers"):
        read_pairs(path)
    path, _ = _write_pairs(tmp_path, "10 300\nA 1 2\n")
    with pytest.raises(DataError, match=r"header says 10 folds x 600 pairs = 6000 lines, found 1"):
        read_pairs(path)
    path, _ = _write_pairs(tmp_path, "ten\nA 1 2\n")
    with pytest.raises(DataError, match=r"pairs.txt:1: expected a header"):
        read_pairs(path)
    with pytest.raises(DataError, match="cannot read pairs file"):
        read_pairs(tmp_path / "missing.txt")


def test_a_pair_naming_a_missing_image_names_line_and_file(tmp_path):
    present = ["Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg",
               "Abel_Pacheco/Abel_Pacheco_0001.jpg"]
    path, root = _write_pairs(tmp_path, PAIRS_TXT, present)
    with pytest.raises(DataError, match=r"pairs.txt:3: image .*Akhmed_Zakayev_0003.jpg not found"):
        read_pairs(path, image_root=root)


class PixelRecognizer(Recognizer):
    """A stand-in recognizer: the image shrunk to 8x8, centred; counts what it embeds."""

    name = "pixels"

    def __init__(self):
        self.calls = 0

    def embed(self, images):
        self.calls += len(images)
        x = np.stack([cv2.resize(im, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
                      for im in images])
        x -= x.mean(axis=1, keepdims=True)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)  # flat image: 0


def _synthetic_identities(n=8, copies=2, seed=0):
    """Each identity a random texture; its copies are noisy versions of it."""
    rng = np.random.default_rng(seed)
    images, items = {}, []
    for i in range(n):
        base = rng.integers(0, 256, (32, 32, 3)).astype(np.float32)
        images[f"id{i}/0"] = base.astype(np.uint8)
        for c in range(1, copies + 1):
            images[f"id{i}/{c}"] = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
            items.append((f"id{i}/0", f"id{i}/{c}", True))
            items.append((f"id{i}/0", f"id{(i + c) % n}/{c}", False))
    return images, make_pairs(items, folds=4)


def test_evaluate_faces_protocols_and_cache():
    images, pairs = _synthetic_identities()
    rec = PixelRecognizer()
    cache = EmbeddingCache()
    res = evaluate_faces("none,mask,blur8", pairs, rec, images=images, cache=cache)
    assert list(res) == ["none", "mask", "blur8"]
    assert res["none"]["verification_accuracy"] == 1.0 and res["none"]["reid_accuracy"] == 1.0
    # mask over the whole image: every modified image is the same, similarities tie per
    # gallery image -> chance exactly (each fold holds a same and a different pair per image)
    assert res["mask"]["reid_accuracy"] == 0.5
    assert res["mask"]["verification_error"] == pytest.approx(1 - res["mask"]["verification_accuracy"])
    # each image embedded once as original and once per other method; none reuses originals
    assert rec.calls == 24 + 24 + 24
    evaluate_faces(["none", "mask"], pairs, rec, images=images, cache=cache)
    assert rec.calls == 72, "cached embeddings were recomputed"


def test_evaluate_faces_with_boxes_modifies_only_the_enlarged_box():
    images, pairs = _synthetic_identities()
    seen = []

    class Spy(PixelRecognizer):
        def embed(self, ims):
            seen.extend(ims)
            return super().embed(ims)

    boxes = {k: [10, 10, 20, 20] for k in images}  # enlarged x1.6: [7, 7, 23, 23]
    evaluate_faces(["mask"], pairs, Spy(), images=images, boxes=boxes)
    masked = seen[-1]
    assert (masked[7:23, 7:23] == 0).all() and masked[:7].any()


def test_disk_cache_round_trip(tmp_path):
    images, pairs = _synthetic_identities()
    first = evaluate_faces(["blur8"], pairs, PixelRecognizer(), images=images,
                           cache=EmbeddingCache(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pixels__blur8.npz", "pixels__original.npz"]
    rec = PixelRecognizer()
    again = evaluate_faces(["blur8"], pairs, rec, images=images, cache=EmbeddingCache(tmp_path))
    assert rec.calls == 0 and again["blur8"]["verification"] == first["blur8"]["verification"]


def test_empty_method_list_and_missing_image():
    images, pairs = _synthetic_identities()
    with pytest.raises(InputError, match="empty method list"):
        evaluate_faces("", pairs, PixelRecognizer(), images=images)
    del images["id3/1"]
    with pytest.raises(DataError, match="pair .*: no image 'id3/1'"):
        evaluate_faces("none", pairs, PixelRecognizer(), images=images)


def test_keras_classifier_recognizer_concatenates_flipped_features():
    keras = pytest.importorskip("keras")

    class TinyD(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3, padding="same")
            self.pool = keras.layers.Flatten()

        def call(self, x):
            return self.pool(self.conv(x))

        def embed(self, x):
            return keras.ops.normalize(self(x), axis=-1)

    model = TinyD()

    def align(images):  # uint8 -> [-1, 1] at D's input size (8x6 here)
        return np.stack([cv2.resize(im, (6, 8)) for im in images]).astype(np.float32) / 127.5 - 1

    rec = KerasClassifierRecognizer(model, align, batch_size=2)
    rng = np.random.default_rng(0)
    ims = [rng.integers(0, 256, (20, 15, 3), dtype=np.uint8) for _ in range(3)]
    emb = rec.embed(ims)
    assert emb.shape == (3, 2 * 8 * 6 * 4)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    x = align(ims)
    plain = np.asarray(model.embed(x))
    flipped = np.asarray(model.embed(x[:, :, ::-1].copy()))
    expected = np.concatenate([plain, flipped], axis=1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(emb, expected, atol=1e-5)
    # a mirror-image input swaps the two halves
    mirrored = rec.embed([im[:, ::-1].copy() for im in ims])
    half = emb.shape[1] // 2
    assert np.allclose(mirrored[:, :half], emb[:, half:], atol=1e-4)


# ----------------------------------------------------------------------------- real photos

HAS_DLIB = importlib.util.find_spec("dlib") is not None and \
    importlib.util.find_spec("face_recognition_models") is not None


def _real_faces(n_lfw):
    """Face photos that ship with installed packages, framed like LFW face crops (160x160).

    - the astronaut (Eileen Collins, NASA, public domain; scikit-image),
    - Grace Hopper (US Navy, public domain; matplotlib's sample data),
    - the first `n_lfw` faces of scikit-image's lfw_subset: 25x25 grey crops of LFW faces,
      upscaled x6.4 (bicubic) so that dlib's 80-px HOG window and 150-px chip see a face.
      They are tight crops: dlib's detector misses some, and falls back to the whole image.
      lfw_subset has no identity labels; two of these faces could show the same person.
    """
    from matplotlib import cbook
    from skimage.io import imread

    faces = {"astronaut": cv2.resize(skimage.data.astronaut()[30:230, 120:320], (160, 160),
                                     interpolation=cv2.INTER_AREA)}
    hopper = imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    faces["hopper"] = cv2.resize(hopper[90:390, 120:420], (160, 160), interpolation=cv2.INTER_AREA)
    lfw = (skimage.data.lfw_subset()[:n_lfw] * 255).round().astype(np.uint8)
    for i, face in enumerate(lfw):
        big = cv2.resize(face, (160, 160), interpolation=cv2.INTER_CUBIC)
        faces[f"lfw{i:02d}"] = np.repeat(big[..., None], 3, axis=2)
    return faces


def _augment(image, rng):
    """'Same person': a shift of up to 6 px, brightness x0.8-1.2, a horizontal flip half the time."""
    dx, dy = rng.integers(-6, 7, 2)
    shifted = cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), image.shape[1::-1],
                             borderMode=cv2.BORDER_REFLECT)
    out = np.clip(shifted.astype(np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
    return out[:, ::-1].copy() if rng.random() < 0.5 else out


def _photo_pairs(faces, copies=2, seed=0):
    """Gallery: each original photo. Same pairs: (photo, its augmented copy k); different
    pairs: (photo, augmented copy k of another photo)."""
    rng = np.random.default_rng(seed)
    names, images, items = list(faces), {}, []
    for n in names:
        images[n] = faces[n]
        for k in range(copies):
            images[f"{n}/aug{k}"] = _augment(faces[n], rng)
    for j, n in enumerate(names):
        for k in range(copies):
            items.append((n, f"{n}/aug{k}", True))
            items.append((n, f"{names[(j + 1 + k) % len(names)]}/aug{k}", False))
    return images, make_pairs(items, folds=4)


@pytest.mark.skipif(not HAS_DLIB, reason="dlib not installed: pip install privacy-anon[eval]")
def test_dlib_on_real_photos_none_re_identifies_and_mask_is_chance():
    """What this shows, and what it does not.

    Shows: on real face photographs, the independent recognizer (dlib, never trained against
    any modifier) links an augmented copy of a photo to its original and tells it from the
    other 11 people (re-identification ~100% with 'none'); masking the face (here the whole
    face crop, as for LFW images without boxes) leaves nothing to link, and the protocol
    reports chance (50%). Does not show: recognition of one person across *different*
    photographs (LFW's task; copies of one photo are much easier), nor anything about the
    learned modifier. 12 identities, 48 pairs: one error moves accuracy by ~2%.
    """
    from privacy_anon.evaluation.verification import DlibRecognizer

    images, pairs = _photo_pairs(_real_faces(10))
    rec = DlibRecognizer()
    res = evaluate_faces(["none", "mask"], pairs, rec, images=images)
    print({m: (r["verification_accuracy"], r["reid_accuracy"], r["no_face_modified"]) for m, r in res.items()})
    assert res["none"]["reid_accuracy"] >= 0.95
    assert res["none"]["verification_accuracy"] >= 0.95
    assert res["mask"]["reid_accuracy"] == pytest.approx(0.5, abs=0.05)
    assert res["mask"]["no_face_modified"] == len(images)  # no face left to find


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DLIB, reason="dlib not installed: pip install privacy-anon[eval]")
def test_dlib_on_real_photos_orders_the_baselines():
    """22 identities, all baselines: stronger modifications re-identify less often."""
    from privacy_anon.evaluation.verification import DlibRecognizer

    images, pairs = _photo_pairs(_real_faces(20))
    rec = DlibRecognizer(workers=2)
    try:
        res = evaluate_faces(["none", "blur24", "blur8", "mask", "noise0.5", "superpixel", "edge"],
                             pairs, rec, images=images)
    finally:
        rec.close()
    reid = {m: r["reid_accuracy"] for m, r in res.items()}
    print({m: (round(r["verification_accuracy"], 3), round(r["reid_accuracy"], 3)) for m, r in res.items()})
    assert reid["none"] >= 0.95
    assert reid["none"] >= reid["blur24"] > reid["blur8"]
    assert reid["mask"] == pytest.approx(0.5, abs=0.05)


def test_dlib_missing_says_how_to_install(monkeypatch):
    import sys

    from privacy_anon.evaluation.verification import DlibRecognizer

    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    with pytest.raises(InputError, match=r"install the eval extra: pip install privacy-anon\[eval\]"):
        DlibRecognizer()
