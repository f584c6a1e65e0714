"""The README's privacy claim, measured in CI on a short `tiny` run.

An independent classifier (another seed, trained on originals only, never seen by M) loses
at least 30 points of held-out top-1 accuracy on M's faces while M keeps SSIM >= 0.4 to
the originals. The same yardstick refuses the two ways to cheat it: an M that does nothing
(no accuracy drop) and one that wrecks the face (noise: SSIM far below 0.4). Checked on
seeds 0, 1 and 2 before being asserted here on seed 0 (numbers in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

DROP = 0.30  # points of held-out accuracy the independent classifier must lose
MIN_SSIM = 0.4
SHORT = {"train": {"classifier_steps": 200}, "data": {"num_identities": 8, "images_per_identity": 30}}
M_STEPS = 150


def claim(orig_acc: float, mod_acc: float, ssim: float) -> bool:
    """The README's claim for one anonymizer: privacy (accuracy drop) and structure (SSIM)."""
    return orig_acc - mod_acc >= DROP and ssim >= MIN_SSIM


def measure(classifier, faces, align, modified) -> dict:
    from skimage.metrics import structural_similarity

    from privacy_anon.training.runs import classifier_accuracy

    return {"accuracy_original": classifier_accuracy(classifier, faces.images, align, faces.labels),
            "accuracy_modified": classifier_accuracy(classifier, modified, align, faces.labels),
            "ssim": float(np.mean([structural_similarity(a, b, channel_axis=-1)
                                   for a, b in zip(faces.images, modified)]))}


def short_run(out, seed: int = 0, m_steps: int = M_STEPS) -> dict:
    """D, then M against D, then an independent classifier; the yardstick on held-out faces
    for M, the identity and Gaussian noise (the `noise0.3` baseline)."""
    from privacy_anon import baselines
    from privacy_anon.config import load_config
    from privacy_anon.models.modifier import modify_uint8
    from privacy_anon.training import runs

    cfg = load_config("tiny", None, {**SHORT, "train": {**SHORT["train"], "seed": seed}})
    runs.train(cfg, "classifier", out / "d", verbose=0)
    runs.train(cfg, "adversarial", out / "m", steps=m_steps, classifier_checkpoint=str(out / "d"), verbose=0)
    other = copy.deepcopy(cfg)
    other.train.seed = seed + 1000
    runs.train(other, "classifier", out / "independent", verbose=0)

    faces = runs.prepare_faces(cfg)
    held, align = faces.holdout, faces.holdout_align
    independent = runs.load_keras_part(out / "independent", "classifier")
    modifier = runs.load_keras_part(out / "m", "modifier")
    noise = baselines.get_modifier("noise0.3", seed=seed)
    return {
        "learned": measure(independent, held, align, modify_uint8(modifier, held.images)),
        "identity": measure(independent, held, align, held.images.copy()),
        "noise": measure(independent, held, align, np.stack(noise.modify_crops(list(held.images)))),
        "chance": 1.0 / held.num_identities,
    }


@pytest.fixture(scope="module")
def seed0(tmp_path_factory):
    return short_run(tmp_path_factory.mktemp("claims"), seed=0)


def test_learned_m_fools_an_independent_classifier_and_keeps_structure(seed0):
    r = seed0["learned"]
    print(seed0)
    assert r["accuracy_original"] >= 0.8, seed0  # the attacker is good on originals
    assert claim(r["accuracy_original"], r["accuracy_modified"], r["ssim"]), seed0


def test_identity_and_noise_fail_the_same_yardstick(seed0):
    ident, noise = seed0["identity"], seed0["noise"]
    assert not claim(ident["accuracy_original"], ident["accuracy_modified"], ident["ssim"])
    assert ident["accuracy_modified"] == ident["accuracy_original"]  # nothing hidden
    assert noise["ssim"] < MIN_SSIM, seed0  # fools or not, noise wrecks the face
    assert not claim(noise["accuracy_original"], noise["accuracy_modified"], noise["ssim"])
