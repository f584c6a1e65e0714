"""Where a recognizer reads identity: light (Y) or colour (Cb, Cr), coarse or fine; run by hand.

Each method below changes one part of the enlarged face box and keeps the other, and the
yardstick (`privacy-anon evaluate`'s, dlib as the attacker at the original face location,
faceres too with --faceres) measures re-identification, "still a face", SSIM and colour:

- y-blur8: the light channel down-sampled to 8 x 8 and back, colour kept;
- y-flat: the light channel replaced by its mean over the box, colour kept;
- c-blur8: colour down-sampled to 8 x 8 and back, light kept;
- gray: colour removed, light kept.

An edit family can only reach chance if what it may change carries the identity: M's
`output_mode: luma` edits light only, so if `gray` kept dlib near the originals and
`y-blur8` took it near blur8, identity lives in light and a light-only M is not what holds
re-identification up.

Photos are only read; the report goes to --out.

Example:
    python benchmarks/bench_identity_channels.py --faces ../shared/data/celeba-mini \
        --faces-box-cache RUN/faces --identities RUN/heldout_identities.txt --out OUT
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from privacy_anon.baselines import Blur, CropModifier  # noqa: E402

BLUR8 = Blur(8)


class ChannelEdit(CropModifier):
    """Changes the crop's light (YCrCb's Y) with `light` and its colour (Cr, Cb) with
    `colour`; each is a function of a float (h, w, c) array."""

    def __init__(self, name, light, colour):
        self.name, self.light, self.colour = name, light, colour

    def _modify(self, crop):
        ycc = cv2.cvtColor(crop, cv2.COLOR_RGB2YCrCb).astype(np.float32)
        ycc = np.concatenate([self.light(ycc[..., :1]), self.colour(ycc[..., 1:])], -1)
        return cv2.cvtColor(np.clip(np.rint(ycc), 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2RGB)


def keep(x):
    return x


def coarse(x):
    """Down-sampled to 8 x 8 and back, as the blur8 baseline does to a whole crop."""
    return BLUR8._modify(x).reshape(x.shape)


def flat(x):
    return np.broadcast_to(x.mean(axis=(0, 1), keepdims=True), x.shape).copy()


def neutral(x):
    return np.full_like(x, 128.0)


METHODS = [ChannelEdit("y-blur8", coarse, keep), ChannelEdit("y-flat", flat, keep),
           ChannelEdit("c-blur8", keep, coarse), ChannelEdit("gray", keep, neutral)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", required=True, help="folder-per-identity photos")
    p.add_argument("--faces-box-cache", required=True,
                   help="their `detect-faces --format folders` cache")
    p.add_argument("--identities", help="only these identity folders (one name per line)")
    p.add_argument("--max-photos", type=int, default=300)
    p.add_argument("--faceres",
                   help="a second attacker: the folder with faceres.json and faceres.bin")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="photo subset and pairs")
    p.add_argument("--out", required=True, help="report folder")
    args = p.parse_args()

    from privacy_anon.evaluation.yardstick import run_yardstick

    results = run_yardstick(args.faces, args.faces_box_cache, args.identities,
                           ["none", "blur8", *METHODS], args.out, max_photos=args.max_photos,
                           workers=args.workers, seed=args.seed, faceres=args.faceres)
    print("| method | re-id %, dlib | re-id %, faceres | still a face % | SSIM | sat. added "
          "| chroma shift |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, m in results.items():
        print(f"| {name} | {100 * m['reid_accuracy']:.1f} | "
              f"{100 * m.get('faceres_reid_accuracy', float('nan')):.1f} | "
              f"{100 * m['face_found']:.1f} | {m['ssim']:.3f} | {m['saturation_added']:+.1f} | "
              f"{m['chroma_shift']:.2f} |")


if __name__ == "__main__":
    main()
