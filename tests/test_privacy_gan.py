"""The M-step terms beyond the paper: identity (D's embedding) and colour / low-pass."""

import numpy as np
import pytest
import tensorflow as tf

from privacy_anon.config import get_preset
from privacy_anon.data.faces import alignment_matrices, synthetic_faces
from privacy_anon.models.face_classifier import build_classifier
from privacy_anon.models.modifier import build_modifier
from privacy_anon.training.privacy_gan import PrivacyGAN


@pytest.fixture(scope="module")
def parts():
    cfg = get_preset("tiny")
    faces = synthetic_faces(4, 4, cfg.modifier.input_size, seed=0)
    align = alignment_matrices(faces, cfg.classifier.input_height, cfg.classifier.input_width)
    gan = PrivacyGAN(build_modifier(cfg.modifier), build_classifier(cfg.classifier, 4),
                     lambda_identity=1.0, lambda_color=1.0, lambda_lowpass=1.0)
    x = tf.constant(faces.images.astype(np.float32) / 127.5 - 1.0)
    return gan, x, tf.constant(align)


def test_identity_term_is_one_for_the_same_face_and_reaches_m(parts):
    gan, x, align = parts
    # a fresh residual M is the identity: D sees the same face twice, cosine 1
    np.testing.assert_allclose(gan._identity_term(gan.modifier(x), x, align).numpy(), 1.0, atol=1e-4)
    # ... and falls to 0 (the hinge) for another person's face
    other = tf.roll(x, 1, axis=0)
    assert np.mean(gan._identity_term(other, x, align).numpy()) < 0.99
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(gan._identity_term(gan.modifier(x, training=True), x, align))
    grads = tape.gradient(loss, gan.modifier.trainable_variables)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads if g is not None) > 0


def test_colour_term_tells_colour_patterns_from_light_detail(parts):
    gan, x, _ = parts
    rng = np.random.default_rng(0)
    detail = rng.normal(0, 0.2, x.shape[:3] + (1,)).astype(np.float32)
    grey_detail = x + detail  # the same change in R, G and B: luminance only
    tint = x + detail * np.array([1.0, -1.0, 0.5], np.float32)  # colour blobs
    chroma_grey, _ = gan._color_terms(grey_detail, x)
    chroma_tint, _ = gan._color_terms(tint, x)
    assert float(tf.reduce_max(chroma_grey)) < 1e-5
    assert float(tf.reduce_min(chroma_tint)) > 0.05
    # the low-pass term ignores fine zero-mean detail but sees a shift of light
    _, low_detail = gan._color_terms(x + _checker(x.shape), x)
    _, low_shift = gan._color_terms(x + 0.3, x)
    assert float(tf.reduce_max(low_detail)) < 1e-5 and float(tf.reduce_min(low_shift)) > 0.29


def _checker(shape):
    yy, xx = np.mgrid[:shape[1], :shape[2]]
    board = np.where((yy + xx) % 2, 0.2, -0.2).astype(np.float32)
    return np.broadcast_to(board[None, :, :, None], shape)


def test_weights_are_validated():
    cfg = get_preset("tiny")
    m, d = build_modifier(cfg.modifier), build_classifier(cfg.classifier, 3)
    with pytest.raises(ValueError, match="lambda_color"):
        PrivacyGAN(m, d, lambda_color=-1.0)
    with pytest.raises(ValueError, match="identity_margin"):
        PrivacyGAN(m, d, identity_margin=1.5)
