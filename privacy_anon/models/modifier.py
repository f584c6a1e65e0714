"""M, the face modifier: the Johnson et al. (2016) ResNet image-to-image generator.

Layout (paper section 4): reflection pad + 7x7 conv, two stride-2 down-samplings, N residual
blocks, two 2x up-samplings (transposed convs; or resize + conv), reflection pad + 7x7 conv, tanh.
The outer 7x7 convs may be 3x3 (`outer_kernel`): they run at full resolution with few channels,
where int8 gains least, and were about 40 % of a small int8 M's time per face. With
`pixel_shuffle`, nothing runs at full resolution: the face enters as 2x2 pixel blocks stacked
on channels (space-to-depth) and leaves the same way (depth-to-space, Shi et al. 2016's
sub-pixel conv), so the first down- and last up-sampling are gone.
Instance norm everywhere, written from plain ops (mean, centred variance, rsqrt) so that a
full-integer int8 TFLite conversion keeps every op integer: `GroupNormalization` does not.

Pixels are float32 in [-1, 1] on both sides.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
from keras import layers, ops

from privacy_anon.config import CHOICES, RANGES

OUTPUT_MODES = CHOICES["modifier.output_mode"]
UPSAMPLES = CHOICES["modifier.upsample"]
INT8_NOISE_RANGE = RANGES["modifier.int8_noise"]


@contextlib.contextmanager
def export_padding():
    """While active, `ReflectionPad2D` traces as stride-1 slices + concatenation instead of
    one MIRROR_PAD op: the same values, but TFLite's XNNPACK delegate has no MIRROR_PAD
    kernel, so every mirror pad split the graph and ran on the slow built-in kernel (about
    half of an int8 `mobile` M's time, measured in issue 13). Used by the TFLite export;
    training keeps the single op."""
    previous = ReflectionPad2D.by_slices
    ReflectionPad2D.by_slices = True
    try:
        yield
    finally:
        ReflectionPad2D.by_slices = previous


def reflect_by_slices(x, pad: int):
    """`ops.pad(x, mode="reflect")` over H and W from 1-pixel slices and two concatenations."""
    if pad == 0:
        return x
    h, w = x.shape[1], x.shape[2]
    if h is None or w is None:  # needs static sizes; the export always has them
        return ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="reflect")
    rows = ([x[:, i:i + 1] for i in range(pad, 0, -1)] + [x]
            + [x[:, h - 1 - i:h - i] for i in range(1, pad + 1)])
    x = ops.concatenate(rows, axis=1)
    cols = ([x[:, :, i:i + 1] for i in range(pad, 0, -1)] + [x]
            + [x[:, :, w - 1 - i:w - i] for i in range(1, pad + 1)])
    return ops.concatenate(cols, axis=2)


@keras.saving.register_keras_serializable(package="privacy_anon")
class ReflectionPad2D(layers.Layer):
    """Mirror padding of H and W (TFLite MIRROR_PAD); avoids the border artefacts of zero padding."""

    by_slices = False  # set by `export_padding()`

    def __init__(self, pad: int, **kwargs):
        super().__init__(**kwargs)
        if pad < 0:
            raise ValueError(f"`pad` must be >= 0, received pad={pad}")
        self.pad = int(pad)

    def call(self, x):
        p = self.pad
        if ReflectionPad2D.by_slices:
            return reflect_by_slices(x, p)
        return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, shape):
        h, w = shape[1], shape[2]
        return (shape[0], None if h is None else h + 2 * self.pad,
                None if w is None else w + 2 * self.pad, shape[3])

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package="privacy_anon")
class Upsample2x(layers.Layer):
    """Nearest-neighbour 2x up-sampling as one resize (TFLite RESIZE_NEAREST_NEIGHBOR, which
    XNNPACK runs in int8; Keras' `UpSampling2D` traces as RESHAPE + TILE)."""

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        if h is None or w is None:
            h, w = ops.shape(x)[1], ops.shape(x)[2]
        return ops.image.resize(x, (2 * h, 2 * w), interpolation="nearest")

    def compute_output_shape(self, shape):
        return (shape[0], None if shape[1] is None else 2 * shape[1],
                None if shape[2] is None else 2 * shape[2], shape[3])


@keras.saving.register_keras_serializable(package="privacy_anon")
class SpaceToDepth(layers.Layer):
    """2x2 pixel blocks onto channels (TFLite SPACE_TO_DEPTH, which XNNPACK runs in int8)."""

    def call(self, x):
        return ops.space_to_depth(x, 2)

    def compute_output_shape(self, shape):
        return (shape[0], None if shape[1] is None else shape[1] // 2,
                None if shape[2] is None else shape[2] // 2, 4 * shape[3])


@keras.saving.register_keras_serializable(package="privacy_anon")
class DepthToSpace(layers.Layer):
    """Channels back into 2x2 pixel blocks (TFLite DEPTH_TO_SPACE), the inverse of `SpaceToDepth`."""

    def call(self, x):
        return ops.depth_to_space(x, 2)

    def compute_output_shape(self, shape):
        return (shape[0], None if shape[1] is None else 2 * shape[1],
                None if shape[2] is None else 2 * shape[2], shape[3] // 4)


VARIANCE_SCOPE = "variance"


def int8_rounding(y, strength: float, span=None):
    """`y` plus the error an int8 model makes storing it: uniform within half a level either
    way, the levels 1/255 of `span` apart (default: `y`'s own range over the batch, as
    calibration sets one scale per tensor from the range it sees), times `strength`. No
    gradient flows through the noise. Training M through it (pseudo-quantization noise,
    Defossez et al. 2021) asks for an edit that survives int8 rounding at every layer."""
    import tensorflow as tf

    if span is None:
        span = tf.stop_gradient(tf.reduce_max(y) - tf.reduce_min(y))
    return y + strength * span / 255.0 * tf.random.uniform(tf.shape(y), -0.5, 0.5)


@keras.saving.register_keras_serializable(package="privacy_anon")
class InstanceNorm(layers.Layer):
    """Instance normalisation over H, W per sample and channel, with a learned affine."""

    int8_noise = 0.0  # set by FaceModifier: int8 rounding's noise on its tensors in training

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        if epsilon <= 0:
            raise ValueError(f"`epsilon` must be > 0, received epsilon={epsilon}")
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def call(self, x, training=False):
        noisy = training and self.int8_noise > 0
        mean = ops.mean(x, axis=(1, 2), keepdims=True)
        centred = x - mean
        if noisy:  # the full-size tensors an int8 model stores: x - mean, its scaling, + beta
            centred = int8_rounding(centred, self.int8_noise)
        # the variance path has a name of its own, so an int8 export can keep it in float
        # (`export.convert_modifier(float_variance=True)`): squares span twice the range
        with keras.name_scope(VARIANCE_SCOPE):
            # centred * centred, not ops.square: SQUARE has no int8 TFLite kernel.
            var = ops.mean(centred * centred, axis=(1, 2), keepdims=True)
            inverse = ops.rsqrt(var + self.epsilon)
        # gamma joins the per-channel scale first: one full-size multiply less (and one
        # int8 requantisation less) than centred * rsqrt * gamma, the same function
        if not noisy:
            return centred * (inverse * self.gamma) + self.beta
        scaled = int8_rounding(centred * (inverse * self.gamma), self.int8_noise)
        return int8_rounding(scaled + self.beta, self.int8_noise)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def _up_block(filters, name, upsample):
    """One 2x up-sampling. "transpose": a 3x3 stride-2 transposed conv (the paper); its kernel
    overlaps unevenly (3 is not a multiple of 2), which leaves a checkerboard of fine stripes
    (Odena et al. 2016). "resize": nearest 2x, then a reflection-padded 3x3 conv: every output
    pixel gets the same kernel footprint, so no grid (4x the up-sampling's MACs)."""
    if upsample == "transpose":
        return _conv_block(filters, 3, 2, name, transpose=True)
    return [Upsample2x(name=f"{name}_resize"),
            ReflectionPad2D(1, name=f"{name}_pad"), *_conv_block(filters, 3, 1, name)]


def _conv_block(filters, kernel, stride, name, transpose=False, activation=True):
    conv_cls = layers.Conv2DTranspose if transpose else layers.Conv2D
    padding = "same" if (transpose or kernel == 3 and stride == 2) else "valid"
    block = [
        conv_cls(filters, kernel, strides=stride, padding=padding, name=f"{name}_conv"),
        InstanceNorm(name=f"{name}_norm"),
    ]
    if activation:
        block.append(layers.ReLU(name=f"{name}_relu"))
    return block


@keras.saving.register_keras_serializable(package="privacy_anon")
class ResidualBlock(layers.Layer):
    """Two reflection-padded 3x3 convs with instance norm, and the identity shortcut."""

    int8_noise = 0.0  # set by FaceModifier, like InstanceNorm's

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.pad1 = ReflectionPad2D(1)
        self.conv1 = layers.Conv2D(self.filters, 3, name="conv1")
        self.norm1 = InstanceNorm(name="norm1")
        self.pad2 = ReflectionPad2D(1)
        self.conv2 = layers.Conv2D(self.filters, 3, name="conv2")
        self.norm2 = InstanceNorm(name="norm2")

    def call(self, x, training=False):
        def conv(layer, y):
            y = layer(y)
            return int8_rounding(y, self.int8_noise) if training and self.int8_noise > 0 else y

        y = ops.relu(self.norm1(conv(self.conv1, self.pad1(x)), training=training))
        y = self.norm2(conv(self.conv2, self.pad2(y)), training=training)
        if training and self.int8_noise > 0:
            return int8_rounding(x + y, self.int8_noise)
        return x + y

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(package="privacy_anon")
class FaceModifier(keras.Model):
    """M: rewrites a face so that its identity is gone, keeping pose and layout.

    Args:
        input_size: side of the square input (the paper: 256).
        filters: width of the first conv; 2x and 4x after the down-samplings.
        num_blocks: residual blocks at the bottleneck (the paper: 9).
        output_mode: "tanh" (output = tanh(g(x)), the paper) or "residual"
            (output = clip(x + amplitude * tanh(g(x)), -1, 1), which keeps int8 error small)
            or "luma" (the same with g(x) one channel added to R, G and B alike: M changes
            brightness only, so no colour appears that the face did not have; YCbCr's
            chroma of x + d(1, 1, 1) is x's, up to clipping) or "gain" (R, G and B
            multiplied alike by 1 + amplitude * tanh(g(x)) in [0, 1] units, like light falling
            differently on the face: HSV hue and saturation are x's, up to clipping, where
            "luma"'s brightening lowers saturation).
        residual_amplitude: how far, in [-1, 1] pixel units, "residual" may move a pixel
            ("gain": the largest relative change of brightness).
        upsample: "transpose" (3x3 stride-2 transposed convs, the paper) or "resize"
            (nearest 2x + 3x3 conv: no checkerboard stripes), see `_up_block`.
        outer_kernel: side of the first and last conv (the paper: 7; odd).
        pixel_shuffle: False (the paper) or True: the face enters and leaves as 2x2 pixel
            blocks on channels, and M starts and ends at half resolution (one down- and one
            up-sampling instead of two); int8 gains least on full-resolution layers.
        int8_noise: in training only (`training=True`), every tensor an int8 model stores
            (conv outputs, the norms' steps, the residual sums, the output pixels) gets the
            rounding error of an int8 scale set by its range, times this (`int8_rounding`;
            0: off, 1: int8's own): M learns an edit its int8 export keeps. Inference and
            the export never add it.

    Example:
        >>> m = FaceModifier(input_size=64, filters=8, num_blocks=2)
        >>> m(keras.ops.zeros((1, 64, 64, 3))).shape
        (1, 64, 64, 3)
    """

    def __init__(self, input_size: int = 256, filters: int = 64, num_blocks: int = 9,
                 output_mode: str = "tanh", residual_amplitude: float = 1.0,
                 upsample: str = "transpose", outer_kernel: int = 7,
                 pixel_shuffle: bool = False, int8_noise: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if input_size < 16 or input_size % 4:
            raise ValueError(f"`input_size` must be a multiple of 4 and >= 16, received input_size={input_size}")
        if filters < 1:
            raise ValueError(f"`filters` must be >= 1, received filters={filters}")
        if num_blocks < 0:
            raise ValueError(f"`num_blocks` must be >= 0, received num_blocks={num_blocks}")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"`output_mode` must be one of {OUTPUT_MODES}, received output_mode={output_mode!r}")
        if not 0 < residual_amplitude <= 2:
            raise ValueError(f"`residual_amplitude` must be in (0, 2], received {residual_amplitude}")
        if upsample not in UPSAMPLES:
            raise ValueError(f"`upsample` must be one of {UPSAMPLES}, received upsample={upsample!r}")
        if int(outer_kernel) != outer_kernel or outer_kernel < 1 or outer_kernel % 2 == 0:
            raise ValueError(f"`outer_kernel` must be an odd integer >= 1, received outer_kernel={outer_kernel!r}")
        self.input_size = int(input_size)
        self.upsample = upsample
        self.outer_kernel = int(outer_kernel)
        self.filters = int(filters)
        self.num_blocks = int(num_blocks)
        self.output_mode = output_mode
        self.residual_amplitude = float(residual_amplitude)
        self.pixel_shuffle = bool(pixel_shuffle)

        f, k = self.filters, self.outer_kernel
        init = "glorot_uniform" if output_mode == "tanh" else "zeros"
        if self.pixel_shuffle:
            # the stem starts at the half-resolution width (2f), where down1 would have put it
            self.stem = [SpaceToDepth(name="stem_blocks"), ReflectionPad2D(k // 2, name="stem_pad"),
                         *_conv_block(2 * f, k, 1, "stem")]
            self.down = _conv_block(4 * f, 3, 2, "down2")
            self.up = _up_block(2 * f, "up1", upsample)
        else:
            self.stem = [ReflectionPad2D(k // 2, name="stem_pad"), *_conv_block(f, k, 1, "stem")]
            self.down = [*_conv_block(2 * f, 3, 2, "down1"), *_conv_block(4 * f, 3, 2, "down2")]
            self.up = [*_up_block(2 * f, "up1", upsample), *_up_block(f, "up2", upsample)]
        self.blocks = [ResidualBlock(4 * f, name=f"res{i + 1}") for i in range(self.num_blocks)]
        self.head_pad = ReflectionPad2D(k // 2, name="head_pad")
        # In "residual", "luma" and "gain" mode a zero head makes M start as the identity, so
        # training starts from the face itself instead of from noise the L1 term must first undo.
        channels = 1 if output_mode in ("luma", "gain") else 3
        self.head = layers.Conv2D(4 * channels if self.pixel_shuffle else channels, k,
                                  kernel_initializer=init,
                                  name="head_conv")
        self.head_blocks = [DepthToSpace(name="head_blocks")] if self.pixel_shuffle else []
        self.set_int8_noise(int8_noise)

    def set_int8_noise(self, value: float):
        """Sets `int8_noise` here and in every layer that adds it. It is read when a training
        step is traced: a compiled step keeps the value it was traced with (retrace after)."""
        low, high = INT8_NOISE_RANGE
        if not low <= value <= high:
            raise ValueError(f"`int8_noise` must be in [{low:g}, {high:g}], received int8_noise={value!r}")
        self.int8_noise = float(value)
        for layer in (*self.stem, *self.down, *self.blocks, *self.up):
            for inner in (layer, getattr(layer, "norm1", None), getattr(layer, "norm2", None)):
                if isinstance(inner, (InstanceNorm, ResidualBlock)):
                    inner.int8_noise = self.int8_noise

    def build(self, input_shape=None):
        # Run zeros once so every layer knows its shape (the net is fully convolutional).
        self.call(ops.zeros((1, self.input_size, self.input_size, 3)))
        self.built = True

    def head_logits(self, x, training=False):
        """The head conv's output, before the tanh (and before `head_blocks` re-packs it)."""
        noisy = training and self.int8_noise > 0
        y = x
        for layer in (*self.stem, *self.down, *self.blocks, *self.up, self.head_pad, self.head):
            if isinstance(layer, (InstanceNorm, ResidualBlock)):
                y = layer(y, training=training)
            else:
                y = layer(y)
            if noisy and isinstance(layer, layers.Conv2D):  # Conv2DTranspose is one too
                y = int8_rounding(y, self.int8_noise)
        return y

    def call(self, x, training=False):
        y = self.head_logits(x, training=training)
        for layer in self.head_blocks:
            y = layer(y)
        y = ops.tanh(y)
        if self.output_mode == "gain":  # (x + 1) / 2 times 1 + a y, back in [-1, 1]
            y = ops.clip(x + self.residual_amplitude * y * (x + 1.0), -1.0, 1.0)
        elif self.output_mode != "tanh":  # (B, H, W, 1) in "luma" mode: broadcast over R, G, B
            y = ops.clip(x + self.residual_amplitude * y, -1.0, 1.0)
        if training and self.int8_noise > 0:  # the uint8 output pixels: 255 levels over [-1, 1]
            y = int8_rounding(y, self.int8_noise, span=2.0)
        return y

    def compute_output_shape(self, input_shape):
        return input_shape

    def macs(self) -> int:
        """Multiply-accumulates of one face through M's convs (the rest is small beside them)."""
        side, total = self.input_size, 0
        for layer in (*self.stem, *self.down, *self.blocks, *self.up, self.head, *self.head_blocks):
            if isinstance(layer, SpaceToDepth):
                side //= 2
            elif isinstance(layer, (DepthToSpace, Upsample2x)):
                side *= 2
            elif isinstance(layer, layers.Conv2DTranspose):  # each input pixel spreads a kernel
                total += side * side * int(np.prod(layer.kernel.shape))
                side *= layer.strides[0]
            elif isinstance(layer, layers.Conv2D):
                side //= layer.strides[0]
                total += side * side * int(np.prod(layer.kernel.shape))
            elif isinstance(layer, ResidualBlock):
                total += 2 * side * side * int(np.prod(layer.conv1.kernel.shape))
        return total

    def get_config(self):
        return {
            **super().get_config(),
            "input_size": self.input_size,
            "filters": self.filters,
            "num_blocks": self.num_blocks,
            "output_mode": self.output_mode,
            "residual_amplitude": self.residual_amplitude,
            "upsample": self.upsample,
            "outer_kernel": self.outer_kernel,
            "pixel_shuffle": self.pixel_shuffle,
            "int8_noise": self.int8_noise,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_modifier(cfg) -> FaceModifier:
    """M from a `ModifierConfig`, with its weights built."""
    m = FaceModifier(
        input_size=cfg.input_size,
        filters=cfg.filters,
        num_blocks=cfg.num_blocks,
        output_mode=cfg.output_mode,
        residual_amplitude=cfg.residual_amplitude,
        upsample=cfg.upsample,
        outer_kernel=cfg.outer_kernel,
        pixel_shuffle=cfg.pixel_shuffle,
        int8_noise=cfg.int8_noise,
        name="modifier",
    )
    m.build()
    return m


def modify_uint8(modifier, faces: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """M applied to uint8 faces (N, S, S, 3), returning uint8."""
    out = []
    for i in range(0, len(faces), batch_size):
        x = faces[i:i + batch_size].astype(np.float32) / 127.5 - 1.0
        y = np.asarray(modifier(x, training=False))
        out.append(np.clip(np.rint((y + 1.0) * 127.5), 0, 255).astype(np.uint8))
    return np.concatenate(out) if out else faces[:0]
