"""How far full-int8 M is from float M on real face crops, per output mode; run by hand.

For each M variant: train briefly on real face crops with a stand-in objective (gradient
ascent on a fixed random conv classifier's loss, a cheap proxy for D in "move the face away
from its identity", against an L1 photorealism term), then export to full int8 (calibrated on the
same crops) and report PSNR / SSIM / mean pixel error of int8 against float, and how far the
float M moves a face (mean |M(x) - x|, in pixels): a small amplitude that buys int8 fidelity
by barely changing faces would show up there. This is not the re-identification evaluation;
it only guards the "without weakening anonymization" half of the goal crudely.

Photos are only read (never written): faces are found with BlazeFace and cropped x1.6.

Example:
    python benchmarks/bench_int8_quality.py --faces ../shared/data/celeba-mini --steps 100
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

VARIANTS = {
    # name: (output_mode, residual_amplitude)
    "tanh": ("tanh", 1.0),
    "residual A=1.0": ("residual", 1.0),
    "residual A=0.5": ("residual", 0.5),
}


def train_proxy(modifier, crops, steps, seed=0, lr=1e-3, l1=1.0, batch=8, classes=64):
    """A few Adam steps of gradient ascent on a fixed random "identity classifier" (a stand-in
    for D, as in Algorithm 1's M step) with an L1 leash. The label of each face is the
    classifier's own prediction on the original, so the loss has a gradient at the identity
    mapping (a residual M starts there; a squared feature distance would be stuck at 0)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    classifier = keras.Sequential([keras.layers.Conv2D(16, 5, strides=2, activation="relu"),
                                   keras.layers.Conv2D(32, 5, strides=2, activation="relu"),
                                   keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(classes)])
    classifier.trainable = False
    opt = keras.optimizers.Adam(lr, beta_1=0.5)
    x_all = crops.astype("float32") / 127.5 - 1.0
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x):
        label = tf.argmax(classifier(x), axis=-1)
        with tf.GradientTape() as tape:
            y = modifier(x, training=True)
            loss = -ce(label, classifier(y)) + l1 * tf.reduce_mean(tf.abs(y - x))
        grads = tape.gradient(loss, modifier.trainable_variables)
        opt.apply_gradients(zip(grads, modifier.trainable_variables))
        return loss

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        step(x_all[rng.choice(len(x_all), batch, replace=False)])


def main():
    p = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--faces", required=True, help="folder of photos (folder-per-identity is fine)")
    p.add_argument("--num", type=int, default=120, help="face crops used (train, calibrate, compare)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--filters", type=int, default=32)
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args()

    from privacy_anon.export.tflite import compare, convert_modifier, keras_outputs, representative_crops
    from privacy_anon.models.modifier import FaceModifier
    from privacy_anon.runtime.modifier import TFLiteModifier

    crops = representative_crops(args.faces, args.size, limit=args.num)
    print(f"{len(crops)} face crops at {args.size}px; M {args.filters} filters / {args.blocks} blocks; "
          f"{args.steps} proxy steps")
    print("| variant | int8 PSNR dB | SSIM | mean / max px err | float M moves a face by (mean px) | int8 MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.variants.split(","):
        mode, amp = VARIANTS[name]
        m = FaceModifier(args.size, args.filters, args.blocks, output_mode=mode, residual_amplitude=amp)
        m.build()
        t = time.perf_counter()
        train_proxy(m, crops, args.steps)
        train_s = time.perf_counter() - t
        data = convert_modifier(m, "int8", crops)
        path = f"/tmp/bench_int8_{os.getpid()}.tflite"
        with open(path, "wb") as f:
            f.write(data)
        q = TFLiteModifier(path, num_threads=2)
        got = np.concatenate([q.run(crops[i:i + 8]) for i in range(0, len(crops), 8)])
        want = keras_outputs(m, crops)
        s = compare(want, got)
        moved = np.abs(want.astype(int) - crops).mean()
        print(f"| {name} | {s['psnr']:.2f} | {s['ssim']:.4f} | {s['mean_abs_diff']:.2f} / {s['max_abs_diff']} "
              f"| {moved:.1f} | {len(data) / 1e6:.2f} |  (train {train_s:.0f} s)", flush=True)
        os.remove(path)


if __name__ == "__main__":
    main()
