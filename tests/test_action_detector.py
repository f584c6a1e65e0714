"""A, the Model Garden Faster R-CNN adapter (tiny preset; the paper build is marked slow)."""

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from privacy_anon.config import ActionDetectorConfig, get_preset
from privacy_anon.errors import DataError
from privacy_anon.models.action_detector import LOSS_KEYS, ActionDetector, padded_size

NAMES = ["phoning", "arms_out", "drinking"]


@pytest.fixture(scope="module")
def config():
    return get_preset("tiny").detector


@pytest.fixture(scope="module")
def detector(config):
    return ActionDetector(config, class_names=NAMES)


@pytest.fixture(scope="module")
def batch(config):
    from privacy_anon.data.actions import make_dataset, synthetic_actions

    data = synthetic_actions(2, (config.image_height, config.image_width), num_classes=3, seed=0)
    return next(iter(make_dataset(data, 2, (config.image_height, config.image_width), max_boxes=3,
                                  max_faces=1, shuffle=False)))


def test_losses_are_finite_scalars_and_reach_images_and_every_variable(detector, batch):
    images = tf.Variable(batch["images"])
    with tf.GradientTape() as tape:
        losses = detector.losses(images, batch["boxes"], batch["classes"])
    assert set(losses) == set(LOSS_KEYS)
    for name, value in losses.items():
        assert value.shape == () and value.dtype == tf.float32 and np.isfinite(value.numpy()), name
    np.testing.assert_allclose(losses["total"].numpy(),
                               sum(losses[k].numpy() for k in LOSS_KEYS[:-1]), rtol=1e-5)
    grads = tape.gradient(losses["total"], [images] + detector.trainable_variables)
    assert float(tf.reduce_sum(tf.abs(grads[0]))) > 0  # L_det reaches M through the frames
    assert all(g is not None for g in grads[1:])


def test_train_step_in_tf_function_lowers_the_loss(detector, batch):
    import tf_keras

    optimizer = tf_keras.optimizers.Adam(1e-3)

    @tf.function
    def step(images, boxes, classes):
        with tf.GradientTape() as tape:
            losses = detector.losses(images, boxes, classes)
        grads = tape.gradient(losses["total"], detector.trainable_variables)
        optimizer.apply_gradients(zip(grads, detector.trainable_variables))
        return losses["total"]

    totals = [float(step(batch["images"], batch["boxes"], batch["classes"])) for _ in range(12)]
    assert np.isfinite(totals).all()
    assert min(totals[-3:]) < totals[0]


def test_validation_losses_keep_batch_norm_statistics(detector, batch):
    moving = [v for v in detector.variables if "moving_mean" in v.name]
    before = [v.numpy().copy() for v in moving]
    losses = detector.losses(batch["images"], batch["boxes"], batch["classes"], training=False)
    assert np.isfinite(losses["total"].numpy())
    for b, v in zip(before, moving):
        np.testing.assert_array_equal(b, v.numpy())
    assert all(layer.trainable for layer in detector._batch_norms)  # restored


def test_detect_outputs_pixel_boxes_and_one_based_classes(detector, config, batch):
    out = detector.detect(batch["images"])
    k = config.max_detections
    assert out["boxes"].shape == (2, k, 4) and out["scores"].shape == (2, k)
    assert out["classes"].dtype == tf.int32 and out["num_detections"].shape == (2,)
    for i in range(2):
        n = int(out["num_detections"][i])
        boxes = out["boxes"][i, :n].numpy()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        assert boxes.min() >= 0 and boxes[:, 2].max() <= config.image_width
        assert boxes[:, 3].max() <= config.image_height
        classes = out["classes"][i, :n].numpy()
        assert ((classes >= 1) & (classes < config.num_classes)).all()


def test_smaller_frames_are_padded_larger_refused(detector):
    out = detector.detect(tf.zeros((1, 100, 90, 3)))
    n = int(out["num_detections"][0])
    assert out["boxes"][0, :n, 2].numpy().max(initial=0) <= 90
    with pytest.raises(ValueError, match="larger than the detector's input"):
        detector.detect(tf.zeros((1, 400, 90, 3)))


def test_class_names_and_sizes(detector, config):
    assert detector.class_names == ["background"] + NAMES
    assert detector.num_classes == 4
    assert padded_size(dataclasses.replace(config, image_height=340, image_width=452, max_level=6)) \
        == (384, 512)
    with pytest.raises(ValueError, match="must name the 3 action classes"):
        ActionDetector(config, class_names=["a", "b"])


@pytest.mark.parametrize("change, expected", [
    ({"backbone": "mobilenet"}, "backbone must be 'resnet'"),
    ({"backbone_depth": 11}, "backbone_depth must be one of"),
    ({"num_classes": 1}, "num_classes=1"),
    ({"min_level": 1}, "min_level=1"),
    ({"image_height": 16}, "smaller than the coarsest stride"),
])
def test_bad_config_values_are_shown(config, change, expected):
    with pytest.raises(ValueError, match=expected):
        ActionDetector(dataclasses.replace(config, **change))


# ----------------------------------------------------------------------------- checkpoints


def _different(a, b):
    return any(not np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a, b))


def test_checkpoint_full_nested_and_backbone_only(detector, config, tmp_path):
    other = ActionDetector(config)
    assert _different(detector.variables, other.variables)  # random init differs

    full = tf.train.Checkpoint(A=tf.train.Checkpoint(**detector.checkpoint_items())).write(
        str(tmp_path / "joint" / "ckpt"))
    assert other.load_checkpoint(full) == "all"
    assert not _different(detector.variables, other.variables)

    third = ActionDetector(dataclasses.replace(config, num_classes=7))  # other head, same backbone
    backbone = tf.train.Checkpoint(backbone=detector.model.backbone).write(str(tmp_path / "bb" / "ckpt"))
    assert third.load_checkpoint(tmp_path / "bb") == "backbone"  # a directory works too
    assert not _different(detector.model.backbone.variables, third.model.backbone.variables)
    assert third.load_checkpoint(full, part="backbone") == "backbone"
    with pytest.raises(DataError, match="does not fit this detector"):
        third.load_checkpoint(full)  # its head has 4 classes, not 7
    with pytest.raises(DataError, match="holds no detector"):
        third.load_checkpoint(backbone, part="all")


def test_checkpoint_errors_name_the_path(detector, tmp_path):
    with pytest.raises(DataError, match="no TensorFlow checkpoint"):
        detector.load_checkpoint(tmp_path)
    with pytest.raises(DataError, match="not a readable TensorFlow checkpoint"):
        detector.load_checkpoint(tmp_path / "nothing-here")
    other = tf.train.Checkpoint(x=tf.Variable(1.0)).write(str(tmp_path / "x" / "ckpt"))
    with pytest.raises(DataError, match=re.escape(other) + ": holds no detector"):
        detector.load_checkpoint(other)


def test_model_garden_stays_inside_the_adapter():
    """Only models/action_detector.py may import Model Garden or tf_keras."""
    package = Path(__file__).resolve().parents[1] / "privacy_anon"
    pattern = re.compile(r"^\s*(from|import)\s+(official|tf_keras)\b", re.M)
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if p.name != "action_detector.py" and pattern.search(p.read_text())]
    assert offenders == []


# ----------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_paper_detector_builds_resnet101():
    detector = ActionDetector(get_preset("paper").detector)
    assert detector.task_config.model.backbone.resnet.model_id == 101
    assert detector.input_height == 384 and detector.input_width == 512
    assert detector.count_params() > 40_000_000
    out = detector.detect(tf.zeros((1, 340, 452, 3)))
    assert out["boxes"].shape == (1, 100, 4)


STRATEGY_SCRIPT = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    import tf_keras
    from privacy_anon.config import get_preset
    from privacy_anon.data.actions import make_dataset, synthetic_actions
    from privacy_anon.models.action_detector import ActionDetector

    # Importing the adapter must leave the runtime unstarted, so devices can still be split.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        detector = ActionDetector(get_preset("tiny").detector)
        optimizer = tf_keras.optimizers.Adam(1e-3)
        optimizer.build(detector.trainable_variables)
    data = synthetic_actions(8, 128, num_classes=3, seed=0)
    batches = iter(strategy.experimental_distribute_dataset(
        make_dataset(data, 4, (128, 128), max_boxes=2, max_faces=1, repeat=True)))

    @tf.function
    def step(batch):
        def replica(batch):
            with tf.GradientTape() as tape:
                total = detector.losses(batch["images"], batch["boxes"], batch["classes"])["total"]
                scaled = total / strategy.num_replicas_in_sync
            grads = tape.gradient(scaled, detector.trainable_variables)
            optimizer.apply_gradients(zip(grads, detector.trainable_variables))
            return total
        return strategy.reduce("MEAN", strategy.run(replica, args=(batch,)), axis=None)

    totals = [float(step(next(batches))) for _ in range(3)]
    assert np.isfinite(totals).all(), totals
    print("OK", strategy.num_replicas_in_sync, totals)
""")


@pytest.mark.slow
def test_mirrored_strategy_step_on_two_logical_cpus(tmp_path):
    # Logical devices must be set before TensorFlow starts: a fresh interpreter.
    script = tmp_path / "strategy.py"
    script.write_text(STRATEGY_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK 2" in result.stdout
