"""Benchmark A (Model Garden Faster R-CNN): seconds per traced training step, parameters, and
a short training run on the synthetic action set with frame-mAP@0.5 before and after.

Run by hand (CPU numbers go to benchmarks/RESULTS.md):

    python benchmarks/bench_action_detector.py --configs tiny,paper --train-steps 600

A step is `losses` + gradients + Adam (lr 1e-3, beta1 0.5: the paper's A optimizer) inside one
`tf.function`; the first call (tracing) is timed apart from the following ones.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from privacy_anon.config import get_preset  # noqa: E402
from privacy_anon.data.actions import make_dataset, synthetic_actions  # noqa: E402
from privacy_anon.models.action_detector import ActionDetector  # noqa: E402


def make_step(detector, learning_rate=1e-3):
    import tf_keras  # the detector's variables are tf_keras ones; so is its optimizer here

    optimizer = tf_keras.optimizers.Adam(learning_rate, beta_1=0.5, beta_2=0.999)

    @tf.function
    def step(images, boxes, classes):
        with tf.GradientTape() as tape:
            losses = detector.losses(images, boxes, classes)
        grads = tape.gradient(losses["total"], detector.trainable_variables)
        optimizer.apply_gradients(zip(grads, detector.trainable_variables))
        return losses

    return step


def time_steps(preset: str, batch_size: int, steps: int) -> dict:
    config = get_preset(preset).detector
    size = (config.image_height, config.image_width)
    t0 = time.perf_counter()
    detector = ActionDetector(config)
    build = time.perf_counter() - t0
    data = synthetic_actions(batch_size, size, num_classes=min(5, config.num_classes - 1), seed=0)
    batch = next(iter(make_dataset(data, batch_size, size, max_boxes=4, max_faces=2, shuffle=False)))
    step = make_step(detector)
    t0 = time.perf_counter()
    step(batch["images"], batch["boxes"], batch["classes"])["total"].numpy()
    trace = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(batch["images"], batch["boxes"], batch["classes"])["total"].numpy()
        times.append(time.perf_counter() - t0)
    return {"preset": preset, "backbone": f"resnet{config.backbone_depth}x{config.backbone_width:g}",
            "image_size": list(size), "batch_size": batch_size, "params": detector.count_params(),
            "build_s": round(build, 1), "trace_s": round(trace, 1), "steps": steps,
            "s_per_step": round(float(np.mean(times)), 3),
            "s_per_step_min": round(float(np.min(times)), 3)}


def frame_map_of(detector, data, batch_size: int, size) -> float:
    from privacy_anon.evaluation.detection import frame_map

    detect = tf.function(detector.detect)
    dataset = make_dataset(data, batch_size, size, max_boxes=4, max_faces=2, shuffle=False,
                           drop_remainder=False)
    detections, truth = [], []
    for batch in dataset:
        out = {k: v.numpy() for k, v in detect(batch["images"]).items()}
        for i in range(len(out["num_detections"])):
            n = out["num_detections"][i]
            valid = batch["classes"][i].numpy() > 0
            # frame_map counts classes from 0; the detector from 1 (0 = background)
            detections.append({"boxes": out["boxes"][i, :n], "scores": out["scores"][i, :n],
                               "classes": out["classes"][i, :n] - 1})
            truth.append({"boxes": batch["boxes"][i].numpy()[valid],
                          "classes": batch["classes"][i].numpy()[valid] - 1})
    return frame_map(detections, truth, data.class_names)


def train_run(steps: int, batch_size: int, train_frames: int, test_frames: int) -> dict:
    config = get_preset("tiny").detector
    size = (config.image_height, config.image_width)
    train = synthetic_actions(train_frames, size, num_classes=config.num_classes - 1, seed=0)
    test = synthetic_actions(test_frames, size, num_classes=config.num_classes - 1, seed=1)
    tf.keras.utils.set_random_seed(0)
    detector = ActionDetector(config, class_names=train.class_names)
    before = frame_map_of(detector, test, 8, size)
    step = make_step(detector)
    batches = iter(make_dataset(train, batch_size, size, max_boxes=4, max_faces=2, seed=0, repeat=True))
    t0 = time.perf_counter()
    log = []
    for i in range(steps):
        batch = next(batches)
        losses = step(batch["images"], batch["boxes"], batch["classes"])
        if (i + 1) % max(1, steps // 10) == 0:
            log.append({"step": i + 1, **{k: round(float(v), 4) for k, v in losses.items()}})
            print(log[-1], flush=True)
    seconds = time.perf_counter() - t0
    after = frame_map_of(detector, test, 8, size)
    return {"train_frames": train_frames, "test_frames": test_frames, "steps": steps,
            "batch_size": batch_size, "train_s": round(seconds, 1),
            "map_before": round(before["mean"], 4), "map_after": round(after["mean"], 4),
            "per_class_after": {k: round(v, 4) for k, v in after["per_class"].items()},
            "loss_log": log}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--configs", default="tiny,paper", help="presets to time, comma-separated")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after tracing")
    parser.add_argument("--tiny-batch", type=int, default=2)
    parser.add_argument("--paper-batch", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=600,
                        help="steps of the synthetic training run (0: skip it)")
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--train-frames", type=int, default=480)
    parser.add_argument("--test-frames", type=int, default=120)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    results = {"timing": [], "train": None}
    for preset in [c for c in args.configs.split(",") if c]:
        batch = args.paper_batch if preset == "paper" else args.tiny_batch
        results["timing"].append(time_steps(preset, batch, args.steps))
        print(json.dumps(results["timing"][-1]), flush=True)
    if args.train_steps > 0:
        results["train"] = train_run(args.train_steps, args.train_batch, args.train_frames,
                                     args.test_frames)
        print(json.dumps({k: v for k, v in results["train"].items() if k != "loss_log"}), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
