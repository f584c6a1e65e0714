import numpy as np
import pytest

from privacy_anon.faces.boxes import (
    BoxTracker,
    clip_boxes,
    enlarge_boxes,
    iou_matrix,
    nms,
    weighted_nms,
)


def test_enlarge_about_centre_keeps_shape():
    box = np.array([10, 20, 30, 60], np.float32)
    out = enlarge_boxes(box, 1.6)
    assert out.shape == (4,)
    np.testing.assert_allclose(out, [4, 8, 36, 72])
    many = enlarge_boxes(np.stack([box, box + 5]), 2.0)
    assert many.shape == (2, 4) and many.dtype == np.float32
    np.testing.assert_allclose((many[:, :2] + many[:, 2:]) / 2, [[20, 40], [25, 45]])


def test_enlarge_rejects_bad_factor():
    with pytest.raises(ValueError, match="-1"):
        enlarge_boxes([0, 0, 1, 1], -1)


def test_clip_boxes():
    out = clip_boxes([[-5, -5, 50, 20], [10, 10, 20, 20]], width=40, height=30)
    np.testing.assert_allclose(out, [[0, 0, 40, 20], [10, 10, 20, 20]])
    with pytest.raises(ValueError, match="0"):
        clip_boxes([[0, 0, 1, 1]], 0, 10)


def test_iou_matrix_values_and_empty():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [50 / 150, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(iou[1], 0.0)  # zero-area box: no NaN
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        iou_matrix(np.zeros((3, 3)), b)


def test_nms_keeps_best_of_overlapping():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, [0.5, 0.9, 0.7], iou=0.3)
    assert keep.tolist() == [1, 2]
    assert nms(np.zeros((0, 4)), [], 0.3).tolist() == []
    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        nms(boxes, [1, 2], 0.3)


def test_weighted_nms_averages_clusters():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], np.float32)
    points = np.array([[[0, 0]], [[2, 0]], [[50, 50]]], np.float32)
    out, scores, pts = weighted_nms(boxes, [0.75, 0.25, 0.9], 0.3, points)
    assert scores.tolist() == pytest.approx([0.9, 0.75])
    np.testing.assert_allclose(out[1], [0.5, 0, 10.5, 10])  # score-weighted mean
    np.testing.assert_allclose(pts[1], [[0.5, 0]])
    empty = weighted_nms(np.zeros((0, 4)), [], 0.3)
    assert empty[0].shape == (0, 4) and empty[2] is None


def _box_frames(n=20, drop=(11,)):
    """A face box drifting right for frames 1..n; the detector misses it in `drop`."""
    frames = []
    for t in range(1, n + 1):
        box = np.array([[100 + 2 * t, 50, 160 + 2 * t, 120]], np.float32)
        frames.append(np.zeros((0, 4), np.float32) if t in drop else box)
    return frames


def test_tracker_holds_a_lost_face():
    tracker = BoxTracker(hold_frames=5)
    for t, dets in enumerate(_box_frames(), start=1):
        out = tracker.update(dets)
        assert len(out) == 1, f"frame {t}: expected the face, got {out}"
        if t == 11:  # detection removed: the held track is returned
            assert iou_matrix(out, [[100 + 22, 50, 160 + 22, 120]])[0, 0] > 0.8


def test_tracker_forgets_after_hold_frames():
    tracker = BoxTracker(hold_frames=2)
    tracker.update([[0, 0, 10, 10]])
    assert len(tracker.update(np.zeros((0, 4)))) == 1
    assert len(tracker.update(np.zeros((0, 4)))) == 1
    assert len(tracker.update(np.zeros((0, 4)))) == 0
    assert len(tracker) == 0


def test_tracker_output_always_contains_raw_detection():
    rng = np.random.default_rng(0)
    tracker = BoxTracker(hold_frames=3, smoothing=0.8)
    for _ in range(50):
        x, y = rng.uniform(0, 200, 2)
        s = rng.uniform(20, 80)
        det = np.array([[x, y, x + s, y + s * 1.2]], np.float32)
        out = tracker.update(det)
        covering = (out[:, 0] <= det[0, 0]) & (out[:, 1] <= det[0, 1]) & \
                   (out[:, 2] >= det[0, 2]) & (out[:, 3] >= det[0, 3])
        assert covering.any()


def test_tracker_smooths_jitter():
    rng = np.random.default_rng(1)
    tracker = BoxTracker(smoothing=0.6)
    base = np.array([100, 100, 160, 170], np.float32)
    centres = []
    tracks = []
    for _ in range(30):
        det = base + rng.normal(0, 3, 4).astype(np.float32)
        tracker.update(det[None])
        tracks.append(tracker._boxes[0].copy())
        centres.append(det)
    assert np.std(np.diff(np.asarray(tracks), axis=0)) < np.std(np.diff(np.asarray(centres), axis=0))


def test_tracker_two_faces_and_validation():
    tracker = BoxTracker()
    out = tracker.update([[0, 0, 10, 10], [100, 100, 120, 120]], scores=[0.9, 0.8])
    assert out.shape == (2, 4)
    out = tracker.update([[101, 101, 121, 121]])  # the first face missed: held
    assert out.shape == (2, 4)
    tracker.reset()
    assert tracker.update(np.zeros((0, 4))).shape == (0, 4)
    for kwargs, bad in [({"hold_frames": -1}, "-1"), ({"smoothing": 1.0}, "1.0"), ({"match_iou": 0}, "0")]:
        with pytest.raises(ValueError, match=bad):
            BoxTracker(**kwargs)
