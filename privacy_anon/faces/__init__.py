"""Faces in images: detection (BlazeFace + MTCNN) and box math. No TensorFlow here.

`faces.geometry` (differentiable alignment for training) imports TensorFlow and is not
imported by this package: import it explicitly.

Example:
    >>> from privacy_anon.faces import detect_faces
    >>> faces = detect_faces(image)  # RGB uint8 (H, W, 3) -> list[Face]
"""

from privacy_anon.faces.boxes import BoxTracker, clip_boxes, enlarge_boxes, iou_matrix, nms
from privacy_anon.faces.detector import (
    BlazeFace,
    Face,
    FaceDetector,
    blazeface_model_path,
    detect_faces,
)

__all__ = [
    "BlazeFace",
    "BoxTracker",
    "Face",
    "FaceDetector",
    "blazeface_model_path",
    "clip_boxes",
    "detect_faces",
    "enlarge_boxes",
    "iou_matrix",
    "nms",
]
