"""The learned M on the TFLite interpreter, behind the face-modifier interface.

The exported model takes RGB pixels 0..255 (uint8 for full-int8 models, float32 otherwise;
the scaling to [-1, 1] is inside the graph) and returns RGB pixels 0..255. Crops of any size
are resized to the model's square input and the result back to the crop's size.
No TensorFlow here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from privacy_anon.errors import InputError
from privacy_anon.runtime.bundle import check_tflite_file, interpreter_class


class TFLiteModifier:
    """M from a `.tflite` file: `.modify_crops(list of uint8 crops) -> list of uint8 crops`.

    Args:
        model_path: the exported `modifier.tflite`.
        input_size: expected input side (from `bundle.json`); checked against the model.
        num_threads: interpreter threads.
        max_batch: crops per interpreter call for models exported with a dynamic batch
            (a fixed-batch-1 model, the export default, is called once per crop).
    """

    name = "learned"

    def __init__(self, model_path, input_size: int | None = None, num_threads: int = 2,
                 max_batch: int = 8):
        self.model_path = Path(model_path)
        check_tflite_file(self.model_path)
        try:
            self._interpreter = interpreter_class()(model_path=str(self.model_path), num_threads=int(num_threads))
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise InputError(f"{self.model_path}: not a loadable TFLite model ({exc})") from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise InputError(f"{self.model_path}: expected 1 input and 1 output, got "
                             f"{len(inputs)} and {len(outputs)}")
        self._in, self._out = inputs[0], outputs[0]
        sig = list(self._in.get("shape_signature", self._in["shape"]))
        out_sig = list(self._out.get("shape_signature", self._out["shape"]))
        size = int(sig[1]) if len(sig) == 4 else -1
        if (len(sig) != 4 or sig[1] != sig[2] or sig[3] != 3 or out_sig[1:] != sig[1:]
                or (input_size is not None and size != int(input_size))):
            raise InputError(f"{self.model_path}: wrong tensor shapes (input {sig}, output {out_sig}; "
                             f"expected [N, {input_size or 'S'}, {input_size or 'S'}, 3] both)")
        self.input_size = size
        self.dynamic_batch = int(sig[0]) == -1
        if not self.dynamic_batch and int(sig[0]) != 1:
            raise InputError(f"{self.model_path}: fixed batch {sig[0]} not supported (export with batch 1 or dynamic)")
        self.max_batch = max(1, int(max_batch)) if self.dynamic_batch else 1
        self._batch = int(self._in["shape"][0])
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        for what, dtype in (("input", self.input_dtype), ("output", self.output_dtype)):
            if dtype not in (np.uint8, np.int8, np.float32):
                raise InputError(f"{self.model_path}: unsupported {what} type {dtype}")

    def modify_crops(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Modifies face crops (RGB uint8, any sizes); returns crops of the same sizes."""
        s = self.input_size
        small = []
        for i, crop in enumerate(crops):
            crop = np.asarray(crop)
            if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3 or 0 in crop.shape:
                raise InputError(f"crop {i}: expected RGB uint8 (h, w, 3), got {crop.dtype} {crop.shape}")
            shrink = crop.shape[0] > s or crop.shape[1] > s
            small.append(cv2.resize(crop, (s, s), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR))
        out = []
        for start in range(0, len(small), self.max_batch):
            out.extend(self.run(np.stack(small[start:start + self.max_batch])))
        result = []
        for crop, new in zip(crops, out):
            h, w = crop.shape[:2]
            result.append(new if (h, w) == (s, s) else cv2.resize(new, (w, h), interpolation=cv2.INTER_LINEAR))
        return result

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 -> (N, S, S, 3) uint8, in interpreter calls of <= max_batch crops."""
        if len(batch) > self.max_batch:
            return np.concatenate([self.run(batch[i:i + self.max_batch])
                                   for i in range(0, len(batch), self.max_batch)])
        n = len(batch)
        if n != self._batch:
            self._interpreter.resize_tensor_input(self._in["index"], [n, self.input_size, self.input_size, 3])
            self._interpreter.allocate_tensors()
            self._batch = n
        self._interpreter.set_tensor(self._in["index"], self._to_input(batch))
        self._interpreter.invoke()
        return self._to_pixels(self._interpreter.get_tensor(self._out["index"]))

    def _to_input(self, pixels: np.ndarray) -> np.ndarray:
        if self.input_dtype == np.float32:
            return pixels.astype(np.float32)
        scale, zero = self._in["quantization"]
        if self.input_dtype == np.uint8 and scale == 1.0 and zero == 0:
            return np.ascontiguousarray(pixels)  # one step = one pixel: no arithmetic
        info = np.iinfo(self.input_dtype)
        q = np.rint(pixels.astype(np.float32) / scale + zero)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def _to_pixels(self, values: np.ndarray) -> np.ndarray:
        if self.output_dtype != np.float32:
            scale, zero = self._out["quantization"]
            if self.output_dtype == np.uint8 and scale == 1.0 and zero == 0:
                return values.copy()
            values = (values.astype(np.float32) - zero) * scale
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
