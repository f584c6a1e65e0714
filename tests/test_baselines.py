"""Baselines (paper 5.2): one modifier interface, boxes enlarged x1.6, pixels outside untouched."""

import subprocess
import sys

import numpy as np
import pytest
import skimage.data

from privacy_anon import baselines
from privacy_anon.errors import InputError


@pytest.fixture(scope="module")
def frame():
    return skimage.data.astronaut()  # 512x512 RGB uint8, public domain


def test_every_baseline_name_gives_a_modifier_that_keeps_crop_sizes(frame):
    crops = [frame[60:190, 150:290].copy(), frame[:7, :5].copy(), frame[:1, :1].copy()]
    for name in baselines.BASELINE_NAMES:
        m = baselines.get_modifier(name, seed=1)
        assert m.name == name
        out = m.modify_crops(crops)
        assert [o.shape for o in out] == [c.shape for c in crops], name
        assert all(o.dtype == np.uint8 for o in out), name
        if name != "none":
            assert not np.array_equal(out[0], crops[0]), f"{name} changed nothing"


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(InputError, match="valid names: none, blur8, blur16, blur24, mask"):
        baselines.get_modifier("blur9")
    with pytest.raises(InputError, match="'learned' needs a trained model"):
        baselines.get_modifier("learned")


def test_empty_or_repeated_method_list_is_an_error():
    with pytest.raises(InputError, match="empty method list"):
        baselines.parse_methods("")
    with pytest.raises(InputError, match="empty method list"):
        baselines.parse_methods([])
    with pytest.raises(InputError, match="more than once"):
        baselines.parse_methods("none,mask,none")
    assert baselines.parse_methods(" none, blur8 ,mask") == ["none", "blur8", "mask"]


def test_register_a_learned_modifier_and_pass_objects():
    class Invert:
        name = "learned"

        def __init__(self, seed=0):
            self.seed = seed

        def modify_crops(self, crops):
            return [255 - c for c in crops]

    baselines.register_modifier("learned", Invert, replace=True)
    try:
        m = baselines.get_modifier("learned", seed=3)
        assert isinstance(m, Invert) and m.seed == 3
        assert baselines.parse_methods("none,learned") == ["none", "learned"]
        obj = Invert()
        assert baselines.get_modifier(obj) is obj
        with pytest.raises(InputError, match="reserved"):
            baselines.register_modifier("mask", Invert)
    finally:
        baselines._FACTORIES.pop("learned", None)


def test_outside_the_enlarged_box_is_bit_identical(frame):
    box = np.array([[175.0, 76.0, 265.0, 166.0]])  # the astronaut's face
    for name in baselines.BASELINE_NAMES:
        out = baselines.anonymize_frame(frame, box, name)
        (x1, y1, x2, y2), = baselines.face_regions(box, 512, 512)
        # enlarged x1.6 about the centre (220, 121): sides 144 -> [148, 49, 292, 193]
        assert (x1, y1, x2, y2) == (148, 49, 292, 193)
        outside = np.ones(frame.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        assert np.array_equal(out[outside], frame[outside]), name
        if name != "none":
            assert not np.array_equal(out[y1:y2, x1:x2], frame[y1:y2, x1:x2]), name
    assert np.array_equal(frame, skimage.data.astronaut()), "the input frame was changed"


def test_boxes_are_clipped_at_the_borders_and_outside_boxes_dropped(frame):
    boxes = np.array([[-20.0, -10.0, 30.0, 40.0],   # over the top-left corner
                      [480.0, 490.0, 530.0, 520.0],  # over the bottom-right corner
                      [600.0, 600.0, 700.0, 700.0]])  # wholly outside: dropped
    regions = baselines.face_regions(boxes, 512, 512)
    # box 0: centre (5, 15), size 50x50 -> 80x80: [-35, -25, 45, 55] -> clipped [0, 0, 45, 55]
    assert regions.tolist() == [[0, 0, 45, 55], [465, 481, 512, 512]]
    out = baselines.anonymize_frame(frame, boxes, "mask")
    assert (out[:55, :45] == 0).all() and (out[481:, 465:] == 0).all()
    outside = np.ones((512, 512), bool)
    outside[:55, :45] = outside[481:, 465:] = False
    assert np.array_equal(out[outside], frame[outside])


def test_frames_without_boxes_and_several_frames_in_one_call(frame):
    calls = []

    class Count:
        name = "count"

        def modify_crops(self, crops):
            calls.append(len(crops))
            return [np.zeros_like(c) for c in crops]

    small = frame[:100, :120].copy()
    outs = baselines.anonymize_frames([frame, small, frame], [[], [[10, 10, 30, 30]], np.zeros((0, 4))],
                                      Count())
    assert calls == [1], "all crops of a batch go to one modify_crops call"
    assert np.array_equal(outs[0], frame) and np.array_equal(outs[2], frame)
    assert (outs[1][4:36, 4:36] == 0).all()


def test_bad_inputs_name_the_problem(frame):
    with pytest.raises(InputError, match=r"x2 < x1"):
        baselines.anonymize_frame(frame, [[50, 50, 10, 60]], "mask")
    with pytest.raises(InputError, match=r"shape \(N, 4\)"):
        baselines.anonymize_frame(frame, [[1, 2, 3]], "mask")
    with pytest.raises(InputError, match=r"RGB uint8"):
        baselines.anonymize_frame(frame.astype(np.float32), [[1, 2, 3, 4]], "mask")

    class Shrink:
        name = "shrink"

        def modify_crops(self, crops):
            return [c[:-1] for c in crops]

    with pytest.raises(InputError, match="'shrink' returned"):
        baselines.anonymize_frame(frame, [[10, 10, 50, 50]], Shrink())


def test_noise_scale_is_variance_on_0_1_pixels():
    grey = np.full((200, 200, 3), 128, np.uint8)  # 0.5: clipping at 0 and 1 is rare for 0.1
    out = baselines.get_modifier("noise0.1", seed=0).modify_crops([grey])[0]
    diff = out.astype(np.float64) / 255 - 128 / 255
    clipped = (out == 0) | (out == 255)
    assert clipped.mean() < 0.2
    # the clipped tails shrink the measured variance a little below 0.1
    assert 0.07 < diff.var() < 0.1
    again = baselines.get_modifier("noise0.1", seed=0).modify_crops([grey])[0]
    assert np.array_equal(out, again), "same seed, same noise"


def test_blur_keeps_only_the_low_resolution_image():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    out = baselines.get_modifier("blur8").modify_crops([crop])[0]
    small = out.reshape(8, 12, 8, 12, 3).mean(axis=(1, 3))
    # an 8x8 image up-sampled bilinearly: neighbouring pixels differ little
    assert np.abs(np.diff(out.astype(int), axis=0)).mean() < 5
    assert small.std() < crop.std() / 4


def test_superpixel_pixels_take_their_segment_mean(frame):
    crop = frame[60:190, 150:290].copy()
    out = baselines.get_modifier("superpixel").modify_crops([crop])[0]
    colours = np.unique(out.reshape(-1, 3), axis=0)
    assert 10 <= len(colours) <= 80  # about 40 segments of one colour each


def test_edge_is_a_binary_edge_map(frame):
    out = baselines.get_modifier("edge").modify_crops([frame[60:190, 150:290].copy()])[0]
    assert set(np.unique(out)) <= {0, 255} and 0.01 < (out == 255).mean() < 0.5


def test_module_imports_no_tensorflow():
    code = "import sys, privacy_anon.baselines; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
