"""R, the realism critic: a small PatchGAN (Isola et al. 2017) that tells real face crops from
M's, patch by patch, so that M's edits must look like skin, eyes and mouths rather than the
stripes and blobs that fool D most cheaply. Only training uses it; it is never exported.

Pixels are float32 in [-1, 1]; the output is one logit per ~30-pixel patch.
"""

from __future__ import annotations

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="privacy_anon")
class PatchCritic(keras.Model):
    """Logits (N, S/8, S/8, 1): > 0 where a patch looks like a real photo's.

    Args:
        filters: width of the first conv; doubled at each of the 3 stride-2 convs.

    Example:
        >>> critic = PatchCritic(16)
        >>> critic(np.zeros((2, 128, 128, 3), "float32")).shape
        (2, 16, 16, 1)
    """

    def __init__(self, filters: int = 16, **kwargs):
        super().__init__(**kwargs)
        if filters < 1:
            raise ValueError(f"`filters` must be >= 1, received filters={filters}")
        self.filters = int(filters)
        # no norm in the first layer (pix2pix); layer norm elsewhere: batch statistics would
        # let the critic tell a batch of M's faces from a batch of originals as a whole
        self.body = [
            layers.Conv2D(self.filters, 4, strides=2, padding="same", name="conv1"),
            layers.LeakyReLU(0.2),
            layers.Conv2D(self.filters * 2, 4, strides=2, padding="same", name="conv2"),
            layers.LayerNormalization(axis=-1, name="norm2"),
            layers.LeakyReLU(0.2),
            layers.Conv2D(self.filters * 4, 4, strides=2, padding="same", name="conv3"),
            layers.LayerNormalization(axis=-1, name="norm3"),
            layers.LeakyReLU(0.2),
            layers.Conv2D(1, 3, padding="same", name="logits"),
        ]

    def call(self, x):
        for layer in self.body:
            x = layer(x)
        return x

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}
