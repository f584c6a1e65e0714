"""Before/after of public-domain faces that the installed packages ship (scikit-image's
astronaut, matplotlib's Grace Hopper) through a bundle and the TensorFlow-free runtime, as a
user's `anonymize --bundle` would: the README's picture.

    python benchmarks/before_after_public.py RUN/bundle docs/images/before_after_public.png
"""

from __future__ import annotations

import sys

import cv2
import numpy as np


def public_faces() -> list[np.ndarray]:
    from matplotlib import cbook
    from matplotlib.image import imread
    from skimage.data import astronaut

    hopper = imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))[..., :3]
    # the face region of each, with room around it: what a video frame's face would be
    return [np.ascontiguousarray(astronaut()[0:300, 110:350]),
            np.ascontiguousarray(np.asarray(hopper, np.uint8)[40:440, 60:460])]


def main(bundle: str, out: str) -> None:
    from privacy_anon.io_utils import atomic_write_bytes
    from privacy_anon.runtime import Anonymizer

    anonymizer = Anonymizer(bundle)
    tiles = []
    for image in public_faces():
        after = anonymizer.anonymize_image(image)
        if after is None:
            raise SystemExit(f"{bundle}: the runtime dropped the image (detection failed)")
        pair = np.concatenate([image, after], axis=1)
        tiles.append(cv2.resize(pair, (512, round(512 * pair.shape[0] / pair.shape[1])),
                                interpolation=cv2.INTER_AREA))
    grid = np.concatenate(tiles, axis=0)
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    atomic_write_bytes(out, png.tobytes())
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
