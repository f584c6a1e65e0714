"""Frame-mAP@0.5 (VOC all-point AP) against hand-computed values."""

import numpy as np
import pytest

from privacy_anon.errors import InputError
from privacy_anon.evaluation.detection import evaluate_actions, frame_map, iou_matrix, voc_ap

CLASSES = ["drink", "phone", "photo"]


def _small_case():
    gt = [
        {"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "classes": [0, 0]},  # frame 0: A, B
        {"boxes": [[0, 0, 10, 10], [40, 40, 60, 60]], "classes": [0, 1]},  # frame 1: C, D
    ]
    det = [
        {"boxes": [[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 5, 5]],
         "scores": [0.9, 0.8, 0.95], "classes": [0, 0, 1]},
        {"boxes": [[0, 0, 10, 5], [50, 50, 60, 60], [40, 40, 60, 60], [0, 0, 9, 9]],
         "scores": [0.7, 0.6, 0.3, 0.5], "classes": [0, 0, 1, 2]},
    ]
    return det, gt


def test_frame_map_agrees_with_the_hand_computation():
    det, gt = _small_case()
    # Class 'drink' (0): 3 ground-truth boxes (A, B in frame 0; C in frame 1).
    #   Ranked detections:
    #   0.9 frame 0 [0,0,10,10]  IoU(A) = 1            -> TP (A taken)
    #   0.8 frame 0 [1,0,11,10]  IoU(A) = 90/110, but A is taken; IoU(B) = 0 -> FP
    #   0.7 frame 1 [0,0,10,5]   IoU(C) = 50/100 = 0.5 (>= 0.5)             -> TP
    #   0.6 frame 1 [50,50,60,60] IoU(C) = 0                               -> FP
    #   cumulative TP 1,1,2,2; precision 1, 1/2, 2/3, 1/2; recall 1/3, 1/3, 2/3, 2/3
    #   envelope (max precision at this recall or beyond): 1, 2/3, 2/3, 1/2
    #   AP = (1/3 - 0) * 1 + (2/3 - 1/3) * 2/3 + (1 - 2/3) * 0 = 1/3 + 2/9 = 5/9
    # Class 'phone' (1): 1 ground-truth box (D in frame 1).
    #   0.95 frame 0 [0,0,5,5]: frame 0 has no phone box -> FP
    #   0.3  frame 1 [40,40,60,60]: IoU(D) = 1 -> TP
    #   precision 0, 1/2; recall 0, 1; envelope 1/2, 1/2 -> AP = (1 - 0) * 1/2 = 1/2
    # Class 'photo' (2): no ground truth -> None, left out of the mean.
    # mAP = (5/9 + 1/2) / 2 = 19/36
    result = frame_map(det, gt, CLASSES, iou=0.5)
    assert result["per_class"]["drink"] == pytest.approx(5 / 9)
    assert result["per_class"]["phone"] == pytest.approx(1 / 2)
    assert result["per_class"]["photo"] is None
    assert result["mean"] == pytest.approx(19 / 36)
    assert result["num_gt"] == {"drink": 3, "phone": 1, "photo": 0}


def test_iou_just_below_the_threshold_is_a_miss():
    gt = [{"boxes": [[0, 0, 10, 10]], "classes": [0]}]
    det = [{"boxes": [[0, 0, 10, 4.9]], "scores": [1.0], "classes": [0]}]  # IoU 0.49
    assert frame_map(det, gt, 1)["mean"] == 0.0
    assert frame_map(det, gt, 1, iou=0.45)["mean"] == 1.0


def test_each_ground_truth_box_is_matched_once_to_the_best_free_one():
    # Two overlapping people drinking. The 0.9 detection takes G1 (IoU 1). The 0.8 one
    # overlaps G1 best (taken) but G2 enough (IoU 0.6): matched to G2, a true positive.
    # A third detection on G1 again is a duplicate: false positive.
    gt = [{"boxes": [[0, 0, 10, 10], [4, 0, 14, 10]], "classes": [0, 0]}]
    det = [{"boxes": [[0, 0, 10, 10], [2, 0, 12, 10], [0, 0, 10, 10]],
            "scores": [0.9, 0.8, 0.7], "classes": [0, 0, 0]}]
    assert iou_matrix([[2, 0, 12, 10]], [[0, 0, 10, 10], [4, 0, 14, 10]]).round(3).tolist() == [[0.667, 0.667]]
    # TP, TP, FP: precision 1, 1, 2/3 at recall 1/2, 1, 1 -> AP = 1
    assert frame_map(det, gt, 1)["mean"] == pytest.approx(1.0)
    # Now the duplicate outranks the in-between box:
    det[0]["scores"] = [0.95, 0.8, 0.9]  # boxes: G1-exact, between, G1-exact again
    # 0.95 [0,0,10,10] -> G1 TP; 0.9 [0,0,10,10] -> G1 taken, IoU(G2) = 60/140 -> FP;
    # 0.8 [2,0,12,10] -> G2 (IoU 2/3) TP. precision 1, 1/2, 2/3; recall 1/2, 1/2, 1
    # envelope 1, 2/3, 2/3 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert frame_map(det, gt, 1)["mean"] == pytest.approx(5 / 6)


def test_voc_ap_of_a_perfect_and_an_empty_ranking():
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == 1.0
    assert voc_ap(np.array([]), np.array([])) == 0.0


def test_mapping_inputs_and_frames_without_detections():
    gt = {"v1/0001": {"boxes": [[0, 0, 10, 10]], "classes": [1]},
          "v1/0002": {"boxes": [[0, 0, 10, 10]], "classes": [1]}}
    det = {"v1/0001": {"boxes": [[0, 0, 10, 10]], "scores": [0.5], "classes": [1]}}
    result = frame_map(det, gt, 2)
    assert result["per_class"] == {"0": None, "1": 0.5}


def test_bad_inputs():
    gt = [{"boxes": [[0, 0, 10, 10]], "classes": [0]}]
    with pytest.raises(InputError, match="class 3 is not an index in 0..1"):
        frame_map([{"boxes": [[0, 0, 1, 1]], "scores": [1], "classes": [3]}], gt, 2)
    with pytest.raises(InputError, match="no 'scores'"):
        frame_map([{"boxes": [[0, 0, 1, 1]], "classes": [0]}], gt, 2)
    with pytest.raises(InputError, match="1 boxes, 2 classes"):
        frame_map([{"boxes": [[0, 0, 1, 1]], "scores": [1], "classes": [0, 0]}], gt, 2)
    with pytest.raises(InputError, match="2 frames of detections but 1"):
        frame_map([{"boxes": [], "scores": [], "classes": []}] * 2, gt, 2)


def test_evaluate_actions_anonymizes_before_detecting():
    rng = np.random.default_rng(0)
    samples = []
    for i in range(4):
        frame = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
        samples.append({"frame": frame, "face_boxes": [[30, 10, 40, 20]],
                        "action_boxes": [[20, 5, 60, 60]], "action_classes": [i % 2]})
    seen = []

    def detect_fn(frames):
        # a "detector" that finds the action only if the face region still has texture
        out = []
        for f, s in zip(frames, samples[len(seen):]):
            seen.append(f)
            visible = f[10:20, 30:40].std() > 0
            out.append({"boxes": [[20, 5, 60, 60]] if visible else [[0, 0, 5, 5]],
                        "scores": [0.9], "classes": s["action_classes"]})
        return out

    res = evaluate_actions("none", samples, detect_fn, ["a", "b"], batch_size=3)
    assert res["none"]["frame_map"]["mean"] == 1.0 and res["none"]["num_faces"] == 4
    seen.clear()
    res = evaluate_actions(["mask"], lambda: iter(samples), detect_fn, ["a", "b"])
    assert res["mask"]["frame_map"]["mean"] == 0.0
    # face box x1.6 about (35, 15): [27, 7, 43, 23] is black, the rest untouched
    assert (seen[0][7:23, 27:43] == 0).all()
    assert np.array_equal(seen[0][30:], samples[0]["frame"][30:])
