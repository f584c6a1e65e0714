"""Differentiable face geometry in TensorFlow: alignment to D's template, crop, paste back.

Everything is one operation, `warp_affine`: a fixed (non-learned) bilinear sampling grid, as
in a spatial transformer without parameters (paper section 4). Gradients flow to the
sampled image, so D's loss reaches M through the alignment and A's loss reaches M through
the paste.

Coordinates: pixel (i, j) has its centre at x = i, y = j. A 2x3 matrix maps an *output*
pixel (x, y, 1) to the *input* position it samples.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# SphereFace's 5-point template for 112x96 (height x width) aligned faces, (x, y) pixels,
# in the MTCNN order: left eye, right eye, nose, left and right mouth corners (image sides).
SPHEREFACE_TEMPLATE = np.array(
    [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366],
     [33.5493, 92.3655], [62.7299, 92.2041]], dtype=np.float32)
TEMPLATE_SIZE = (112, 96)


def template_landmarks(height: int, width: int) -> np.ndarray:
    """The SphereFace template scaled to an aligned size of `height` x `width`."""
    scale = np.array([width / TEMPLATE_SIZE[1], height / TEMPLATE_SIZE[0]], np.float32)
    return SPHEREFACE_TEMPLATE * scale


def similarity_matrix(src, dst):
    """Least-squares similarity transform (rotation, uniform scale, shift) taking src to dst.

    Args:
        src, dst: (..., K, 2) points. Returns (..., 2, 3) float32.
    """
    src = tf.convert_to_tensor(src, tf.float32)
    dst = tf.convert_to_tensor(dst, tf.float32)
    mu_s = tf.reduce_mean(src, axis=-2, keepdims=True)
    mu_d = tf.reduce_mean(dst, axis=-2, keepdims=True)
    p, q = src - mu_s, dst - mu_d
    denom = tf.reduce_sum(p * p, axis=[-2, -1]) + 1e-8
    a = tf.reduce_sum(p * q, axis=[-2, -1]) / denom
    b = tf.reduce_sum(p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0], axis=-1) / denom
    mu_s, mu_d = mu_s[..., 0, :], mu_d[..., 0, :]
    tx = mu_d[..., 0] - (a * mu_s[..., 0] - b * mu_s[..., 1])
    ty = mu_d[..., 1] - (b * mu_s[..., 0] + a * mu_s[..., 1])
    row0 = tf.stack([a, -b, tx], axis=-1)
    row1 = tf.stack([b, a, ty], axis=-1)
    return tf.stack([row0, row1], axis=-2)


def invert_affine(matrix):
    """Inverse of (..., 2, 3) affine matrices."""
    matrix = tf.convert_to_tensor(matrix, tf.float32)
    a, b, c = matrix[..., 0, 0], matrix[..., 0, 1], matrix[..., 0, 2]
    d, e, f = matrix[..., 1, 0], matrix[..., 1, 1], matrix[..., 1, 2]
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    ic = -(ia * c + ib * f)
    if_ = -(id_ * c + ie * f)
    return tf.stack([tf.stack([ia, ib, ic], -1), tf.stack([id_, ie, if_], -1)], -2)


def alignment_matrix(landmarks, height: int, width: int):
    """Output-to-input matrices aligning faces with these landmarks to the template.

    Args:
        landmarks: (..., 5, 2) pixel positions in the input image.
        height, width: the aligned output size.
    """
    dst = tf.constant(template_landmarks(height, width))
    return invert_affine(similarity_matrix(landmarks, dst))


def box_matrix(boxes, height: int, width: int):
    """Output-to-input matrices that crop `boxes` (..., 4) [x1, y1, x2, y2] to height x width.

    Output pixel 0 samples the box's first edge and pixel n-1 its last (as
    `tf.image.crop_and_resize` does), so `paste_matrix` inverts it exactly.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    sx = (x2 - x1) / max(width - 1, 1)
    sy = (y2 - y1) / max(height - 1, 1)
    zero = tf.zeros_like(sx)
    return tf.stack([tf.stack([sx, zero, x1], -1), tf.stack([zero, sy, y1], -1)], -2)


def warp_affine(images, matrices, size, fill: float = 0.0):
    """Bilinear sampling of `images` (B, H, W, C) on the grids of `matrices` (B, 2, 3).

    Args:
        size: (height, width) of the output.
        fill: value of samples that fall outside the image (0 is mid-grey in [-1, 1]).
    Returns:
        (B, height, width, C), differentiable with respect to `images`.
    """
    images = tf.convert_to_tensor(images)
    matrices = tf.cast(matrices, tf.float32)
    out_h, out_w = int(size[0]), int(size[1])
    shape = tf.shape(images)
    batch, in_h, in_w, channels = shape[0], shape[1], shape[2], shape[3]
    # A ring of `fill` (one pixel before, two after) and positions clamped to [-1, side]: every
    # tap lands inside, so there is no per-tap mask, and one gather fetches all four taps.
    # Against four masked gather_nd's this is about 30% faster forward and backward on a CPU
    # (benchmarks/RESULTS.md, "Thirty-ninth pass") with the same samples.
    padded = tf.pad(images, [[0, 0], [1, 2], [1, 2], [0, 0]], constant_values=fill)
    row = in_w + 3
    ys, xs = tf.meshgrid(tf.range(out_h, dtype=tf.float32), tf.range(out_w, dtype=tf.float32),
                         indexing="ij")
    grid = tf.stack([xs, ys, tf.ones_like(xs)], axis=-1)  # (h, w, 3)
    coords = tf.einsum("hwk,bjk->bhwj", grid, matrices)  # (B, h, w, 2)
    x = tf.clip_by_value(coords[..., 0], -1.0, tf.cast(in_w, tf.float32))
    y = tf.clip_by_value(coords[..., 1], -1.0, tf.cast(in_h, tf.float32))
    x0, y0 = tf.floor(x), tf.floor(y)
    wx, wy = x - x0, y - y0
    first = (tf.reshape(tf.range(batch) * (in_h + 3) * row, [-1, 1, 1])
             + (tf.cast(y0, tf.int32) + 1) * row + tf.cast(x0, tf.int32) + 1)
    taps = tf.gather(tf.reshape(padded, [-1, channels]),
                     tf.stack([first, first + 1, first + row, first + row + 1], -1))
    weights = tf.stack([(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy], -1)
    return tf.reduce_sum(taps * weights[..., None], axis=-2)


def align_faces(images, matrices, height: int, width: int):
    """Faces (B, S, S, 3) to D's aligned (B, height, width, 3), through precomputed matrices."""
    return warp_affine(images, matrices, (height, width))


def jitter_alignment(matrices, height: int, width: int, amount: float, seed=None):
    """Alignment matrices (B, 2, 3) composed with a random similarity of D's aligned frame and a
    coin-flip mirror: D sees each face a little shifted (up to `amount` x width), scaled
    (x exp(+-amount)), turned (+-3 x amount radians) and mirrored.

    An edit that still fools D under every such view cannot be a pixel-exact adversarial
    pattern tied to one alignment; it has to change how the face looks, which is what a
    recognizer M never saw also reads (expectation over transformations, Athalye et al. 2018).
    """
    matrices = tf.cast(matrices, tf.float32)
    if amount <= 0:
        return matrices
    batch = tf.shape(matrices)[0]
    u = tf.random.stateless_uniform([batch, 5], seed, -1.0, 1.0) if seed is not None \
        else tf.random.uniform([batch, 5], -1.0, 1.0)
    scale = tf.exp(amount * u[:, 0])
    angle = 3.0 * amount * u[:, 1]
    shift_x, shift_y = amount * width * u[:, 2], amount * width * u[:, 3]
    mirror = tf.where(u[:, 4] < 0, -1.0, 1.0)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    cos, sin = scale * tf.cos(angle), scale * tf.sin(angle)
    # J(q) = c + R S F (q - c) + t, in D's output pixels; then the old matrix
    a, b = cos * mirror, -sin
    c, d = sin * mirror, cos
    zeros, ones = tf.zeros_like(a), tf.ones_like(a)
    jitter = tf.stack([
        tf.stack([a, b, cx - a * cx - b * cy + shift_x], -1),
        tf.stack([c, d, cy - c * cx - d * cy + shift_y], -1),
        tf.stack([zeros, zeros, ones], -1)], 1)  # (B, 3, 3)
    return tf.linalg.matmul(matrices, jitter)  # (B, 2, 3) @ (B, 3, 3)


def erase_patches(images, prob: float, smallest: float = 0.2, largest: float = 0.5, seed=None):
    """`images` (B, H, W, C) with, for each image with probability `prob`, one rectangle (sides
    `smallest`..`largest` of the image's, anywhere inside it) set to 0 (mid-grey in [-1, 1]).

    Random erasing (Zhong et al. 2020) for D's views: a D that cannot count on any one region
    (the mouth, say) reads identity from all of them, so an M that fools it must change the
    whole face, as a recognizer it never saw would read it, not paint over one spot.
    """
    if prob <= 0:
        return images
    shape = tf.shape(images)
    batch, h, w = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    u = tf.random.stateless_uniform([batch, 5], seed) if seed is not None \
        else tf.random.uniform([batch, 5])
    side_h = h * (smallest + (largest - smallest) * u[:, 0])
    side_w = w * (smallest + (largest - smallest) * u[:, 1])
    y0, x0 = (h - side_h) * u[:, 2], (w - side_w) * u[:, 3]
    on = tf.cast(u[:, 4] < prob, images.dtype)
    ys = tf.range(h)[None, :] + 0.5
    xs = tf.range(w)[None, :] + 0.5
    in_y = tf.cast((ys >= y0[:, None]) & (ys < (y0 + side_h)[:, None]), images.dtype)  # (B, H)
    in_x = tf.cast((xs >= x0[:, None]) & (xs < (x0 + side_w)[:, None]), images.dtype)  # (B, W)
    erased = in_y[:, :, None] * in_x[:, None, :] * on[:, None, None]  # (B, H, W)
    return images * (1.0 - erased[..., None])


def window_mask(matrices, size: int, height: int, width: int, soft: float = 4.0):
    """(B, size, size, 1): 1 on the pixels of a size x size face that D's aligned height x width
    window covers (through `matrices`, output-to-face), falling to 0 over `soft` pixels of D's
    frame outside it."""
    inverse = invert_affine(matrices)  # face pixel -> D's output pixel
    ys, xs = tf.meshgrid(tf.range(size, dtype=tf.float32), tf.range(size, dtype=tf.float32),
                         indexing="ij")
    grid = tf.stack([xs, ys, tf.ones_like(xs)], axis=-1)
    q = tf.einsum("hwk,bjk->bhwj", grid, inverse)
    outside_x = tf.nn.relu(-q[..., 0]) + tf.nn.relu(q[..., 0] - (width - 1))
    outside_y = tf.nn.relu(-q[..., 1]) + tf.nn.relu(q[..., 1] - (height - 1))
    return tf.clip_by_value(1.0 - (outside_x + outside_y) / soft, 0.0, 1.0)[..., None]


def enlarge_boxes(boxes, factor: float, height, width):
    """Boxes (..., 4) scaled by `factor` about their centres, clipped to the frame."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    hw, hh = (x2 - x1) * factor / 2, (y2 - y1) * factor / 2
    w_max = tf.cast(width, tf.float32) - 1
    h_max = tf.cast(height, tf.float32) - 1
    return tf.stack([tf.clip_by_value(cx - hw, 0.0, w_max), tf.clip_by_value(cy - hh, 0.0, h_max),
                     tf.clip_by_value(cx + hw, 0.0, w_max), tf.clip_by_value(cy + hh, 0.0, h_max)], -1)


def modify_frames(frames, face_boxes, num_faces, modifier, crop_size: int, enlarge: float = 1.6,
                  training: bool = True):
    """The paper's v' = v - r_v + M(r_v) for every face of every frame, differentiably.

    Args:
        frames: (B, H, W, 3) in [-1, 1].
        face_boxes: (B, F, 4) face boxes in pixels (padded rows are ignored).
        num_faces: (B,) how many rows of `face_boxes` are real. Frames with none pass unchanged.
        modifier: callable on (N, crop_size, crop_size, 3) crops.
        crop_size: M's input size; crops are resized to it and the output resized back.
        enlarge: face boxes are enlarged by this factor first (x1.6 in the paper).
    """
    frames = tf.convert_to_tensor(frames, tf.float32)
    shape = tf.shape(frames)
    batch, height, width = shape[0], shape[1], shape[2]
    max_faces = face_boxes.shape[1]
    if not max_faces:
        return frames
    valid = tf.range(max_faces)[None, :] < tf.cast(num_faces, tf.int32)[:, None]  # (B, F)
    boxes = enlarge_boxes(face_boxes, enlarge, height, width)  # (B, F, 4)
    # Padding rows and degenerate boxes get a 2x2 box so the matrices stay invertible;
    # padding rows are masked out below.
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    boxes = tf.stack([x1, y1, tf.maximum(x2, x1 + 1), tf.maximum(y2, y1 + 1)], -1)
    boxes = tf.where(valid[..., None], boxes, tf.constant([0.0, 0.0, 1.0, 1.0]))
    flat = tf.reshape(boxes, [-1, 4])
    owner = tf.repeat(tf.range(batch), max_faces)
    crops = warp_affine(tf.gather(frames, owner), box_matrix(flat, crop_size, crop_size),
                        (crop_size, crop_size))
    modified = modifier(crops, training=training) if _takes_training(modifier) else modifier(crops)
    modified = tf.reshape(modified, [batch, max_faces, crop_size, crop_size, 3])
    frame_h, frame_w = frames.shape[1], frames.shape[2]
    if frame_h is None or frame_w is None:
        raise ValueError(f"frames need a static height and width, received shape {frames.shape}")
    ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32),
                         indexing="ij")
    out = frames
    for f in range(max_faces):
        box = boxes[:, f]  # (B, 4)
        x1, y1, x2, y2 = (box[:, i, None, None] for i in range(4))
        inside = (xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2) & valid[:, f, None, None]
        mask = tf.cast(inside, tf.float32)[..., None]
        back = warp_affine(modified[:, f], invert_affine(box_matrix(box, crop_size, crop_size)),
                           (frame_h, frame_w))
        out = out * (1.0 - mask) + back * mask
    return out


def _takes_training(fn) -> bool:
    import keras

    return isinstance(fn, keras.layers.Layer)
