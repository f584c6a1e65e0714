"""D, the face classifier: SphereFace (Liu et al., 2017) with margin-softmax heads.

SphereFace-20: four stages, each a stride-2 3x3 conv + PReLU followed by 1, 2, 4, 1 residual
units (two 3x3 convs + PReLU), then a fully connected embedding (512-d) on 112x96 aligned
faces. Depth 4 has no residual units, depth 36 has 2, 4, 8, 2.

Heads turn an embedding and its label into margin logits for the loss:
- A-Softmax (SphereFace): target logit |x| psi(theta), psi = (-1)^k cos(m theta) - 2k, with the
  usual annealing (|x| cos + lambda^-1 ... blended by lambda, which decays with iterations).
- CosFace: s (cos theta - m). ArcFace: s cos(theta + m).
Accuracy is read from the plain cosine logits (no margin).
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

UNITS_BY_DEPTH = {4: (0, 0, 0, 0), 20: (1, 2, 4, 1), 36: (2, 4, 8, 2), 64: (3, 8, 16, 3)}
HEADS = ("asoftmax", "cosface", "arcface", "softmax")


@keras.saving.register_keras_serializable(package="privacy_anon")
class SphereUnit(layers.Layer):
    """A SphereFace residual unit: x + PReLU(conv(PReLU(conv(x))))."""

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        init = keras.initializers.RandomNormal(stddev=0.01)  # SphereFace's Gaussian init for units
        self.conv1 = layers.Conv2D(self.filters, 3, padding="same", kernel_initializer=init, name="conv1")
        self.act1 = layers.PReLU(shared_axes=(1, 2), alpha_initializer=keras.initializers.Constant(0.25))
        self.conv2 = layers.Conv2D(self.filters, 3, padding="same", kernel_initializer=init, name="conv2")
        self.act2 = layers.PReLU(shared_axes=(1, 2), alpha_initializer=keras.initializers.Constant(0.25))

    def call(self, x):
        return x + self.act2(self.conv2(self.act1(self.conv1(x))))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(package="privacy_anon")
class MarginHead(layers.Layer):
    """Class weights on the unit sphere and a margin softmax.

    Args:
        num_classes: identities.
        kind: "asoftmax" (SphereFace, integer margin m in 1-4), "cosface", "arcface",
            or "softmax" (no margin; for ablations).
        margin: m.
        scale: s for CosFace/ArcFace (A-Softmax uses the feature norm instead).
        anneal_*: A-Softmax's lambda = max(anneal_min, base * (1 + gamma * it) ** -power).
    """

    def __init__(self, num_classes: int, kind: str = "asoftmax", margin: float = 4.0,
                 scale: float = 30.0, anneal_base: float = 1000.0, anneal_gamma: float = 0.12,
                 anneal_power: float = 1.0, anneal_min: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"`num_classes` must be >= 2, received num_classes={num_classes}")
        if kind not in HEADS:
            raise ValueError(f"`kind` must be one of {HEADS}, received kind={kind!r}")
        if kind == "asoftmax" and (margin != int(margin) or not 1 <= margin <= 4):
            raise ValueError(f"A-Softmax needs an integer margin in 1..4, received margin={margin}")
        if kind in ("cosface", "arcface") and not 0 <= margin < 1.5:
            raise ValueError(f"`margin` for {kind} must be in [0, 1.5), received margin={margin}")
        self.num_classes = int(num_classes)
        self.kind = kind
        self.margin = float(margin)
        self.scale = float(scale)
        self.anneal_base = float(anneal_base)
        self.anneal_gamma = float(anneal_gamma)
        self.anneal_power = float(anneal_power)
        self.anneal_min = float(anneal_min)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], self.num_classes),
            initializer="glorot_uniform")
        # Iterations seen by the annealing schedule; advanced by the training step.
        self.iterations = self.add_weight(
            name="iterations", shape=(), initializer="zeros", trainable=False)

    def cosine(self, embeddings):
        """cos(theta) between each embedding and each class weight, (N, C)."""
        x = ops.normalize(embeddings, axis=-1, epsilon=1e-12)
        w = ops.normalize(self.kernel, axis=0, epsilon=1e-12)
        return ops.clip(ops.matmul(x, w), -1.0, 1.0)

    def call(self, embeddings):
        """Logits without margin, for prediction: |x| cos for A-Softmax, s cos otherwise."""
        cos = self.cosine(embeddings)
        if self.kind in ("asoftmax", "softmax"):
            return cos * ops.norm(embeddings, axis=-1, keepdims=True)
        return self.scale * cos

    def annealing_lambda(self):
        it = ops.cast(self.iterations, "float32")
        lam = self.anneal_base * ops.power(1.0 + self.anneal_gamma * it, -self.anneal_power)
        return ops.maximum(lam, self.anneal_min)

    def advance(self):
        """One more training iteration for the annealing schedule."""
        self.iterations.assign_add(1.0)

    def margin_logits(self, embeddings, labels):
        """Logits with the margin applied to each sample's true class, for the loss."""
        cos = self.cosine(embeddings)
        one_hot = ops.one_hot(ops.cast(labels, "int32"), self.num_classes)
        if self.kind == "softmax":
            return self.call(embeddings)
        if self.kind == "cosface":
            return self.scale * (cos - self.margin * one_hot)
        if self.kind == "arcface":
            m = self.margin
            sin = ops.sqrt(ops.clip(1.0 - cos * cos, 0.0, 1.0))
            phi = cos * math.cos(m) - sin * math.sin(m)
            # Past theta + m > pi, cos(theta + m) stops decreasing: use the CosFace-like fallback.
            phi = ops.where(cos > math.cos(math.pi - m), phi, cos - math.sin(math.pi - m) * m)
            return self.scale * ops.where(one_hot > 0, phi, cos)
        # A-Softmax: psi(theta) = (-1)^k cos(m theta) - 2k for theta in [k pi/m, (k+1) pi/m].
        m = int(self.margin)
        norm = ops.norm(embeddings, axis=-1, keepdims=True)
        cos_m = _cos_multiple(cos, m)
        theta = ops.arccos(ops.clip(cos, -1.0 + 1e-7, 1.0 - 1e-7))
        k = ops.floor(m * theta / math.pi)
        sign = 1.0 - 2.0 * ops.mod(k, 2.0)
        psi = sign * cos_m - 2.0 * k
        lam = self.annealing_lambda()
        target = (lam * cos + psi) / (1.0 + lam)
        return norm * ops.where(one_hot > 0, target, cos)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "kind": self.kind,
            "margin": self.margin,
            "scale": self.scale,
            "anneal_base": self.anneal_base,
            "anneal_gamma": self.anneal_gamma,
            "anneal_power": self.anneal_power,
            "anneal_min": self.anneal_min,
        }


def _cos_multiple(c, m):
    """cos(m theta) from cos(theta) by the Chebyshev polynomials (differentiable everywhere)."""
    if m == 1:
        return c
    if m == 2:
        return 2 * c * c - 1
    if m == 3:
        return 4 * c * c * c - 3 * c
    return 8 * c * c * c * c - 8 * c * c + 1


@keras.saving.register_keras_serializable(package="privacy_anon")
class FaceClassifier(keras.Model):
    """D: SphereFace trunk to an embedding, and a margin head over identities.

    `model(x)` returns the raw embedding, `model.embed(x)` the L2-normalised one (for
    verification), `model.logits(x)` plain class logits, and `model.margin_logits(x, y)` the
    margin logits of the training loss. Inputs: aligned faces (N, H, W, 3) in [-1, 1].

    Args:
        num_classes: identities in the training set.
        depth: 4, 20, 36 or 64 (SphereFace variants).
        widths: channels of the four stages.
        embedding_dim: size of the embedding (512 in SphereFace).
        input_height, input_width: the aligned-face size (112x96 in SphereFace).
        head, margin, scale, anneal_*: see `MarginHead`.

    Example:
        >>> d = FaceClassifier(num_classes=10, depth=4, widths=(8, 16, 32, 64), embedding_dim=32)
        >>> d.embed(keras.ops.zeros((2, 112, 96, 3))).shape
        (2, 32)
    """

    def __init__(self, num_classes: int, depth: int = 20, widths=(64, 128, 256, 512),
                 embedding_dim: int = 512, input_height: int = 112, input_width: int = 96,
                 head: str = "asoftmax", margin: float = 4.0, scale: float = 30.0,
                 anneal_base: float = 1000.0, anneal_gamma: float = 0.12,
                 anneal_power: float = 1.0, anneal_min: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        if depth not in UNITS_BY_DEPTH:
            raise ValueError(f"`depth` must be one of {sorted(UNITS_BY_DEPTH)}, received depth={depth}")
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"`widths` must be 4 positive ints, received widths={widths}")
        if input_height < 16 or input_width < 16:
            raise ValueError(f"input size must be >= 16x16, received {input_height}x{input_width}")
        self.num_classes = int(num_classes)
        self.depth = int(depth)
        self.widths = widths
        self.embedding_dim = int(embedding_dim)
        self.input_height = int(input_height)
        self.input_width = int(input_width)
        self.head_config = dict(kind=head, margin=margin, scale=scale, anneal_base=anneal_base,
                                anneal_gamma=anneal_gamma, anneal_power=anneal_power,
                                anneal_min=anneal_min)
        self.stages = []
        for i, (width, units) in enumerate(zip(widths, UNITS_BY_DEPTH[depth])):
            stage = [
                layers.Conv2D(width, 3, strides=2, padding="same", name=f"stage{i + 1}_conv"),
                layers.PReLU(shared_axes=(1, 2), alpha_initializer=keras.initializers.Constant(0.25),
                             name=f"stage{i + 1}_prelu"),
            ]
            stage += [SphereUnit(width, name=f"stage{i + 1}_unit{j + 1}") for j in range(units)]
            self.stages.append(stage)
        self.flatten = layers.Flatten()
        self.fc = layers.Dense(self.embedding_dim, name="embedding")
        self.head = MarginHead(self.num_classes, name="margin_head", **self.head_config)

    def call(self, x):
        for stage in self.stages:
            for layer in stage:
                x = layer(x)
        return self.fc(self.flatten(x))

    def build(self, input_shape=None):
        # Build by running zeros once: the stages' shapes depend on the input size.
        self.head.build((None, self.embedding_dim))
        self.call(ops.zeros((1, self.input_height, self.input_width, 3)))
        self.built = True

    def embed(self, x):
        return ops.normalize(self(x), axis=-1, epsilon=1e-12)

    def logits(self, x):
        return self.head(self(x))

    def margin_logits(self, x, labels):
        return self.head.margin_logits(self(x), labels)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "depth": self.depth,
            "widths": list(self.widths),
            "embedding_dim": self.embedding_dim,
            "input_height": self.input_height,
            "input_width": self.input_width,
            "head": self.head_config["kind"],
            **{k: v for k, v in self.head_config.items() if k != "kind"},
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_classifier(cfg, num_classes: int) -> FaceClassifier:
    """D from a `ClassifierConfig`, with its weights built."""
    d = FaceClassifier(
        num_classes=num_classes,
        depth=cfg.depth,
        widths=cfg.widths,
        embedding_dim=cfg.embedding_dim,
        input_height=cfg.input_height,
        input_width=cfg.input_width,
        head=cfg.head,
        margin=cfg.margin,
        scale=cfg.scale,
        anneal_base=cfg.anneal_base,
        anneal_gamma=cfg.anneal_gamma,
        anneal_power=cfg.anneal_power,
        anneal_min=cfg.anneal_min,
        name="face_classifier",
    )
    d.build()
    return d


def margin_loss(model: FaceClassifier, faces, labels):
    """Per-sample margin softmax cross-entropy (the L_D of the paper), and plain logits."""
    emb = model(faces)
    logits = model.head(emb)
    margin = model.head.margin_logits(emb, labels)
    loss = keras.losses.sparse_categorical_crossentropy(labels, margin, from_logits=True)
    return loss, logits
