"""The M-step terms beyond the paper: identity (D's embedding) and colour / low-pass."""

import numpy as np
import pytest
import tensorflow as tf

from privacy_anon.config import get_preset
from privacy_anon.data.faces import alignment_matrices, synthetic_faces
from privacy_anon.faces import geometry
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


def _two_adversary_gan(stage="adversarial", **kw):
    import keras

    keras.utils.set_random_seed(0)
    cfg = get_preset("tiny")
    d1, d2 = build_classifier(cfg.classifier, 4), build_classifier(cfg.classifier, 4)
    gan = PrivacyGAN(build_modifier(cfg.modifier), d1, stage=stage, extra_classifiers=[d2],
                     adv_loss="nonsaturating", **kw)
    gan.compile(m_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
                d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5))
    return gan


def test_two_adversaries_each_learn_and_m_fools_their_mean(parts):
    _, x, align = parts
    labels = tf.constant(np.repeat(np.arange(4), 4))
    gan = _two_adversary_gan(lambda_identity=1.0)
    d1, d2 = gan.classifiers
    assert len(gan.d_optimizers) == 2 and gan.d_optimizers[0] is not gan.d_optimizers[1]
    before = [[w.copy() for w in d.get_weights()] for d in (d1, d2, gan.modifier)]
    for _ in range(3):
        logs = gan.train_step({"faces": x, "identity": labels, "align": align})
    for model, old in zip((d1, d2, gan.modifier), before):  # both D's take their own steps
        assert max(float(np.max(np.abs(a - b))) for a, b in zip(model.get_weights(), old)) > 1e-4
    assert int(gan.d_optimizers[1].iterations.numpy()) == 3
    assert np.isfinite(float(logs["loss_adv"])) and np.isfinite(float(logs["loss_d"]))

    # The M step's adversarial and identity terms are the means of the two D's terms, each
    # computed here from scratch (no view jitter): -log(1 - p_D(id | M(f))) and cos(e(M f), e(f)).
    modified = gan.modifier(x, training=True)  # what the M step sees before it updates M
    adv, ident = [], []
    for d in (d1, d2):
        def emb(img):
            return d(geometry.align_faces(img, align, d.input_height, d.input_width))
        p = tf.nn.softmax(d.head(emb(modified)))
        adv.append(-np.log(1.0 - np.take_along_axis(p.numpy(), labels.numpy()[:, None], 1)[:, 0]))
        ident.append(np.sum(tf.math.l2_normalize(emb(modified), -1).numpy()
                            * tf.math.l2_normalize(emb(x), -1).numpy(), -1).clip(0, None))
    # two different D's: the mean is neither D's term alone (seeded: 3.81 vs 2.09)
    assert abs(np.mean(adv[0]) - np.mean(adv[1])) > 0.1
    for t in gan.trackers.values():
        t.reset_state()
    gan._m_step(x, labels, align)
    np.testing.assert_allclose(gan.trackers["loss_adv"].result().numpy(),
                               np.mean((adv[0] + adv[1]) / 2), rtol=1e-4)
    np.testing.assert_allclose(gan.trackers["loss_identity"].result().numpy(),
                               np.mean((ident[0] + ident[1]) / 2), rtol=1e-4, atol=1e-6)


def test_the_lowpass_and_saturation_terms_are_logged_on_their_own(parts):
    _, x, align = parts
    labels = tf.constant(np.repeat(np.arange(4), 4))
    gan = _two_adversary_gan(lambda_color=1.0, lambda_lowpass=1.0, lambda_saturation=1.0)
    gan.train_step({"faces": x, "identity": labels, "align": align})  # M leaves the identity
    modified = gan.modifier(x, training=True)  # what the next M step sees
    _, lowpass = gan._color_terms(modified, x)
    saturation = gan._saturation_term(modified, x)
    assert float(tf.reduce_mean(saturation)) > 0
    for t in gan.trackers.values():
        t.reset_state()
    gan._m_step(x, labels, align)
    np.testing.assert_allclose(gan.trackers["loss_lowpass"].result().numpy(),
                               float(tf.reduce_mean(lowpass)), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(gan.trackers["loss_saturation"].result().numpy(),
                               float(tf.reduce_mean(saturation)), rtol=1e-4, atol=1e-7)


def test_extra_classifiers_round_trip_and_stay_out_of_pre_training():
    gan = _two_adversary_gan()
    again = PrivacyGAN.from_config(gan.get_config())
    assert len(again.extra_classifiers) == 1
    assert again.extra_classifiers[0].get_config() == gan.extra_classifiers[0].get_config()
    assert PrivacyGAN.from_config(PrivacyGAN(gan.modifier, gan.classifier).get_config()).extra_classifiers == []
    with pytest.raises(ValueError, match="classifier"):
        PrivacyGAN(gan.modifier, gan.classifier, stage="classifier", extra_classifiers=[gan.classifiers[1]])


def test_a_gan_with_a_realism_critic_round_trips_its_config():
    from privacy_anon.models.realism import PatchCritic

    cfg = get_preset("tiny")
    gan = PrivacyGAN(build_modifier(cfg.modifier), build_classifier(cfg.classifier, 2),
                     critic=PatchCritic(8), lambda_realism=0.5, realism_focus=True)
    again = PrivacyGAN.from_config(gan.get_config())
    assert isinstance(again.critic, PatchCritic) and again.critic is not gan.critic
    assert again.critic.filters == 8 and again.lambda_realism == 0.5 and again.realism_focus
    assert PrivacyGAN.from_config(PrivacyGAN(gan.modifier, gan.classifier).get_config()).critic is None


def test_realism_focus_weighs_the_patches_m_changed():
    from privacy_anon.models.realism import PatchCritic

    cfg = get_preset("tiny")
    s = cfg.modifier.input_size
    faces = tf.constant(synthetic_faces(2, 2, s, seed=0).images.astype(np.float32) / 127.5 - 1.0)
    # M changed one 1/4-side square (the "mouth") and nothing else
    edit = np.zeros(faces.shape, np.float32)
    edit[:, s // 2:3 * s // 4, s // 4:s // 2] = 0.5
    modified = faces + edit
    critic = PatchCritic(8)
    logits = critic(modified)
    kw = dict(critic=critic, lambda_realism=1.0)
    plain = PrivacyGAN(build_modifier(cfg.modifier), build_classifier(cfg.classifier, 2), **kw)
    focus = PrivacyGAN(plain.modifier, plain.classifier, realism_focus=True, **kw)
    w_plain = plain._patch_weights(modified, faces, logits).numpy()
    w_focus = focus._patch_weights(modified, faces, logits).numpy()
    np.testing.assert_allclose(w_plain.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(w_focus.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    h = logits.shape[1]
    inside = np.zeros(w_focus.shape, bool)
    inside[:, h // 2:3 * h // 4, h // 4:h // 2] = True  # the edited square, in patches
    # a plain mean gives the edited 1/16 of the crop 1/16 of the say; focus nearly all of it
    assert np.allclose(w_plain[inside].reshape(len(faces), -1).sum(1), 1 / 16, atol=1e-6)
    assert w_focus[inside].reshape(len(faces), -1).sum(1).min() > 0.95
    # an untouched face (M starts as the identity) falls back to equal weights
    np.testing.assert_allclose(focus._patch_weights(faces, faces, logits).numpy(), w_plain, rtol=1e-4)
    assert focus.get_config()["realism_focus"] and not plain.get_config()["realism_focus"]


def test_view_erase_hides_a_region_from_d_alike_for_both_faces_of_the_identity_term(parts):
    gan, x, align = parts
    erasing = PrivacyGAN(gan.modifier, gan.classifier, lambda_identity=1.0, view_erase=1.0)
    # M(f) and f are compared through the same erased view: an unchanged face is still cosine 1
    np.testing.assert_allclose(
        erasing._identity_term(erasing.modifier(x), x, align).numpy(), 1.0, atol=1e-4)
    labels = tf.range(x.shape[0]) % 4
    plain = gan._d_outputs(x, align, labels, training=False)[2].numpy()
    seen = erasing._d_outputs(x, align, labels, training=False)[2].numpy()
    assert np.abs(seen - plain).max() > 1e-3  # D's view really lost a region
    assert erasing.get_config()["view_erase"] == 1.0
    with pytest.raises(ValueError, match="view_erase"):
        PrivacyGAN(gan.modifier, gan.classifier, view_erase=1.5)


def test_warmup_ramps_the_image_terms_over_ms_first_steps():
    import keras

    cfg = get_preset("tiny")
    m, d = build_modifier(cfg.modifier), build_classifier(cfg.classifier, 3)
    with pytest.raises(ValueError, match="warmup_steps"):
        PrivacyGAN(m, d, warmup_steps=-1)
    gan = PrivacyGAN(m, d, warmup_steps=4)
    gan.compile(m_optimizer=keras.optimizers.Adam(1e-3), d_optimizer=keras.optimizers.Adam(1e-3))
    gan.build_optimizers()
    ramps = []
    for taken in range(6):
        gan.m_optimizer.iterations.assign(taken)
        ramps.append(float(gan._warmup_ramp()))
    assert ramps == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    # a clock may shorten the warm-up while M trains, never lengthen it
    gan.m_optimizer.iterations.assign(0)
    assert gan.shorten_warmup(2) == 2 and float(gan._warmup_ramp()) == 0.5
    assert gan.shorten_warmup(10) == 2 and gan.shorten_warmup(0) == 1
    assert float(gan._warmup_ramp()) == 1.0
    assert PrivacyGAN(m, d)._warmup_ramp() == 1.0  # the paper: no warm-up
    assert PrivacyGAN(m, d).shorten_warmup(5) == 0
    assert gan.get_config()["warmup_steps"] == 4


def test_saturation_term_sees_a_brightened_face_and_not_a_moved_one(parts):
    gan, x, _ = parts
    # brightening all of R, G and B alike (what a luma-only M can do) lowers S = (max-min)/max
    brighter = gan._saturation_term(x + 0.3, x).numpy()
    assert brighter.min() > 0.02
    # the same pixels in another order keep the statistic: the term is about colour, not shape
    np.testing.assert_allclose(gan._saturation_term(tf.reverse(x, [2]), x).numpy(), 0.0, atol=1e-6)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(gan._saturation_term(gan.modifier(x, training=True) + 0.3, x))
    grads = tape.gradient(loss, gan.modifier.trainable_variables)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads if g is not None) > 0


def test_ssim_term_is_the_yardsticks_ssim_and_charges_structure_not_light(parts):
    from skimage.metrics import structural_similarity

    gan, x, _ = parts
    rng = np.random.default_rng(0)
    noisy = np.clip(x.numpy() + rng.normal(0, 0.15, x.shape), -1, 1).astype(np.float32)
    expected = [structural_similarity((a + 1) / 2, (b + 1) / 2, channel_axis=-1, data_range=1.0)
                for a, b in zip(x.numpy(), noisy)]
    np.testing.assert_allclose(gan._ssim(tf.constant(noisy), x).numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(gan._ssim(x, x).numpy(), 1.0, atol=1e-5)
    # the same mean |change| as a shift of light costs a small fraction of it as grain
    step = float(np.mean(np.abs(noisy - x.numpy())))
    lit = 1.0 - gan._ssim(x * (1 - step) - step, x).numpy()  # darker, nothing clipped
    grain = 1.0 - gan._ssim(tf.constant(noisy), x).numpy()
    assert np.all(grain > 5 * lit)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(1.0 - gan._ssim(gan.modifier(x, training=True) + noisy - x, x))
    grads = tape.gradient(loss, gan.modifier.trainable_variables)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads if g is not None) > 0


def test_ssim_weight_is_validated_and_kept_in_the_config():
    cfg = get_preset("tiny")
    m, d = build_modifier(cfg.modifier), build_classifier(cfg.classifier, 3)
    with pytest.raises(ValueError, match="lambda_ssim"):
        PrivacyGAN(m, d, lambda_ssim=-1.0)
    gan = PrivacyGAN(m, d, lambda_ssim=3.0)
    assert PrivacyGAN.from_config(gan.get_config()).lambda_ssim == 3.0
    assert "loss_ssim" in [t.name for t in gan.metrics]


def test_recognizer_degradation_takes_fine_patterns_not_light_or_shape():
    from privacy_anon.training.privacy_gan import _degrade

    n, size = 64, 32
    yy, xx = np.mgrid[:size, :size]
    stripes = np.where((xx + yy) % 2 == 0, 0.2, -0.2)  # a 1-pixel pattern
    ramp = (xx / size - 0.5) * 0.8  # light changing across the face
    images = tf.constant(np.broadcast_to((stripes + ramp)[None, :, :, None], (n, size, size, 3)),
                         tf.float32)
    tf.random.set_seed(0)
    out = _degrade(images, 0.0, 1.0).numpy()
    # each face its own blur strength: the pattern keeps between none and all of its
    # amplitude, about half on average; the ramp (away from the border) stays
    left = np.abs(out - ramp[None, :, :, None])[:, 4:-4, 4:-4].mean(axis=(1, 2, 3)) / 0.2
    assert np.all(left <= 1.0 + 1e-4) and 0.3 < left.mean() < 0.7 and left.std() > 0.1
    smooth = tf.constant(np.broadcast_to(ramp[None, :, :, None], (n, size, size, 3)), tf.float32)
    kept = _degrade(smooth, 0.0, 1.0).numpy() - ramp[None, :, :, None]
    assert np.abs(kept[:, 4:-4, 4:-4]).max() < 1e-4
    noisy = _degrade(smooth, 0.03, 0.0).numpy() - ramp[None, :, :, None]
    assert abs(noisy.std() - 0.03) < 0.002 and abs(noisy.mean()) < 0.002
    assert _degrade(images, 0.0, 0.0) is images


def test_recognizer_degradation_is_validated_and_kept_in_the_config():
    cfg = get_preset("tiny")
    m, d = build_modifier(cfg.modifier), build_classifier(cfg.classifier, 3)
    for bad in ({"recognizer_noise": -0.1}, {"recognizer_blur": -1.0}):
        with pytest.raises(ValueError, match="recognizer_noise"):
            PrivacyGAN(m, d, **bad)
    gan = PrivacyGAN(m, d, recognizer_noise=0.03, recognizer_blur=1.0)
    config = PrivacyGAN.from_config(gan.get_config()).get_config()
    assert (config["recognizer_noise"], config["recognizer_blur"]) == (0.03, 1.0)
