import keras
import numpy as np
import pytest
import tensorflow as tf

from privacy_anon.config import get_preset
from privacy_anon.models.face_classifier import FaceClassifier, MarginHead, build_classifier
from privacy_anon.models.modifier import FaceModifier, build_modifier


def test_modifier_shapes_and_validation():
    m = FaceModifier(input_size=32, filters=4, num_blocks=1)
    m.build()
    assert m(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 32, 32, 3)
    out = np.asarray(m(np.random.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)))
    assert out.min() >= -1 and out.max() <= 1
    with pytest.raises(ValueError, match="input_size=30"):
        FaceModifier(input_size=30)
    with pytest.raises(ValueError, match="output_mode"):
        FaceModifier(output_mode="sigmoid")


def test_residual_modifier_starts_as_identity():
    m = build_modifier(get_preset("tiny").modifier)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(m(x)), x, atol=1e-6)


def test_paper_sized_models_build():
    cfg = get_preset("paper")
    d = build_classifier(cfg.classifier, 10)
    # SphereFace-20: ~22.7M parameters with the 512-d embedding (21.5M + head).
    assert 20e6 < d.count_params() < 25e6
    assert d(np.zeros((1, 112, 96, 3), np.float32)).shape == (1, 512)
    m = build_modifier(cfg.modifier)
    assert len(m.blocks) == 9 and m.input_size == 256


def test_keras_round_trip(tmp_path):
    cfg = get_preset("tiny")
    m = build_modifier(cfg.modifier)
    m.head.kernel.assign(np.random.default_rng(1).normal(0, 0.05, m.head.kernel.shape))
    d = build_classifier(cfg.classifier, 7)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    xa = np.random.default_rng(1).uniform(-1, 1, (2, 56, 48, 3)).astype(np.float32)
    m.save(tmp_path / "m.keras")
    d.save(tmp_path / "d.keras")
    m2 = keras.saving.load_model(tmp_path / "m.keras")
    d2 = keras.saving.load_model(tmp_path / "d.keras")
    np.testing.assert_allclose(np.asarray(m2(x)), np.asarray(m(x)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(d2.logits(xa)), np.asarray(d.logits(xa)), atol=1e-5)
    assert isinstance(d2, FaceClassifier) and d2.num_classes == 7


@pytest.mark.parametrize("kind,margin", [("asoftmax", 4), ("cosface", 0.35), ("arcface", 0.5)])
def test_margin_raises_the_true_class_loss(kind, margin):
    head = MarginHead(5, kind=kind, margin=margin, scale=16.0)
    emb = tf.constant(np.random.default_rng(0).normal(size=(8, 16)), tf.float32)
    head.build(emb.shape)
    labels = tf.constant([0, 1, 2, 3, 4, 0, 1, 2])
    if kind == "asoftmax":  # past the annealing warm-up (lambda at its minimum, 5)
        head.iterations.assign(10**6)
    ce = keras.losses.sparse_categorical_crossentropy
    plain = ce(labels, head(emb), from_logits=True)
    with_margin = ce(labels, head.margin_logits(emb, labels), from_logits=True)
    assert np.all(np.asarray(with_margin) > np.asarray(plain) - 1e-5)
    assert float(tf.reduce_mean(with_margin - plain)) > 0.05


def test_asoftmax_annealing_lowers_lambda():
    head = MarginHead(4, kind="asoftmax", margin=4)
    head.build((None, 8))
    first = float(head.annealing_lambda())
    for _ in range(200):
        head.advance()
    assert float(head.annealing_lambda()) < first


def _grid_strength(m) -> float:
    """How much of M's fine detail on a smooth input is locked to the pixel's position modulo 4
    (the period two stride-2 up-samplings leave), away from the borders: the spread of the
    high-pass output's mean over the 16 phases."""
    i, j = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    x = np.stack([0.5 * np.sin(2 * np.pi * (i + 7 * k) / 64) * np.cos(2 * np.pi * (j - 5 * k) / 64)
                  for k in range(3)], -1)[None].astype(np.float32)
    out = np.asarray(m(x))[0, 16:48, 16:48]
    high = out - 0.25 * sum(np.roll(out, s, a) for s in (1, -1) for a in (0, 1))
    phases = high[2:30, 2:30].reshape(7, 4, 7, 4, 3).mean(axis=(0, 2))
    return float(phases.std(axis=(0, 1)).max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resize_upsampling_leaves_no_checkerboard(seed):
    """Transposed 3x3 stride-2 convs paint a fixed grid over any input (uneven kernel overlap);
    nearest 2x + conv gives every output pixel the same footprint (measured: 0.27-0.34 against
    0.02-0.03 for three random inits)."""
    grids = {}
    for upsample in ("transpose", "resize"):
        keras.utils.set_random_seed(seed)
        m = FaceModifier(input_size=64, filters=8, num_blocks=1, upsample=upsample)
        m.build()
        grids[upsample] = _grid_strength(m)
    assert grids["transpose"] > 0.1, grids
    assert grids["resize"] < grids["transpose"] / 5, grids


def test_resize_modifier_validation_and_round_trip(tmp_path):
    with pytest.raises(ValueError, match="upsample"):
        FaceModifier(upsample="bilinear")
    m = FaceModifier(input_size=32, filters=4, num_blocks=1, output_mode="residual",
                     upsample="resize")
    m.build()
    m.head.kernel.assign(np.random.default_rng(1).normal(0, 0.05, m.head.kernel.shape))
    m.save(tmp_path / "m.keras")
    m2 = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(m2(x)), np.asarray(m(x)), atol=1e-6)
    assert m2.get_config()["upsample"] == "resize"


def test_pixel_shuffle_modifier_starts_as_identity_at_half_resolution_and_round_trips(tmp_path):
    m = FaceModifier(input_size=32, filters=4, num_blocks=1, output_mode="residual",
                     outer_kernel=3, pixel_shuffle=True)
    m.build()
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(m(x)), x, atol=1e-6)  # zero head: the identity
    # every conv sees half resolution or less: 12 channels in (2x2 blocks of RGB), 12 out
    assert m.stem[2].kernel.shape == (3, 3, 12, 8) and m.head.kernel.shape == (3, 3, 8, 12)
    assert len(m.down) == 3 and len(m.up) == 3  # one down- and one up-sampling block
    m.head.kernel.assign(np.random.default_rng(1).normal(0, 0.05, m.head.kernel.shape))
    y = np.asarray(m(x))
    assert y.shape == x.shape and np.abs(y - x).mean() > 0.01
    m.save(tmp_path / "m.keras")
    m2 = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(m2(x)), y, atol=1e-6)
    assert m2.get_config()["pixel_shuffle"] is True
    assert FaceModifier(input_size=32, filters=4, num_blocks=1).get_config()["pixel_shuffle"] is False


@pytest.mark.parametrize("pixel_shuffle", [False, True])
def test_luma_modifier_changes_brightness_only_and_round_trips(tmp_path, pixel_shuffle):
    m = FaceModifier(input_size=32, filters=4, num_blocks=1, output_mode="luma",
                     outer_kernel=3, pixel_shuffle=pixel_shuffle)
    m.build()
    x = np.random.default_rng(0).uniform(-0.8, 0.8, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(m(x)), x, atol=1e-6)  # zero head: the identity
    assert m.head.kernel.shape[-1] == (4 if pixel_shuffle else 1)  # one channel per pixel
    m.head.kernel.assign(np.random.default_rng(1).normal(0, 0.05, m.head.kernel.shape))
    y = np.asarray(m(x))
    d = y - x
    inside = (np.abs(y) < 1).all(-1)  # not clipped
    assert np.abs(d).mean() > 0.01 and inside.mean() > 0.5
    # the same change in R, G and B: Cb and Cr (their weights sum to 0) do not move
    np.testing.assert_allclose(d[inside][:, 0], d[inside][:, 1], atol=1e-5)
    np.testing.assert_allclose(d[inside][:, 0], d[inside][:, 2], atol=1e-5)
    m.save(tmp_path / "m.keras")
    m2 = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(m2(x)), y, atol=1e-6)
    assert m2.get_config()["output_mode"] == "luma"


@pytest.mark.parametrize("pixel_shuffle", [False, True])
def test_gain_modifier_keeps_hue_and_saturation_and_round_trips(tmp_path, pixel_shuffle):
    """`output_mode: gain` multiplies R, G and B (in [0, 1]) by one factor per pixel: the
    ratios between channels, hence HSV hue and saturation, are the face's own."""
    m = FaceModifier(input_size=32, filters=4, num_blocks=1, output_mode="gain",
                     outer_kernel=3, pixel_shuffle=pixel_shuffle)
    m.build()
    x = np.random.default_rng(0).uniform(-0.8, 0.8, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(m(x)), x, atol=1e-6)  # zero head: the identity
    assert m.head.kernel.shape[-1] == (4 if pixel_shuffle else 1)
    m.head.kernel.assign(np.random.default_rng(1).normal(0, 0.05, m.head.kernel.shape))
    y = np.asarray(m(x))
    inside = (np.abs(y) < 1).all(-1)  # not clipped
    assert np.abs(y - x).mean() > 0.01 and inside.mean() > 0.5
    gain = (y + 1) / (x + 1)
    assert np.abs(gain[inside][:, 0] - 1).mean() > 0.02  # a real change of light
    np.testing.assert_allclose(gain[inside][:, 0], gain[inside][:, 1], rtol=1e-4)
    np.testing.assert_allclose(gain[inside][:, 0], gain[inside][:, 2], rtol=1e-4)
    m.save(tmp_path / "m.keras")
    m2 = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(m2(x)), y, atol=1e-6)
    assert m2.get_config()["output_mode"] == "gain"


def test_outer_kernel_sets_the_first_and_last_conv_and_round_trips(tmp_path):
    for bad in (4, 0, 2.5):
        with pytest.raises(ValueError, match="outer_kernel"):
            FaceModifier(outer_kernel=bad)
    m = FaceModifier(input_size=32, filters=4, num_blocks=1, output_mode="residual", outer_kernel=3)
    m.build()
    assert m.stem[1].kernel.shape[:2] == (3, 3) and m.head.kernel.shape[:2] == (3, 3)
    m.head.kernel.assign(np.random.default_rng(1).normal(0, 0.05, m.head.kernel.shape))
    m.save(tmp_path / "m.keras")
    m2 = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(m2(x)), np.asarray(m(x)), atol=1e-6)
    assert m2.get_config()["outer_kernel"] == 3
    assert FaceModifier(input_size=32, filters=4, num_blocks=1).get_config()["outer_kernel"] == 7
