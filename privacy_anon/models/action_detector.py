"""A, the action detector: a thin adapter over TF Model Garden's Faster R-CNN.

This is the only module that imports Model Garden (`official.vision`) or `tf_keras`; the rest
of the package sees plain tensors in this project's conventions:

- images: float32 `(B, H, W, 3)` in `[-1, 1]`, H <= `image_height`, W <= `image_width`
  (the data pipeline letterboxes frames to exactly that size);
- boxes: float32 `[x1, y1, x2, y2]` in pixels (Model Garden uses `[y1, x1, y2, x2]`);
- classes: int32, 1-based action ids, 0 = background, -1 = padding.

The network is built from Model Garden's `fasterrcnn_resnetfpn_coco` experiment config, with
the sizes of `privacy_anon.config.ActionDetectorConfig` put in, random init; weights come only
from a checkpoint the user passes (`load_checkpoint`). The four losses are Model Garden's
(`official.vision.losses.maskrcnn_losses`), and the RPN targets come from its own
`RpnAnchorLabeler`, computed in the graph so that `losses` runs inside a `tf.function` train
step and under a `tf.distribute` strategy (call it in replica context, e.g. in `strategy.run`
or a Keras `train_step`: the box losses all-reduce their normalisers across replicas).

Example:
    >>> from privacy_anon.config import get_preset
    >>> detector = ActionDetector(get_preset("tiny").detector)
    >>> losses = detector.losses(images, boxes, classes)   # dict of scalar tensors
    >>> detections = detector.detect(images)                 # boxes in pixels, 1-based classes
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Sequence

import tensorflow as tf
import tf_keras
from official.core import exp_factory
from official.vision.configs import maskrcnn as _maskrcnn  # noqa: F401 - registers the experiment
from official.vision.losses import maskrcnn_losses
from official.vision.modeling import factory
from official.vision.ops import anchor as anchor_ops
from official.vision.ops import preprocess_ops

from privacy_anon.config import ActionDetectorConfig
from privacy_anon.errors import DataError

__all__ = ["ActionDetector", "LOSS_KEYS", "model_garden_config"]

EXPERIMENT = "fasterrcnn_resnetfpn_coco"
RESNET_DEPTHS = (10, 18, 26, 34, 50, 101, 152)
LOSS_KEYS = ("rpn_score", "rpn_box", "frcnn_cls", "frcnn_box", "total")

# ImageNet statistics in [0, 255], what Model Garden's input pipeline normalises with. Plain
# tuples: a tensor made at import would start TensorFlow's runtime before the caller can set
# up logical devices for a strategy.
_MEAN_RGB = tuple(preprocess_ops.MEAN_RGB)
_STDDEV_RGB = tuple(preprocess_ops.STDDEV_RGB)


def padded_size(config: ActionDetectorConfig) -> tuple[int, int]:
    """The network's input size: the frame size rounded up to a multiple of 2**max_level."""
    stride = 2 ** config.max_level
    return (math.ceil(config.image_height / stride) * stride,
            math.ceil(config.image_width / stride) * stride)


def _validate(config: ActionDetectorConfig) -> None:
    if config.backbone != "resnet":
        raise ValueError(f"detector.backbone must be 'resnet', received backbone={config.backbone!r}")
    if config.backbone_depth not in RESNET_DEPTHS:
        raise ValueError(f"detector.backbone_depth must be one of {RESNET_DEPTHS}, "
                         f"received backbone_depth={config.backbone_depth}")
    if config.backbone_width <= 0:
        raise ValueError(f"detector.backbone_width must be > 0, received {config.backbone_width}")
    if config.num_classes < 2:
        raise ValueError("detector.num_classes counts the background too and must be >= 2, "
                         f"received num_classes={config.num_classes}")
    # ResNet gives feature levels 2..5; the FPN adds coarser ones on top.
    if not 2 <= config.min_level <= config.max_level or config.min_level > 5:
        raise ValueError("detector levels need 2 <= min_level <= max_level and min_level <= 5, "
                         f"received min_level={config.min_level}, max_level={config.max_level}")
    if config.image_height < 2 ** config.max_level or config.image_width < 2 ** config.max_level:
        raise ValueError(f"detector image size {config.image_height}x{config.image_width} is "
                         f"smaller than the coarsest stride 2**max_level={2 ** config.max_level}")
    for name in ("rpn_head_filters", "fpn_filters", "head_filters", "head_fc_dims",
                 "num_proposals", "num_sampled_rois", "rpn_batch_size_per_im", "max_detections"):
        if getattr(config, name) < 1:
            raise ValueError(f"detector.{name} must be >= 1, received {getattr(config, name)}")
    if config.head_convs < 0:
        raise ValueError(f"detector.head_convs must be >= 0, received {config.head_convs}")


def model_garden_config(config: ActionDetectorConfig):
    """Model Garden's Faster R-CNN task config with this project's sizes put in.

    Args:
        config: the detector section of a `privacy_anon.config.Config`.

    Returns:
        An `official.vision.configs.maskrcnn.MaskRCNNTask` (no mask head, no init
        checkpoint: Model Garden's default would download ImageNet weights).
    """
    _validate(config)
    experiment = exp_factory.get_exp_config(EXPERIMENT)
    height, width = padded_size(config)
    proposals = config.num_proposals
    experiment.override({
        "task": {
            "init_checkpoint": None,
            "model": {
                "num_classes": config.num_classes,
                "input_size": [height, width, 3],
                "min_level": config.min_level,
                "max_level": config.max_level,
                "include_mask": False,
                "backbone": {"type": "resnet", "resnet": {
                    "model_id": config.backbone_depth,
                    "depth_multiplier": config.backbone_width}},
                "decoder": {"type": "fpn", "fpn": {"num_filters": config.fpn_filters}},
                "rpn_head": {"num_filters": config.rpn_head_filters},
                "detection_head": {"num_convs": config.head_convs,
                                   "num_filters": config.head_filters,
                                   "fc_dims": config.head_fc_dims},
                # Keep the experiment's 2:1 ratio of pre-NMS candidates to proposals.
                "roi_generator": {"pre_nms_top_k": 2 * proposals, "num_proposals": proposals,
                                  "test_pre_nms_top_k": 2 * proposals,
                                  "test_num_proposals": proposals},
                "roi_sampler": {"num_sampled_rois": config.num_sampled_rois},
                "detection_generator": {"max_num_detections": config.max_detections},
            },
            "train_data": {"parser": {"rpn_batch_size_per_im": config.rpn_batch_size_per_im}},
        }
    }, is_strict=True)
    return experiment.task


def _build_model(task_config) -> tf_keras.Model:
    """Builds the network as Model Garden's MaskRCNNTask.build_model does, random init."""
    model_config = task_config.model
    input_specs = tf_keras.layers.InputSpec(shape=[None] + list(model_config.input_size))
    model = factory.build_maskrcnn(input_specs=input_specs, model_config=model_config)
    # A symbolic call creates every variable now, so optimizers and checkpoints see them all.
    images = tf_keras.Input(model_config.input_size)
    image_shape = tf_keras.layers.Input([2])
    model(images, image_shape=image_shape, training=False)
    return model


def _xyxy_to_yxyx(boxes):
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.stack([y1, x1, y2, x2], axis=-1)


def _yxyx_to_xyxy(boxes):
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    return tf.stack([x1, y1, x2, y2], axis=-1)


class ActionDetector:
    """Faster R-CNN action detector A (Model Garden), in this project's conventions.

    A plain Python object, not a Keras layer: a Keras 3 model that holds it does not pick up
    its tf_keras variables, so the caller updates `trainable_variables` explicitly.
    Build it inside `strategy.scope()` to use it under a `tf.distribute` strategy.

    Args:
        config: `ActionDetectorConfig` (sizes, levels, number of classes incl. background).
            A non-empty `config.checkpoint` is loaded with `load_checkpoint`.
        class_names: optional names of the action classes 1..num_classes-1 (no background).

    Example:
        >>> detector = ActionDetector(get_preset("tiny").detector, ["phoning", "waving", "drinking"])
        >>> with tf.GradientTape() as tape:
        ...     total = detector.losses(images, boxes, classes)["total"]
        >>> grads = tape.gradient(total, detector.trainable_variables)
    """

    def __init__(self, config: ActionDetectorConfig | None = None,
                 class_names: Sequence[str] | None = None):
        self.config = config = config or ActionDetectorConfig()
        self.task_config = model_garden_config(config)
        self.input_height, self.input_width = padded_size(config)
        if class_names is not None:
            class_names = [str(name) for name in class_names]
            if len(class_names) != config.num_classes - 1:
                raise ValueError(
                    f"class_names must name the {config.num_classes - 1} action classes "
                    f"(num_classes={config.num_classes} counts the background), "
                    f"received {len(class_names)}: {class_names}")
        else:
            class_names = [f"class_{i}" for i in range(1, config.num_classes)]
        self._class_names = ["background"] + class_names

        self.model = _build_model(self.task_config)
        model_config = self.task_config.model
        anchor = model_config.anchor
        # Anchors depend only on the (fixed) input size: build them once, in Model Garden's order.
        self._anchors = anchor_ops.Anchor(
            min_level=model_config.min_level, max_level=model_config.max_level,
            num_scales=anchor.num_scales, aspect_ratios=anchor.aspect_ratios,
            anchor_size=anchor.anchor_size,
            image_size=(self.input_height, self.input_width)).multilevel_boxes
        parser = self.task_config.train_data.parser
        self._rpn_labeler = anchor_ops.RpnAnchorLabeler(
            match_threshold=parser.rpn_match_threshold,
            unmatched_threshold=parser.rpn_unmatched_threshold,
            rpn_batch_size_per_im=parser.rpn_batch_size_per_im,
            rpn_fg_fraction=parser.rpn_fg_fraction)
        loss_config = self.task_config.losses
        # Normalised by the anchors sampled per image, as the loss's docstring describes.
        self._rpn_score_loss = maskrcnn_losses.RpnScoreLoss(parser.rpn_batch_size_per_im)
        self._rpn_box_loss = maskrcnn_losses.RpnBoxLoss(loss_config.rpn_huber_loss_delta)
        self._frcnn_cls_loss = maskrcnn_losses.FastrcnnClassLoss()
        self._frcnn_box_loss = maskrcnn_losses.FastrcnnBoxLoss(
            loss_config.frcnn_huber_loss_delta, model_config.detection_head.class_agnostic_bbox_pred)
        # Model Garden uses (Sync)BatchNormalization, both with moving statistics.
        self._batch_norms = [layer for layer in self.model.submodules
                             if isinstance(layer, tf_keras.layers.Layer)
                             and hasattr(layer, "moving_mean") and hasattr(layer, "moving_variance")]
        if config.checkpoint:
            self.load_checkpoint(config.checkpoint)

    # ------------------------------------------------------------------ properties

    @property
    def class_names(self) -> list[str]:
        """Names by class id: index 0 is "background", 1.. are the action classes."""
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        """Number of classes including the background."""
        return self.config.num_classes

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        return self.model.trainable_variables

    @property
    def variables(self) -> list[tf.Variable]:
        return self.model.variables

    def count_params(self) -> int:
        """Number of scalars in all variables (trainable and batch-norm statistics)."""
        return int(sum(math.prod(v.shape) for v in self.model.variables))

    def checkpoint_items(self) -> dict:
        """Objects to put in a `tf.train.Checkpoint`, e.g. `tf.train.Checkpoint(M=m, **items)`."""
        return {"model": self.model}

    # ------------------------------------------------------------------ inputs

    def _prepare_images(self, images):
        """[-1, 1] RGB -> Model Garden's ImageNet-normalised input, padded to the input size."""
        images = tf.convert_to_tensor(images, tf.float32)
        static = images.shape
        if static.rank != 4 or static[-1] != 3:
            raise ValueError(f"images must have shape (B, H, W, 3), received {static}")
        if (static[1] is not None and static[1] > self.input_height) or (
                static[2] is not None and static[2] > self.input_width):
            raise ValueError(f"images of shape {static} are larger than the detector's input "
                             f"{self.input_height}x{self.input_width}")
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
        pixels = (images + 1.0) * 127.5
        normalised = (pixels - tf.constant(_MEAN_RGB)) / tf.constant(_STDDEV_RGB)
        # Padding bottom/right keeps pixel coordinates; zeros are the mean colour here.
        padded = tf.pad(normalised, [[0, 0], [0, self.input_height - height],
                                     [0, self.input_width - width], [0, 0]])
        padded = tf.ensure_shape(padded, [None, self.input_height, self.input_width, 3])
        image_shape = tf.cast(tf.tile([[height, width]], [shape[0], 1]), tf.float32)
        return padded, image_shape

    def _batched_anchors(self, batch_size):
        return {level: tf.tile(boxes[None], [batch_size, 1, 1, 1])
                for level, boxes in self._anchors.items()}

    def _ground_truth(self, boxes, classes):
        """Our padded xyxy boxes / classes -> Model Garden's yxyx with -1 padding."""
        boxes = tf.convert_to_tensor(boxes, tf.float32)
        classes = tf.cast(tf.convert_to_tensor(classes), tf.int32)
        valid = classes > 0
        gt_boxes = tf.where(valid[..., None], _xyxy_to_yxyx(boxes), -tf.ones_like(boxes))
        gt_classes = tf.where(valid, classes, -tf.ones_like(classes))
        return gt_boxes, gt_classes

    def _rpn_targets(self, gt_boxes, gt_classes):
        """RPN score / box targets per image from Model Garden's RpnAnchorLabeler, in-graph."""
        levels = list(self._anchors.keys())

        def label_one(args):
            boxes, classes = args
            valid = classes > 0
            score_targets, box_targets = self._rpn_labeler.label_anchors(
                self._anchors, tf.boolean_mask(boxes, valid),
                tf.cast(tf.boolean_mask(classes, valid)[:, None], tf.float32))
            return ([score_targets[level] for level in levels],
                    [box_targets[level] for level in levels])

        signature = ([tf.TensorSpec(self._anchors[level].shape[:2] + [self._anchors_per_location],
                                    tf.int32) for level in levels],
                     [tf.TensorSpec(self._anchors[level].shape, tf.float32) for level in levels])
        scores, deltas = tf.map_fn(label_one, (gt_boxes, gt_classes),
                                   fn_output_signature=signature)
        return dict(zip(levels, scores)), dict(zip(levels, deltas))

    @property
    def _anchors_per_location(self) -> int:
        anchor = self.task_config.model.anchor
        return anchor.num_scales * len(anchor.aspect_ratios)

    # ------------------------------------------------------------------ training

    def losses(self, images, boxes, classes, training: bool = True) -> dict[str, tf.Tensor]:
        """The four Faster R-CNN losses of the paper's L_det and their sum.

        Gradients flow from every loss back into `images` (the caller back-propagates L_det
        into M through the pasted faces).

        Args:
            images: float32 `(B, H, W, 3)` in `[-1, 1]`, H/W at most the config's image size.
            boxes: float32 `(B, N, 4)` `[x1, y1, x2, y2]` pixels; padding rows are ignored.
            classes: int `(B, N)` 1-based action ids; values <= 0 mark padding.
            training: False runs batch norm in inference mode (statistics unchanged), e.g.
                for a validation loss; the proposals are still sampled as in training.

        Returns:
            dict with scalar float32 tensors `rpn_score`, `rpn_box`, `frcnn_cls`,
            `frcnn_box` and `total` (their sum; no weight decay).
        """
        inputs, image_shape = self._prepare_images(images)
        gt_boxes, gt_classes = self._ground_truth(boxes, classes)
        score_targets, box_targets = self._rpn_targets(gt_boxes, gt_classes)
        # Model Garden's loss path (RoI sampling, targets) only runs with training=True, so
        # inference mode is had by holding the batch norms still instead.
        frozen = contextlib.nullcontext() if training else self._frozen_batch_norms()
        with frozen:
            outputs = self.model(inputs, image_shape=image_shape,
                                 anchor_boxes=self._batched_anchors(tf.shape(inputs)[0]),
                                 gt_boxes=gt_boxes, gt_classes=gt_classes, training=True)
        outputs = tf.nest.map_structure(lambda x: tf.cast(x, tf.float32), outputs)
        rpn_score = self._rpn_score_loss(outputs["rpn_scores"], score_targets)
        rpn_box = self._rpn_box_loss(outputs["rpn_boxes"], box_targets)
        frcnn_cls = self._frcnn_cls_loss(outputs["class_outputs"], outputs["class_targets"])
        frcnn_box = self._frcnn_box_loss(outputs["box_outputs"], outputs["class_targets"],
                                         outputs["box_targets"])
        return {"rpn_score": rpn_score, "rpn_box": rpn_box, "frcnn_cls": frcnn_cls,
                "frcnn_box": frcnn_box, "total": rpn_score + rpn_box + frcnn_cls + frcnn_box}

    @contextlib.contextmanager
    def _frozen_batch_norms(self):
        # tf_keras batch norm runs in inference mode when not trainable; this is read while
        # the call is traced, so a tf.function traced with training=False keeps it.
        states = [layer.trainable for layer in self._batch_norms]
        try:
            for layer in self._batch_norms:
                layer.trainable = False
            yield
        finally:
            for layer, state in zip(self._batch_norms, states):
                layer.trainable = state

    # ------------------------------------------------------------------ inference

    def detect(self, images) -> dict[str, tf.Tensor]:
        """Detections after Model Garden's per-class NMS.

        Args:
            images: float32 `(B, H, W, 3)` in `[-1, 1]`, H/W at most the config's image size.

        Returns:
            dict with `boxes` float32 `(B, max_detections, 4)` `[x1, y1, x2, y2]` pixels
            (clipped to the image), `scores` float32 `(B, max_detections)`, `classes` int32
            `(B, max_detections)` 1-based, and `num_detections` int32 `(B,)`; rows past
            `num_detections` are padding.
        """
        inputs, image_shape = self._prepare_images(images)
        outputs = self.model(inputs, image_shape=image_shape,
                             anchor_boxes=self._batched_anchors(tf.shape(inputs)[0]),
                             training=False)
        return {
            "boxes": _yxyx_to_xyxy(tf.cast(outputs["detection_boxes"], tf.float32)),
            "scores": tf.cast(outputs["detection_scores"], tf.float32),
            "classes": tf.cast(outputs["detection_classes"], tf.int32),
            "num_detections": tf.cast(outputs["num_detections"], tf.int32),
        }

    # ------------------------------------------------------------------ weights

    def load_checkpoint(self, path: str | os.PathLike, part: str = "auto") -> str:
        """Loads weights from a TensorFlow checkpoint the user provides.

        Understood layouts: a full detector saved through `checkpoint_items()` (also nested,
        e.g. `tf.train.Checkpoint(A=tf.train.Checkpoint(**items))`), a Model Garden detection
        checkpoint (`model/...`), or a backbone alone (`backbone/...`, as in Model Garden's
        ImageNet ResNet checkpoints). The backbone must match `backbone_depth`/`backbone_width`.

        Args:
            path: checkpoint prefix (`.../ckpt-1`) or a directory holding checkpoints.
            part: "auto" (full detector when present, else the backbone), "all", or "backbone".

        Returns:
            "all" or "backbone": what was loaded.

        Raises:
            DataError: no checkpoint there, or its variables do not fit this detector.
        """
        if part not in ("auto", "all", "backbone"):
            raise ValueError(f"part must be 'auto', 'all' or 'backbone', received part={part!r}")
        prefix = os.fspath(path)
        if tf.io.gfile.isdir(prefix):
            prefix = _checkpoint_in_directory(prefix)
        try:
            names = [name for name, _ in tf.train.list_variables(prefix)]
        except (tf.errors.OpError, ValueError):
            raise DataError(f"{prefix}: not a readable TensorFlow checkpoint") from None
        root, loaded = _find_detector_root(names, part)
        if root is None:
            raise DataError(f"{prefix}: holds no detector or backbone variables "
                            f"(looked for 'model/backbone/...' and 'backbone/...')")
        target = self.model if loaded == "all" else self.model.backbone
        checkpoint = _nested_checkpoint(root, target)
        try:
            status = checkpoint.read(prefix)
            status.expect_partial()
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as exc:
            reason = str(exc).splitlines()[0][:200]
            raise DataError(
                f"{prefix}: does not fit this detector (ResNet-{self.config.backbone_depth} "
                f"x{self.config.backbone_width}, {self.config.num_classes} classes): {reason}"
            ) from None
        return loaded


def _checkpoint_in_directory(directory: str) -> str:
    """The latest checkpoint of a CheckpointManager directory, else its only `*.index` prefix."""
    latest = tf.train.latest_checkpoint(directory)
    if latest is not None:
        return latest
    prefixes = sorted(name[: -len(".index")] for name in tf.io.gfile.listdir(directory)
                      if name.endswith(".index"))
    if len(prefixes) != 1:
        found = f"{len(prefixes)} checkpoints and no 'checkpoint' state file" if prefixes else \
            "no TensorFlow checkpoint"
        raise DataError(f"{directory}: {found} in this directory; pass a checkpoint prefix")
    return os.path.join(directory, prefixes[0])


def _find_detector_root(names: list[str], part: str) -> tuple[list[str] | None, str]:
    """The shortest object path under which a detector (or a backbone) was saved.

    Returns (path segments of the object to restore into, "all" | "backbone").
    """
    full_roots, backbone_roots = set(), set()
    for name in names:
        segments = name.split("/")
        for i, segment in enumerate(segments[:-1]):
            if segment == "backbone":
                backbone_roots.add(tuple(segments[:i + 1]))
            if segment == "rpn_head" and i > 0:
                full_roots.add(tuple(segments[:i]))
    # A full root must also hold its backbone (not just a Model Garden checkpoint_items entry).
    full_roots = {r for r in full_roots if r + ("backbone",) in backbone_roots}
    if part in ("auto", "all") and full_roots:
        return list(min(full_roots, key=len)), "all"
    if part == "all":
        return None, "all"
    if backbone_roots:
        return list(min(backbone_roots, key=len)), "backbone"
    return None, part


def _nested_checkpoint(segments: list[str], target) -> tf.train.Checkpoint:
    """tf.train.Checkpoint(a=tf.train.Checkpoint(b=target)) for segments ['a', 'b']."""
    obj = target
    for segment in reversed(segments[1:]):
        obj = tf.train.Checkpoint(**{segment: obj})
    return tf.train.Checkpoint(**{segments[0]: obj})
