"""PrivacyGAN: Algorithm 1 of the paper as a `keras.Model.train_step`, so `model.fit` works.

One model, four stages (`stage`):
- "classifier": pre-train D alone on original faces (there are no downloadable weights).
- "adversarial": Algorithm 1 without videos: the D step, then the M step.
- "joint": Algorithm 1: the D step, then the M+A step on faces and on video frames whose
  faces M has rewritten, with one tape so L_det's gradient reaches M through the paste.
- "finetune": phase 2: M and D frozen, A trained on modified frames.

Losses (DESIGN.md "Algorithm 1, precisely"; CE_m is D's margin softmax loss):
- D step: minimise CE_m(D(M(f)), id) + CE_m(D(f), id). M is not updated.
- M(+A) step: minimise L_det(A, v') - CE_m(D(M(f)), id) + lambda * |M(f) - f|_1,
  or with `random_label`, CE_m(D(M(f)), random id) in place of the ascent term.

A pretrained recognizer (`recognizer`, beyond the paper): frozen, it takes no step of its
own; M's loss gains a hinge on the cosine between its embeddings of M(f) and f.
Two more frozen networks guard what the push must keep: BlazeFace's face logit (`face_score`,
`lambda_face`: still a face) and FaceMesh's 468 points (`face_mesh`, `lambda_landmarks`:
features where they were, so pose and expression stay); FaceMesh's own face flag
(`lambda_face_flag`) is a second detector's "still a face".

Several adversaries (`extra_classifiers`, beyond the paper): D_1..D_K each take their own
D step (own optimizer, own jittered view); in the M step the adversarial and identity terms
are the mean over the K D's, so M must fool an ensemble, not the quirks of one weak D.

A batch is a dict: "faces" (B, S, S, 3) in [-1, 1], "identity" (B,), "align" (B, 2, 3)
(D-output-to-face matrices, see faces/geometry.py); for "joint"/"finetune" also "frames"
(B', H, W, 3) in [-1, 1], "face_boxes" (B', F, 4), "num_faces" (B',), "boxes" (B', N, 4)
and "classes" (B', N) for A.

Under a `tf.distribute` strategy each replica divides its summed losses by the global
batch size, so gradients add up to the mean over the global batch.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from privacy_anon.config import CHOICES
from privacy_anon.faces import geometry

STAGES = ("classifier", "adversarial", "joint", "finetune")
ADV_LOSSES = ("ascent", "nonsaturating", "uniform")
RECOGNIZER_REFERENCES = CHOICES["train.recognizer_reference"]
RECOGNIZERS_PER_FACE = CHOICES["train.recognizers_per_face"]
# inter-ocular distance / width of D's aligned crop (SphereFace's template)
_TEMPLATE_IOD = float((geometry.SPHEREFACE_TEMPLATE[1, 0] - geometry.SPHEREFACE_TEMPLATE[0, 0])
                      / geometry.TEMPLATE_SIZE[1])


def _across_workers() -> bool:
    """True under a MultiWorkerMirroredStrategy that spans more than this process."""
    strategy = tf.distribute.get_strategy()
    in_mode = getattr(strategy.extended, "_in_multi_worker_mode", None)
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(in_mode and in_mode())


def _degrade(images, noise: float, blur: float):
    """Each image through its own draw of a mild degradation: a Gaussian blur of random
    strength (a mix, weight U(0, 1), of the image and its blur at sigma `blur` pixels) and
    Gaussian noise of std `noise` (on [-1, 1] pixels). 0 and 0 return `images` as is."""
    if blur > 0:
        radius = max(1, int(math.ceil(2.0 * blur)))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / blur) ** 2)
        taps = tf.constant(taps / taps.sum(), tf.float32)
        channels = images.shape[-1]
        row = tf.tile(tf.reshape(taps, [1, -1, 1, 1]), [1, 1, channels, 1])
        col = tf.tile(tf.reshape(taps, [-1, 1, 1, 1]), [1, 1, channels, 1])
        pad = [[0, 0], [radius, radius], [radius, radius], [0, 0]]
        blurred = tf.pad(images, pad, mode="REFLECT")
        blurred = tf.nn.depthwise_conv2d(blurred, row, [1, 1, 1, 1], "VALID")
        blurred = tf.nn.depthwise_conv2d(blurred, col, [1, 1, 1, 1], "VALID")
        mix = tf.random.uniform([tf.shape(images)[0], 1, 1, 1])
        images = images + mix * (blurred - images)
    if noise > 0:
        images = images + tf.random.normal(tf.shape(images), stddev=noise)
    return images


def _mean(tensors):
    """The element-wise mean of a list of tensors; one tensor is returned as is (K = 1: the
    computation stays exactly the single-D one)."""
    return tensors[0] if len(tensors) == 1 else tf.add_n(tensors) / float(len(tensors))


class RewriteCounts(tf.Module):
    """How many training frames had faces and how many face boxes M rewrote (joint/finetune).

    Plain `tf.Variable`s (not Keras metrics, which reset every epoch), summed over replicas
    when read, and kept in the run's checkpoint so the totals survive a resume.
    """

    def __init__(self):
        super().__init__(name="rewrite_counts")
        kw = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                  aggregation=tf.VariableAggregation.SUM)
        self.frames = tf.Variable(0.0, name="frames", **kw)
        self.frames_with_faces = tf.Variable(0.0, name="frames_with_faces", **kw)
        self.faces = tf.Variable(0.0, name="faces", **kw)

    def add(self, num_faces):
        num_faces = tf.cast(num_faces, tf.float32)
        self.frames.assign_add(tf.cast(tf.size(num_faces), tf.float32))
        self.frames_with_faces.assign_add(tf.reduce_sum(tf.cast(num_faces > 0, tf.float32)))
        self.faces.assign_add(tf.reduce_sum(num_faces))

    def result(self) -> dict:
        return {"trained_frames": int(self.frames.numpy()),
                "trained_frames_with_faces": int(self.frames_with_faces.numpy()),
                "face_boxes_rewritten": int(self.faces.numpy())}


class _ReferenceStats(tf.Module):
    """Running sums of each recognizer's embeddings of the original faces, per training
    identity and over all faces (`recognizer_reference: "person"`). Plain variables summed
    over replicas, kept in the run's checkpoint; the recognizers are frozen, so a running
    mean over jittered views is a fair mean."""

    def __init__(self, dims, num_classes: int):
        super().__init__(name="recognizer_stats")
        kw = dict(trainable=False, aggregation=tf.VariableAggregation.SUM)
        self.person_sums = [tf.Variable(tf.zeros([num_classes, d]), **kw) for d in dims]
        self.person_counts = tf.Variable(tf.zeros([len(dims), num_classes]), **kw)

    def update(self, k: int, embeddings, labels):
        """Adds recognizer `k`'s `embeddings` of faces labelled `labels`; returns (mean over
        all faces so far, (B, D) the mean of each face's person so far)."""
        labels = tf.cast(labels, tf.int32)
        n = self.person_sums[k].shape[0]
        self.person_sums[k].assign_add(tf.math.unsorted_segment_sum(embeddings, labels, n))
        counts = tf.math.unsorted_segment_sum(tf.ones_like(labels, tf.float32), labels, n)
        self.person_counts.assign_add(tf.tensor_scatter_nd_add(
            tf.zeros_like(self.person_counts), [[k]], counts[None]))
        sums, seen = self.person_sums[k], self.person_counts[k]
        centre = tf.reduce_sum(sums, 0) / tf.maximum(tf.reduce_sum(seen), 1.0)
        person = tf.gather(sums, labels) / tf.maximum(tf.gather(seen, labels), 1.0)[:, None]
        return centre, person


@keras.saving.register_keras_serializable(package="privacy_anon")
class PrivacyGAN(keras.Model):
    """M, D (and optionally A) and the alternating updates of Algorithm 1.

    Args:
        modifier: M, a `FaceModifier`.
        classifier: D, a `FaceClassifier`.
        detector: A, an `ActionDetector` (models/action_detector.py), for "joint"/"finetune".
        stage: one of "classifier", "adversarial", "joint", "finetune".
        lambda_l1: weight of the L1 photorealism term (paper eq. 3).
        adv_weight: weight of the adversarial term in the M step.
        random_label: ablation: fool D towards a random identity instead of gradient ascent.
        face_enlarge: video face boxes are enlarged by this factor before M (1.6).
        det_weight: weight of L_det in the M+A step.
        adv_loss: "ascent" (the paper: -CE_m(D(M(f)), id)) or "nonsaturating"
            (-log(1 - p_D(id | M(f))): the same optimum, but its gradient does not vanish
            when D is confident, which is exactly when M needs it), or "uniform" (the
            cross-entropy of D's prediction to the uniform distribution: M is pushed towards
            "nobody" rather than towards another identity, which D could learn to follow).
        adv_cap: for "ascent", if > 0, the ascent term is -min(CE_m, adv_cap): M stops pushing a face once
            D's loss on it passes the cap, and the L1 term pulls it back. 0 is the paper's
            unbounded ascent, which on its own lets M wreck the whole face (CE grows without
            limit while L1 is bounded).
        view_jitter: if > 0, D sees every face (in pre-training, in its own step and in M's)
            through a random shift, scale, turn and mirror of the alignment
            (`geometry.jitter_alignment`), so M cannot win with a pattern that only works
            pixel-exactly. 0 in the paper.
        view_erase: if > 0, the probability that D's view of a face (in pre-training, in its
            own step and in M's) has a random rectangle of 20-50% of its sides erased
            (`geometry.erase_patches`): D must read identity from the whole face, so M must
            change the whole face rather than one spot. 0 in the paper.
        lambda_outside: extra L1 weight on M's edits outside the window D aligns (hair,
            background, neck): no recognizer reads identity there, so edits there only cost
            realism. 0 in the paper.
        realism_focus: the critic's and M's realism losses weigh each patch by how much M
            changed it (the per-face mean, stop-gradient) instead of equally: most of a
            crop is left untouched, and a plain mean over patches let R ignore the few it
            should judge (its loss stayed near 2 log 2). False in the paper (no critic).
        extra_classifiers: D_2..D_K beside `classifier` (D_1), e.g. D's pre-trained from
            other seeds: in "adversarial"/"joint" each D takes its own D step (its own
            optimizer and its own draw of the jittered view) and M's adversarial and identity
            terms are the mean over all K D's (each through its own view draw), which makes
            M's edit transfer better to recognizers it never saw. The logged `loss_d`,
            `d_acc_original` and `d_acc_modified` are means over the K D's. Not allowed in
            the "classifier" stage (pre-train each D on its own). () is the paper: one D.
        recognizer: a pretrained, frozen recognizer (`models.recognizer.FrozenRecognizer`)
            for M's recognizer term, or a list of them (the term is then their mean: an
            edit that moves several unrelated recognizers transfers better to an unseen
            one); None in the paper.
        lambda_recognizer: weight of a hinge on the cosine between the recognizer's
            embeddings of M(f) and f (each through its own jittered view): M must move what a
            recognizer trained on half a million photos compares, not only what D learned
            from the training photos. 0 in the paper.
        recognizer_margin: no push once that cosine is at or below this (0: as unrelated as
            two strangers' faces).
        recognizer_temperature: with several recognizers, 0 takes the mean of their hinges;
            > 0 a soft maximum at this temperature (tau log mean exp(h / tau)), so each face's
            push goes mostly to the recognizer that still knows it: under the mean the one
            easiest to fool soaked up M's edit ("Thirteenth pass"). Equal hinges give the
            same value either way. 0 in the paper (no recognizer).
        recognizers_per_face: with several recognizers, "all" judges every face by each of
            them; "one" judges face i of a batch by recognizer i mod K only (its hinge is that
            face's term), so a step runs each recognizer on a K-th of the faces: the frozen
            recognizers are most of a step's time, and the batch is shuffled, so every face
            meets each of them over the epochs. Needs `recognizer_temperature` 0.
        recognizer_edit_scale: the recognizers judge f + s (M(f) - f), s of M's edit,
            while every other term judges M(f) itself: with s < 1 the identity push is
            measured near the photo, where unrelated recognizers' gradients agree more, and
            M(f) must go 1/s times as far for the same hinge. The term's weight is
            `lambda_recognizer` / s, so M's first push (at the identity) is as strong as at
            s = 1: measured, at s = 0.625 without it M was still the identity at step 100.
            1 in the paper (no recognizer).
        recognizer_noise, recognizer_blur: the recognizers see M(f) through a random mild
            degradation (`_degrade`: Gaussian noise of this std on [-1, 1] pixels, a blur
            of random strength up to sigma `recognizer_blur` pixels), so an edit that fools
            them only through fine pixel patterns, which int8 rounding, a camera or another
            recognizer need not keep, earns less. 0 in the paper (no recognizer).
        lambda_saturation: weight of |mean HSV saturation of M(f) - of f| per face: the
            colour statistic the yardstick reports, which a brightness-only edit moves and
            the YCbCr chroma term does not see. 0 in the paper.
        lambda_ssim: weight of 1 - SSIM(M(f), f) per face (`_ssim`): fidelity as the
            yardstick measures it, local structure, where L1 charges every pixel's change
            alike. 0 in the paper.
        warmup_steps: M's image terms (L1, SSIM, outside, colour, low-pass, realism) and the
            face-flag hinge grow linearly from 0 to their weights over M's first this many
            steps. M starts as the identity, where their pull is constant and the privacy
            terms' gradient is weak: measured, a `mobile` M spent 100-150 of its 300 steps
            there. At full weight from step 1, the flag hinge alone held a 120-step M near
            the identity (dlib lost 4.5 points, ramped 17.7; RESULTS.md, "Twenty-fifth
            pass"). 0 in the paper. `shorten_warmup` may shorten it while M trains.
        train_classifier: False when no term of M reads D (adv_weight and lambda_identity
            0, one D): D then takes no step and logs nothing, and only frames M's views
            (its aligned window). True in the paper, where D is M's adversary.

    Example:
        >>> gan = PrivacyGAN(modifier, classifier, stage="adversarial")
        >>> gan.compile(m_optimizer=keras.optimizers.Adam(3e-4, beta_1=0.5),
        ...             d_optimizer=keras.optimizers.Adam(3e-4, beta_1=0.5))
        >>> gan.fit(face_dataset, epochs=1, steps_per_epoch=100)
    """

    def __init__(self, modifier, classifier, detector=None, stage: str = "adversarial",
                 lambda_l1: float = 0.1, adv_weight: float = 1.0, random_label: bool = False,
                 face_enlarge: float = 1.6, det_weight: float = 1.0, adv_loss: str = "ascent",
                 adv_cap: float = 0.0, lambda_identity: float = 0.0,
                 identity_margin: float = 0.0, lambda_color: float = 0.0,
                 lambda_lowpass: float = 0.0, critic=None, lambda_realism: float = 0.0,
                 view_jitter: float = 0.0, view_erase: float = 0.0, lambda_outside: float = 0.0,
                 extra_classifiers=(), realism_focus: bool = False, recognizer=None,
                 warmup_steps: int = 0,
                 lambda_recognizer: float = 0.0, recognizer_margin: float = 0.0,
                 recognizer_temperature: float = 0.0, lambda_saturation: float = 0.0,
                 lambda_ssim: float = 0.0, recognizer_edit_scale: float = 1.0,
                 recognizer_reference: str = "photo", recognizers_per_face: str = "all",
                 recognizer_noise: float = 0.0,
                 recognizer_blur: float = 0.0, face_score=None, lambda_face: float = 0.0,
                 face_mesh=None, lambda_landmarks: float = 0.0, lambda_face_flag: float = 0.0,
                 train_classifier: bool = True, **kwargs):
        super().__init__(**kwargs)
        if stage not in STAGES:
            raise ValueError(f"`stage` must be one of {STAGES}, received stage={stage!r}")
        if extra_classifiers and stage == "classifier":
            raise ValueError("stage='classifier' trains one D: pre-train each D on its own")
        if stage in ("joint", "finetune") and detector is None:
            raise ValueError(f"stage={stage!r} needs an action detector")
        if not train_classifier:
            reads = {k: v for k, v in (("adv_weight", adv_weight), ("lambda_identity", lambda_identity),
                                       ("extra_classifiers", len(extra_classifiers))) if v}
            if stage == "classifier" or reads:
                raise ValueError("train_classifier=False leaves D untrained: "
                                 + (f"stage={stage!r} trains D" if stage == "classifier"
                                    else f"M still reads it through {reads}"))
        if adv_loss not in ADV_LOSSES:
            raise ValueError(f"`adv_loss` must be one of {ADV_LOSSES}, received {adv_loss!r}")
        weights = {"lambda_l1": lambda_l1, "adv_weight": adv_weight, "det_weight": det_weight,
                   "adv_cap": adv_cap, "lambda_identity": lambda_identity,
                   "lambda_color": lambda_color, "lambda_lowpass": lambda_lowpass,
                   "lambda_realism": lambda_realism, "view_jitter": view_jitter,
                   "lambda_outside": lambda_outside, "lambda_recognizer": lambda_recognizer,
                   "lambda_landmarks": lambda_landmarks, "lambda_face_flag": lambda_face_flag,
                   "recognizer_temperature": recognizer_temperature,
                   "lambda_saturation": lambda_saturation, "lambda_ssim": lambda_ssim}
        negative = {k: v for k, v in weights.items() if v < 0}
        if negative:
            raise ValueError(f"loss weights must be >= 0, received {negative}")
        if not -1.0 <= identity_margin < 1.0:
            raise ValueError(f"`identity_margin` must be in [-1, 1), received {identity_margin}")
        if lambda_recognizer > 0 and recognizer is None:
            raise ValueError(f"lambda_recognizer={lambda_recognizer} needs a recognizer")
        if not -1.0 <= recognizer_margin < 1.0:
            raise ValueError(f"`recognizer_margin` must be in [-1, 1), received {recognizer_margin}")
        self.modifier = modifier
        self.classifier = classifier
        self.extra_classifiers = list(extra_classifiers)
        # False: D is only the frame of M's views (its aligned window), never trained or asked
        self.train_classifier = bool(train_classifier)
        self.detector = detector
        self.stage = stage
        self.lambda_l1 = float(lambda_l1)
        self.adv_weight = float(adv_weight)
        self.random_label = bool(random_label)
        self.face_enlarge = float(face_enlarge)
        self.det_weight = float(det_weight)
        self.adv_loss = adv_loss
        self.adv_cap = float(adv_cap)
        self.lambda_identity = float(lambda_identity)
        self.identity_margin = float(identity_margin)
        self.lambda_color = float(lambda_color)
        self.lambda_lowpass = float(lambda_lowpass)
        if lambda_realism > 0 and critic is None:
            raise ValueError(f"lambda_realism={lambda_realism} needs a realism critic")
        self.critic = critic
        self.lambda_realism = float(lambda_realism)
        self.view_jitter = float(view_jitter)
        if not 0.0 <= view_erase <= 1.0:
            raise ValueError(f"`view_erase` must be in [0, 1], received {view_erase}")
        self.view_erase = float(view_erase)
        self.lambda_outside = float(lambda_outside)
        self.realism_focus = bool(realism_focus)
        self.recognizers = ([] if recognizer is None else
                            list(recognizer) if isinstance(recognizer, (list, tuple)) else [recognizer])
        self.lambda_recognizer = float(lambda_recognizer)
        self.recognizer_margin = float(recognizer_margin)
        self.recognizer_temperature = float(recognizer_temperature)
        if not 0.0 < recognizer_edit_scale <= 1.0:
            raise ValueError("`recognizer_edit_scale` must be in (0, 1], received "
                             f"{recognizer_edit_scale}")
        self.recognizer_edit_scale = float(recognizer_edit_scale)
        if recognizer_noise < 0 or recognizer_blur < 0:
            raise ValueError("`recognizer_noise` and `recognizer_blur` must be >= 0, received "
                             f"{recognizer_noise} and {recognizer_blur}")
        self.recognizer_noise = float(recognizer_noise)
        self.recognizer_blur = float(recognizer_blur)
        if recognizer_reference not in RECOGNIZER_REFERENCES:
            raise ValueError(f"`recognizer_reference` must be one of {RECOGNIZER_REFERENCES}, "
                             f"received {recognizer_reference!r}")
        self.recognizer_reference = recognizer_reference
        if recognizers_per_face not in RECOGNIZERS_PER_FACE:
            raise ValueError(f"`recognizers_per_face` must be one of {RECOGNIZERS_PER_FACE}, "
                             f"received {recognizers_per_face!r}")
        if recognizers_per_face == "one" and recognizer_temperature > 0:
            raise ValueError('recognizers_per_face="one" judges each face by one recognizer: '
                             "there is no maximum over them to soften (recognizer_temperature 0)")
        self.recognizers_per_face = recognizers_per_face
        # "person": per recognizer, running sums of the originals' embeddings per training
        # identity and over all faces (a checkpoint keeps them; `recognizer_stats`)
        self.recognizer_stats = None
        if recognizer_reference == "person" and self.recognizers:
            dims = [int(r(tf.zeros([1, r.input_size, r.input_size, 3])).shape[-1])
                    for r in self.recognizers]
            self.recognizer_stats = _ReferenceStats(dims, classifier.num_classes)
        self.lambda_saturation = float(lambda_saturation)
        self.lambda_ssim = float(lambda_ssim)
        if lambda_face > 0 and face_score is None:
            raise ValueError(f"lambda_face={lambda_face} needs a face_score")
        self.face_score, self.lambda_face = face_score, float(lambda_face)
        if lambda_landmarks > 0 and face_mesh is None:
            raise ValueError(f"lambda_landmarks={lambda_landmarks} needs a face_mesh")
        if lambda_face_flag > 0 and face_mesh is None:
            raise ValueError(f"lambda_face_flag={lambda_face_flag} needs a face_mesh")
        self.face_mesh, self.lambda_landmarks = face_mesh, float(lambda_landmarks)
        self.lambda_face_flag = float(lambda_face_flag)
        if int(warmup_steps) != warmup_steps or warmup_steps < 0:
            raise ValueError(f"`warmup_steps` must be an integer >= 0, received {warmup_steps}")
        self.warmup_steps = int(warmup_steps)
        # the warm-up's length in force: a variable, so a training clock can shorten it
        # (`shorten_warmup`) without the step being traced again
        self.warmup_length = tf.Variable(float(max(self.warmup_steps, 1)), trainable=False,
                                         name="warmup_length")
        # Under a strategy Keras would otherwise call `call()` on the data dict to build.
        self.built = True
        names = {
            "classifier": ("loss_d", "d_acc_original"),
            "adversarial": ("loss_d", "loss_adv", "loss_l1", "loss_ssim", "loss_identity",
                            "loss_color", "loss_lowpass", "loss_saturation", "loss_realism",
                            "loss_critic", "loss_recognizer",
                            "loss_face", "loss_landmarks", "loss_face_flag", "d_acc_original",
                            "d_acc_modified"),
            "joint": ("loss_d", "loss_adv", "loss_l1", "loss_ssim", "loss_identity",
                      "loss_color", "loss_lowpass", "loss_saturation", "loss_realism",
                      "loss_critic", "loss_recognizer",
                      "loss_face", "loss_landmarks", "loss_face_flag", "loss_det",
                      "d_acc_original", "d_acc_modified"),
            "finetune": ("loss_det",),
        }[stage]
        if not self.train_classifier:  # an untrained D's losses and accuracies mean nothing
            names = tuple(n for n in names
                          if n not in ("loss_d", "loss_adv", "d_acc_original", "d_acc_modified"))
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.rewrite_counts = None
        if stage in ("joint", "finetune"):
            self.rewrite_counts = RewriteCounts()


    # -- keras plumbing ---------------------------------------------------------------

    def compile(self, m_optimizer=None, d_optimizer=None, a_optimizer=None, r_optimizer=None,
                **kwargs):
        """Optimizers for M, D and A; the ones a stage does not use may be None.

        M's optimizer goes to `super().compile` so `self.optimizer` is the one that steps
        (Keras 3 silently makes an unused RMSprop otherwise); in "classifier" and "finetune"
        stages the optimizer that steps is D's or A's.

        With several D's, `d_optimizer` is one optimizer per D (a list, D_1's first) or a
        single one, which D_1 uses and D_2..D_K get fresh copies of (same config).
        """
        if isinstance(d_optimizer, (list, tuple)):
            if len(d_optimizer) != len(self.classifiers):
                raise ValueError(f"{len(d_optimizer)} D optimizers for {len(self.classifiers)} D's")
            d_optimizers = list(d_optimizer)
            d_optimizer = d_optimizers[0]
        else:
            d_optimizers = [d_optimizer] + [
                None if d_optimizer is None else d_optimizer.__class__.from_config(d_optimizer.get_config())
                for _ in self.extra_classifiers]
        d_game = (d_optimizer,) if self.train_classifier else ()  # an untrained D needs none
        needed = {"classifier": (d_optimizer,), "adversarial": (m_optimizer, *d_game),
                  "joint": (m_optimizer, *d_game, a_optimizer), "finetune": (a_optimizer,)}
        if any(opt is None for opt in needed[self.stage]):
            raise ValueError(f"stage {self.stage!r} needs optimizers for "
                             f"{ {'classifier': 'D', 'adversarial': 'M and D', 'joint': 'M, D and A', 'finetune': 'A'}[self.stage] }")
        main = {"classifier": d_optimizer, "finetune": a_optimizer}.get(self.stage, m_optimizer)
        kwargs.setdefault("jit_compile", False)  # Model Garden's NMS does not compile with XLA
        super().compile(optimizer=main, **kwargs)
        self.m_optimizer = m_optimizer
        self.d_optimizer = d_optimizer
        self.d_optimizers = d_optimizers
        self.a_optimizer = a_optimizer
        self.r_optimizer = r_optimizer
        if self.critic is not None and r_optimizer is None and self.stage in ("adversarial", "joint"):
            raise ValueError("a realism critic needs its optimizer (r_optimizer)")

    def build_optimizers(self):
        """Creates the optimizers' slots now (call inside `strategy.scope()` before `fit`)."""
        pairs = [(self.m_optimizer, self.modifier.trainable_variables)]
        pairs += [(opt, d.trainable_variables) for opt, d in zip(self.d_optimizers, self.classifiers)]
        if self.detector is not None:
            pairs.append((self.a_optimizer, self.detector.trainable_variables))
        if self.critic is not None:
            pairs.append((self.r_optimizer, self.critic.trainable_variables))
        for opt, variables in pairs:
            if opt is not None and not opt.built:
                opt.build(variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3 (TF backend, model made under a strategy) all-reduces one input batch
        # here just to build the model; MultiWorkerMirroredStrategy cannot reduce a dict of
        # PerReplica batches. M, D, A and their optimizers are built already: skip it then.
        if all(layer.built for layer in self._flatten_layers()):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @property
    def classifiers(self) -> list:
        """D_1..D_K: `classifier`, then `extra_classifiers`."""
        return [self.classifier, *self.extra_classifiers]

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, faces, training=False):
        """The modifier: M(faces)."""
        return self.modifier(faces, training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "modifier": keras.saving.serialize_keras_object(self.modifier),
            "classifier": keras.saving.serialize_keras_object(self.classifier),
            "stage": self.stage,
            "lambda_l1": self.lambda_l1,
            "adv_weight": self.adv_weight,
            "random_label": self.random_label,
            "face_enlarge": self.face_enlarge,
            "det_weight": self.det_weight,
            "adv_loss": self.adv_loss,
            "adv_cap": self.adv_cap,
            "lambda_identity": self.lambda_identity,
            "identity_margin": self.identity_margin,
            "lambda_color": self.lambda_color,
            "lambda_lowpass": self.lambda_lowpass,
            "lambda_realism": self.lambda_realism,
            # the critic's architecture: its weights, like M's and D's, live in checkpoints
            "critic": (keras.saving.serialize_keras_object(self.critic)
                       if self.critic is not None else None),
            "view_jitter": self.view_jitter,
            "view_erase": self.view_erase,
            "lambda_outside": self.lambda_outside,
            "realism_focus": self.realism_focus,
            "recognizer": "+".join(r.name for r in self.recognizers) or None,
            "recognizer_zoom": self.recognizers[0].zoom if self.recognizers else None,
            "recognizer_sizes": [r.input_size for r in self.recognizers],
            "recognizer_weights": self.recognizers[-1].weights if self.recognizers else "",
            "lambda_recognizer": self.lambda_recognizer,
            "recognizer_margin": self.recognizer_margin,
            "recognizer_temperature": self.recognizer_temperature,
            "recognizer_edit_scale": self.recognizer_edit_scale,
            "recognizer_reference": self.recognizer_reference,
            "recognizers_per_face": self.recognizers_per_face,
            "recognizer_noise": self.recognizer_noise,
            "recognizer_blur": self.recognizer_blur,
            "lambda_saturation": self.lambda_saturation,
            "lambda_ssim": self.lambda_ssim,
            "lambda_face": self.lambda_face,
            "face_score_weights": self.face_score.weights if self.face_score else "",
            "lambda_landmarks": self.lambda_landmarks,
            "lambda_face_flag": self.lambda_face_flag,
            "train_classifier": self.train_classifier,
            "face_mesh_weights": self.face_mesh.weights if self.face_mesh else "",
            "warmup_steps": self.warmup_steps,
            "extra_classifiers": [keras.saving.serialize_keras_object(d)
                                  for d in self.extra_classifiers],
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["modifier"] = keras.saving.deserialize_keras_object(config["modifier"])
        config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
        config["extra_classifiers"] = [keras.saving.deserialize_keras_object(d)
                                       for d in config.get("extra_classifiers", ())]
        if config.get("critic") is not None:
            import privacy_anon.models.realism  # noqa: F401  (registers PatchCritic)

            config["critic"] = keras.saving.deserialize_keras_object(config["critic"])
        zoom = config.pop("recognizer_zoom", None)
        weights = config.pop("recognizer_weights", "")
        sizes = config.pop("recognizer_sizes", None)
        if config.get("recognizer"):
            from privacy_anon.models.recognizer import FrozenRecognizer, recognizer_names

            names = recognizer_names(config["recognizer"])
            config["recognizer"] = [FrozenRecognizer(name, zoom=zoom or 1.3, weights=weights,
                                                     size=size)
                                    for name, size in zip(names, sizes or [0] * len(names))]
        face_weights = config.pop("face_score_weights", "")
        if config.get("lambda_face"):
            from privacy_anon.models.recognizer import FrozenFaceScore

            config["face_score"] = FrozenFaceScore(face_weights)
        mesh_weights = config.pop("face_mesh_weights", "")
        if config.get("lambda_landmarks") or config.get("lambda_face_flag"):
            from privacy_anon.models.recognizer import FrozenFaceMesh

            config["face_mesh"] = FrozenFaceMesh(mesh_weights)
        return cls(**config)

    # -- losses -------------------------------------------------------------------------

    def _global_mean(self, per_example):
        """Sum over this replica / global batch: replicas' gradients add up to the mean."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        n = tf.cast(tf.shape(per_example)[0] * replicas, tf.float32)
        return tf.reduce_sum(per_example) / n

    def _views(self, align, d=None):
        """The alignment D (`d`, default D_1) sees this step: jittered when `view_jitter` > 0.
        Every call is a fresh draw."""
        d = self.classifier if d is None else d
        return geometry.jitter_alignment(align, d.input_height, d.input_width, self.view_jitter)

    def _erase(self, aligned, seed=None):
        """D's aligned view with a random region erased (`view_erase` > 0)."""
        return geometry.erase_patches(aligned, self.view_erase, seed=seed)

    def _d_outputs(self, faces, align, labels, training, d=None):
        d = self.classifier if d is None else d
        aligned = self._erase(geometry.align_faces(faces, align, d.input_height, d.input_width))
        emb = d(aligned, training=training)
        margin = d.head.margin_logits(emb, labels)
        ce = keras.losses.sparse_categorical_crossentropy(labels, margin, from_logits=True)
        logits = d.head(emb)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                   tf.cast(labels, tf.int32)), tf.float32)
        return ce, correct, logits

    def _adv_term(self, modified, align, labels, d=None):
        """M's per-face adversarial loss (to minimise) against D `d` (default D_1)."""
        d = self.classifier if d is None else d
        if self.random_label:
            n = d.num_classes
            # A random identity other than the true one (a draw of its own per D).
            target = (tf.cast(labels, tf.int32)
                      + tf.random.uniform(tf.shape(labels), 1, n, dtype=tf.int32)) % n
            return self._d_outputs(modified, align, target, training=False, d=d)[0]
        ce, _, logits = self._d_outputs(modified, align, labels, training=False, d=d)
        if self.adv_loss == "uniform":
            # Cross-entropy to the uniform distribution over identities, minus its minimum
            # log(N): 0 exactly when D cannot tell who it is.
            n = tf.cast(tf.shape(logits)[-1], tf.float32)
            return -tf.reduce_mean(tf.nn.log_softmax(logits), -1) - tf.math.log(n)
        if self.adv_loss == "nonsaturating":
            # -log(1 - p_true) = logsumexp(all logits) - logsumexp(logits of other ids).
            onehot = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(logits)[-1])
            others = logits - 1e9 * onehot
            return tf.reduce_logsumexp(logits, -1) - tf.reduce_logsumexp(others, -1)
        return -tf.minimum(ce, self.adv_cap) if self.adv_cap > 0 else -ce

    def _modified_frames(self, data, training):
        self.rewrite_counts.add(data["num_faces"])
        return geometry.modify_frames(data["frames"], data["face_boxes"], data["num_faces"],
                                      self.modifier, self.modifier.input_size, self.face_enlarge,
                                      training=training)

    def _det_loss(self, frames, data):
        losses = self.detector.losses(frames, data["boxes"], data["classes"], training=True)
        return losses["total"] / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync,
                                         tf.float32)

    # -- Algorithm 1 --------------------------------------------------------------------

    def train_step(self, data):
        faces, labels, align = data.get("faces"), data.get("identity"), data.get("align")
        if self.stage == "classifier":
            self._classifier_step(faces, labels, align)
        elif self.stage == "finetune":
            self._finetune_step(data)
        else:
            if self.train_classifier:
                self._d_step(faces, labels, align)
            elif self.critic is not None:
                self._critic_step(faces, tf.stop_gradient(self.modifier(faces, training=False)))
            self._m_step(faces, labels, align, data if self.stage == "joint" else None,
                         data.get("recognizer_originals"))
        logs = {name: t.result() for name, t in self.trackers.items()}
        if _across_workers():
            # Keras averages logs over workers with reduce(MEAN, axis=0): give it an axis
            logs = {name: tf.reshape(v, [1]) for name, v in logs.items()}
        return logs

    def _classifier_step(self, faces, labels, align):
        align = self._views(align)  # the same views as in the game: D pre-trained on them
        with tf.GradientTape() as tape:
            ce, correct, _ = self._d_outputs(faces, align, labels, training=True)
            loss = self._global_mean(ce)
        variables = self.classifier.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.classifier.head.advance()
        self.trackers["loss_d"].update_state(tf.reduce_mean(ce))
        self.trackers["d_acc_original"].update_state(correct)

    def _d_step(self, faces, labels, align):
        """Line 3: arg max_D L_adv, i.e. D learns identities on originals and M(f); with
        several D's each takes this step with its own optimizer and its own view draw."""
        modified = tf.stop_gradient(self.modifier(faces, training=False))
        losses, acc_orig, acc_mod = [], [], []
        for d, opt in zip(self.classifiers, self.d_optimizers):
            view = self._views(align, d)
            with tf.GradientTape() as tape:
                ce_mod, correct_mod, _ = self._d_outputs(modified, view, labels, training=True, d=d)
                ce_orig, correct_orig, _ = self._d_outputs(faces, view, labels, training=True, d=d)
                loss = self._global_mean(ce_mod + ce_orig)
            variables = d.trainable_variables
            opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
            d.head.advance()
            losses.append(tf.reduce_mean(ce_mod + ce_orig))
            acc_orig.append(correct_orig)
            acc_mod.append(correct_mod)
        self.trackers["loss_d"].update_state(_mean(losses))
        self.trackers["d_acc_original"].update_state(_mean(acc_orig))
        self.trackers["d_acc_modified"].update_state(_mean(acc_mod))
        if self.critic is not None:
            self._critic_step(faces, modified)

    def _patch_weights(self, modified, faces, logits):
        """(N, h, w, 1) weights of the critic's patches, summing to 1 per face: equal, or with
        `realism_focus` proportional to how much M changed each patch (no gradient)."""
        if not self.realism_focus:
            n = tf.cast(tf.reduce_prod(tf.shape(logits)[1:3]), logits.dtype)
            return tf.ones_like(logits) / n
        change = tf.reduce_mean(tf.abs(tf.stop_gradient(modified - faces)), -1, keepdims=True)
        change = tf.image.resize(change, tf.shape(logits)[1:3], method="area")
        # a floor: an untouched face (M starts as the identity) weighs its patches equally
        change += 1e-4
        return change / tf.reduce_sum(change, axis=[1, 2, 3], keepdims=True)

    def _critic_step(self, faces, modified):
        """R learns real photos (logit > 0) from M's faces (< 0), per patch; a face's real
        and modified patches weigh the same (`_patch_weights`)."""
        with tf.GradientTape() as tape:
            real = self.critic(faces, training=True)
            fake = self.critic(modified, training=True)
            weights = self._patch_weights(modified, faces, fake)
            per_face = (tf.reduce_sum(weights * tf.nn.softplus(-real), axis=[1, 2, 3])
                        + tf.reduce_sum(weights * tf.nn.softplus(fake), axis=[1, 2, 3]))
            loss = self._global_mean(per_face)
        variables = self.critic.trainable_variables
        self.r_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.trackers["loss_critic"].update_state(tf.reduce_mean(per_face))

    def _identity_term(self, modified, faces, align, d=None):
        """Per-face hinge on the cosine between D's (`d`, default D_1) embeddings of M(f) and f.

        Labels play no part, so the push moves the embedding itself: what a recognizer of
        people D never saw compares. 0 once the two look like different people (cosine at
        or below `identity_margin`).
        """
        d = self.classifier if d is None else d
        h, w = d.input_height, d.input_width
        # one erased region for both faces (no extra random op when nothing is erased)
        seed = (tf.random.uniform([2], maxval=2 ** 30, dtype=tf.int32)
                if self.view_erase > 0 else None)
        e_mod = d(self._erase(geometry.align_faces(modified, align, h, w), seed), training=False)
        e_orig = tf.stop_gradient(
            d(self._erase(geometry.align_faces(faces, align, h, w), seed), training=False))
        cos = tf.reduce_sum(tf.math.l2_normalize(e_mod, -1) * tf.math.l2_normalize(e_orig, -1), -1)
        return tf.nn.relu(cos - self.identity_margin)

    def original_embeddings(self, images, align, batch_size: int = 64, progress: bool = True):
        """Each recognizer's embeddings of the faces `images` (uint8, or [-1, 1] floats), each
        through D's un-jittered view from `align`: the originals' side of the recognizer
        hinge, computed once per run (`train.recognizer_originals: once`). A list of (N, D_k)
        float32 arrays, one per recognizer."""
        from tqdm import tqdm

        h, w = self.classifier.input_height, self.classifier.input_width
        calls = []
        for rec in self.recognizers:
            size = (rec.input_size, rec.input_size)

            def embed(x, a, rec=rec, size=size):
                x = tf.cast(x, tf.float32)
                if images.dtype == np.uint8:
                    x = x / 127.5 - 1.0
                return rec(geometry.warp_affine(x, rec.view_matrices(a, h, w), size))

            calls.append(tf.function(embed, reduce_retracing=True))
        out = [[] for _ in self.recognizers]
        for i in tqdm(range(0, len(images), batch_size), desc="originals' embeddings",
                      unit="batch", disable=None if progress else True, dynamic_ncols=True):
            x = tf.constant(images[i:i + batch_size])
            a = tf.constant(align[i:i + batch_size], tf.float32)
            for k, call in enumerate(calls):
                out[k].append(call(x, a).numpy())
        return [np.concatenate(parts).astype(np.float32) for parts in out]

    def _recognizer_term(self, modified, faces, align, labels=None, originals=None):
        """Per-face hinge on the cosine between the frozen recognizer's embeddings of M(f) and
        f, each through its own draw of the jittered view (`view_jitter`), as an attacker
        matches a photo against another crop of the person. One shared view would put M's
        starting point (the identity, cosine 1) at the cosine's maximum, where its gradient
        is 0: measured, M then took 50 of 300 steps to leave it, and a short run never did.

        With `recognizer_reference` "person" (needs `labels`), f's embedding is replaced by
        the mean of its person's originals seen so far (this one included), and the mean over
        all faces is taken off both sides: the attacker matches another photo of the person,
        so the push should remove what the person's photos share, not what is particular to
        this one (pose, light) nor what every face shares (faceres's post-ReLU features put
        strangers at cosine 0.39, so an uncentred hinge at 0 also pushes toward "no face").

        `originals`: one (B, D_k) tensor per recognizer, f's embeddings computed before the
        run (`original_embeddings`), in place of a pass on f each step."""
        d = self.classifier
        h, w = d.input_height, d.input_width
        if self.recognizer_edit_scale != 1.0:
            modified = faces + self.recognizer_edit_scale * (modified - faces)
        count = len(self.recognizers)
        split = self.recognizers_per_face == "one" and count > 1
        terms, places = [], []
        for k, rec in enumerate(self.recognizers):
            mod_k, faces_k, align_k, labels_k = modified, faces, align, labels
            orig_k = None if originals is None else originals[k]
            if split:  # faces k, k + K, k + 2K, ... of the batch
                place = tf.range(k, tf.shape(faces)[0], count)
                mod_k, faces_k, align_k = (tf.gather(t, place) for t in (modified, faces, align))
                orig_k = None if orig_k is None else tf.gather(orig_k, place)
                labels_k = None if labels is None else tf.gather(labels, place)
                places.append(place)
            size = (rec.input_size, rec.input_size)
            seen = _degrade(mod_k, self.recognizer_noise, self.recognizer_blur)
            view = rec.view_matrices(self._views(align_k), h, w)
            e_mod = rec(geometry.warp_affine(seen, view, size))
            if orig_k is not None:
                e_orig = tf.stop_gradient(tf.cast(orig_k, e_mod.dtype))
            else:
                e_orig = tf.stop_gradient(rec(geometry.warp_affine(
                    faces_k, rec.view_matrices(self._views(align_k), h, w), size)))
            if self.recognizer_stats is not None:
                if labels_k is None:
                    raise ValueError('recognizer_reference="person" needs the faces\' labels')
                centre, person = self.recognizer_stats.update(k, e_orig, labels_k)
                e_mod = tf.math.l2_normalize(e_mod - centre, -1)
                e_orig = tf.math.l2_normalize(person - centre, -1)
            terms.append(tf.nn.relu(tf.reduce_sum(e_mod * e_orig, -1) - self.recognizer_margin))
        if split:
            return tf.dynamic_stitch(places, terms)
        if self.recognizer_temperature > 0 and len(terms) > 1:
            tau = self.recognizer_temperature
            return tau * (tf.reduce_logsumexp(tf.stack(terms) / tau, 0)
                          - math.log(len(terms)))
        return _mean(terms)

    def _face_term(self, modified, faces, align):
        """Per-face hinge on the face detector's logit of M(f) falling below f's, through the
        same jittered view for both. f's logit is capped at 3 (a sure face; BlazeFace gives
        celeba-mini's faces about 2.5), so M need not keep a logit higher than that."""
        s_mod, s_orig = self._one_view(self.face_score, modified, faces, align)
        return tf.nn.relu(tf.minimum(s_orig, 3.0) - s_mod)

    def _landmark_term(self, modified, faces, align):
        """Per face: how far FaceMesh's 468 points on M(f) moved from f's, through the same
        jittered view, as a mean distance in inter-ocular distances (D's template puts the
        eyes 0.367 of its width apart)."""
        return self._mesh_terms(modified, faces, align)[0]

    def _mesh_terms(self, modified, faces, align):
        """(landmarks moved, face-flag hinge) per face from one FaceMesh pass on each of M(f)
        and f through one jittered view. The hinge is on FaceMesh's face-flag logit of M(f)
        falling below f's, capped at 20 (originals read about 24, blur8 about -8) and divided
        by 8, so a unit means about what a unit of BlazeFace's logit does in `_face_term`."""
        (p_mod, flag_mod), (p_orig, flag_orig) = self._one_view(
            self.face_mesh.points_and_flag, modified, faces, align, net=self.face_mesh)
        moved = tf.sqrt(tf.reduce_sum(tf.square(p_mod - p_orig), -1) + 1e-12)
        moved = tf.reduce_mean(moved, -1) * self.face_mesh.zoom / _TEMPLATE_IOD
        return moved, tf.nn.relu(tf.minimum(flag_orig, 20.0) - flag_mod) / 8.0

    def _one_view(self, call, modified, faces, align, net=None):
        """A frozen net's outputs (`call`, by default the net itself) on M(f) and on f (no
        gradient) through one jittered view drawn for both, so only M's edit differs."""
        net = net or call
        size = (net.input_size, net.input_size)
        view = net.view_matrices(self._views(align), self.classifier.input_height,
                                 self.classifier.input_width)
        return (call(geometry.warp_affine(modified, view, size)),
                tf.nest.map_structure(tf.stop_gradient,
                                      call(geometry.warp_affine(faces, view, size))))

    def _warmup_ramp(self):
        """1, or (M steps taken + 1) / the warm-up's length during the warm-up."""
        if not self.warmup_steps:
            return 1.0
        taken = tf.cast(self.m_optimizer.iterations + 1, tf.float32)
        return tf.minimum(1.0, taken / self.warmup_length)

    def shorten_warmup(self, steps: int) -> int:
        """Makes the warm-up at most `steps` long (at least 1; never longer than it is: the
        ramp only rises). Returns the length now in force (0 without a warm-up)."""
        if not self.warmup_steps:
            return 0
        self.warmup_length.assign(min(float(self.warmup_length.numpy()), float(max(int(steps), 1))))
        return int(self.warmup_length.numpy())

    def _color_terms(self, modified, faces):
        """(chroma, low-pass) per face: colour kept at every scale, and light and shape kept
        at a coarse scale, so M's edits stay in luminance detail, where faces differ, instead of
        colour patterns (YCbCr, BT.601)."""
        def chroma(x):
            return tf.stack([-0.1687 * x[..., 0] - 0.3313 * x[..., 1] + 0.5 * x[..., 2],
                             0.5 * x[..., 0] - 0.4187 * x[..., 1] - 0.0813 * x[..., 2]], -1)

        chroma_l1 = tf.reduce_mean(tf.abs(chroma(modified) - chroma(faces)), axis=[1, 2, 3])
        pool = max(1, self.modifier.input_size // 16)
        low = tf.nn.avg_pool2d(modified - faces, pool, pool, "VALID")
        return chroma_l1, tf.reduce_mean(tf.abs(low), axis=[1, 2, 3])

    @staticmethod
    def _saturation_term(modified, faces):
        """|mean HSV saturation of M(f) - of f| per face, S = (max - min) / max of RGB in
        [0, 1] (faces come in [-1, 1]; M(f) is clipped as the export will)."""
        def saturation(x):
            x = (tf.clip_by_value(x, -1.0, 1.0) + 1.0) / 2.0
            top = tf.reduce_max(x, -1)
            return tf.math.divide_no_nan(top - tf.reduce_min(x, -1), top)

        return tf.abs(tf.reduce_mean(saturation(modified) - saturation(faces), axis=[1, 2]))

    @staticmethod
    def _ssim(modified, faces, win: int = 7):
        """Mean SSIM per face over R, G and B, as the yardstick measures it on 0-255 pixels
        (scikit-image's default: a `win` x `win` uniform window, sample covariances). Faces
        come in [-1, 1] and go to [0, 1] first: SSIM's brightness factor assumes pixels >= 0.
        M(f) is clipped as the export will."""
        x = (tf.clip_by_value(modified, -1.0, 1.0) + 1.0) / 2.0
        y = (faces + 1.0) / 2.0
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        n = float(win * win)

        def mean(t):
            return tf.nn.avg_pool2d(t, win, 1, "VALID")

        mx, my = mean(x), mean(y)
        cov = n / (n - 1.0)
        vx = cov * (mean(x * x) - mx * mx)
        vy = cov * (mean(y * y) - my * my)
        vxy = cov * (mean(x * y) - mx * my)
        ssim = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        return tf.reduce_mean(ssim, axis=[1, 2, 3])

    def _m_step(self, faces, labels, align, frames_data=None, originals=None):
        """Line 9: arg min_{M, A} L_det + L_adv + lambda L1 (A only with frames), plus the
        optional identity and colour terms (0 by default: Algorithm 1 exactly). With several
        D's the adversarial and identity terms are means over them, each D through its own
        view draw."""
        if self.lambda_outside > 0:
            outside = 1.0 - geometry.window_mask(align, self.modifier.input_size,
                                                 self.classifier.input_height,
                                                 self.classifier.input_width)
        views = [self._views(align, d) for d in self.classifiers]
        with tf.GradientTape(persistent=frames_data is not None) as tape:
            modified = self.modifier(faces, training=True)
            l1 = tf.reduce_mean(tf.abs(modified - faces), axis=[1, 2, 3])
            ramp = self._warmup_ramp()
            per_face = ramp * self.lambda_l1 * l1
            if self.adv_weight > 0:
                adv = _mean([self._adv_term(modified, v, labels, d)
                             for d, v in zip(self.classifiers, views)])
                per_face += self.adv_weight * adv
            unlike = tf.zeros_like(l1)
            if self.lambda_ssim > 0:
                unlike = 1.0 - self._ssim(modified, faces)
                per_face += ramp * self.lambda_ssim * unlike
            if self.lambda_outside > 0:
                per_face += ramp * self.lambda_outside * tf.reduce_mean(
                    tf.abs(modified - faces) * outside, axis=[1, 2, 3])
            identity = color = lowpass = saturation = recognized = tf.zeros_like(l1)
            if self.lambda_recognizer > 0:
                recognized = self._recognizer_term(modified, faces, align, labels, originals)
                per_face += self.lambda_recognizer / self.recognizer_edit_scale * recognized
            face = tf.zeros_like(l1)
            if self.lambda_face > 0:
                face = self._face_term(modified, faces, align)
                per_face += self.lambda_face * face
            moved = flag = tf.zeros_like(l1)
            if self.lambda_landmarks > 0 or self.lambda_face_flag > 0:
                moved, flag = self._mesh_terms(modified, faces, align)
                # the flag ramps up with the image terms: it resists the very first moves
                # the recognizer push makes, and at full weight kept M at the identity
                per_face += (self.lambda_landmarks * moved
                             + ramp * self.lambda_face_flag * flag)
            if self.lambda_identity > 0:
                identity = _mean([self._identity_term(modified, faces, v, d)
                                  for d, v in zip(self.classifiers, views)])
                per_face += self.lambda_identity * identity
            if self.lambda_color > 0 or self.lambda_lowpass > 0:
                color, lowpass = self._color_terms(modified, faces)
                per_face += ramp * (self.lambda_color * color + self.lambda_lowpass * lowpass)
            if self.lambda_saturation > 0:
                saturation = self._saturation_term(modified, faces)
                per_face += ramp * self.lambda_saturation * saturation
            realism = tf.zeros_like(l1)
            if self.lambda_realism > 0:
                # non-saturating: M wants R to call its patches real
                fake = self.critic(modified, training=False)
                realism = tf.reduce_sum(self._patch_weights(modified, faces, fake)
                                        * tf.nn.softplus(-fake), axis=[1, 2, 3])
                per_face += ramp * self.lambda_realism * realism
            loss = self._global_mean(per_face)
            if frames_data is not None:
                det = self._det_loss(self._modified_frames(frames_data, training=True), frames_data)
                loss = loss + self.det_weight * det
        m_vars = self.modifier.trainable_variables
        self.m_optimizer.apply_gradients(zip(tape.gradient(loss, m_vars), m_vars))
        if self.adv_weight == 0 and self.train_classifier:
            # logged only: measured outside the tape, no pass back through D
            adv = _mean([self._adv_term(tf.stop_gradient(modified), v, labels, d)
                         for d, v in zip(self.classifiers, views)])
        if frames_data is not None:
            a_vars = self.detector.trainable_variables
            self.a_optimizer.apply_gradients(zip(tape.gradient(loss, a_vars), a_vars))
            del tape
            self.trackers["loss_det"].update_state(det)
        if self.train_classifier:
            self.trackers["loss_adv"].update_state(tf.reduce_mean(adv))
        self.trackers["loss_l1"].update_state(tf.reduce_mean(l1))
        self.trackers["loss_ssim"].update_state(tf.reduce_mean(unlike))
        self.trackers["loss_identity"].update_state(tf.reduce_mean(identity))
        self.trackers["loss_color"].update_state(tf.reduce_mean(color))
        self.trackers["loss_lowpass"].update_state(tf.reduce_mean(lowpass))
        self.trackers["loss_saturation"].update_state(tf.reduce_mean(saturation))
        self.trackers["loss_realism"].update_state(tf.reduce_mean(realism))
        self.trackers["loss_recognizer"].update_state(tf.reduce_mean(recognized))
        self.trackers["loss_face"].update_state(tf.reduce_mean(face))
        self.trackers["loss_landmarks"].update_state(tf.reduce_mean(moved))
        self.trackers["loss_face_flag"].update_state(tf.reduce_mean(flag))

    def _finetune_step(self, data):
        """Lines 10-11: M and D frozen, A fine-tuned on modified frames."""
        frames = tf.stop_gradient(self._modified_frames(data, training=False))
        with tf.GradientTape() as tape:
            det = self._det_loss(frames, data)
        a_vars = self.detector.trainable_variables
        self.a_optimizer.apply_gradients(zip(tape.gradient(det, a_vars), a_vars))
        self.trackers["loss_det"].update_state(det)
