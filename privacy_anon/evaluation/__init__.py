"""Evaluation: face verification (LFW protocol), action frame-mAP, and the report.

    faces = evaluate_faces(["none", "blur8", "mask"], read_pairs("pairs.txt", lfw_dir),
                           DlibRecognizer(), image_root=lfw_dir)
    actions = evaluate_actions(["none", "blur8", "mask"], samples, detect_fn, class_names)
    write_report(merge_results(faces, actions), "eval-out")

The yardstick on real photos (dlib re-identification with the attacker at the original face
box, MTCNN "still a face", SSIM/PSNR, saturation added, landmark shift; privacy_plane.png):

    from privacy_anon.evaluation.yardstick import run_yardstick
    run_yardstick(photos_root, boxes_cache, "heldout_identities.txt", ["none", "blur8"], "out")

No TensorFlow is imported here; recognizers wrapping D receive the model from the caller.
"""

from privacy_anon.evaluation.detection import evaluate_actions, frame_map, iou_matrix, voc_ap
from privacy_anon.evaluation.report import merge_results, paper_table1, write_report
from privacy_anon.evaluation.verification import (
    DlibRecognizer,
    EmbeddingCache,
    KerasClassifierRecognizer,
    Pair,
    Recognizer,
    evaluate_faces,
    kfold_accuracy,
    make_pairs,
    read_pairs,
    verify,
)

__all__ = [
    "DlibRecognizer", "EmbeddingCache", "KerasClassifierRecognizer", "Pair", "Recognizer",
    "evaluate_actions", "evaluate_faces", "frame_map", "iou_matrix", "kfold_accuracy",
    "make_pairs", "merge_results", "paper_table1", "read_pairs", "verify", "voc_ap",
    "write_report",
]
