import numpy as np
import tensorflow as tf

from privacy_anon.config import get_preset
from privacy_anon.faces import geometry
from privacy_anon.models.face_classifier import build_classifier
from privacy_anon.models.modifier import build_modifier


def _landmark_image(points, size=128):
    """An image with a distinct bright dot at each landmark."""
    img = np.full((size, size, 3), -1.0, np.float32)
    for k, (x, y) in enumerate(points):
        yy, xx = np.mgrid[0:size, 0:size]
        blob = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5 ** 2))
        img[..., k % 3] = np.maximum(img[..., k % 3], -1 + 2 * blob)
    return img


def test_landmarks_land_on_the_template_within_one_pixel():
    rng = np.random.default_rng(0)
    h, w = 112, 96
    template = geometry.template_landmarks(h, w)
    for _ in range(5):
        angle, scale = rng.uniform(-0.4, 0.4), rng.uniform(0.7, 1.1)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = (template - [48, 56]) @ rot.T * scale + [64 + rng.uniform(-8, 8), 64 + rng.uniform(-8, 8)]
        matrix = geometry.alignment_matrix(points[None].astype(np.float32), h, w)
        # The matrix maps output (template) pixels to input pixels: check both directions.
        mapped = (np.concatenate([template, np.ones((5, 1))], 1) @ np.asarray(matrix[0]).T)
        np.testing.assert_allclose(mapped, points, atol=1.0)
        # And on pixels: a dot drawn at each landmark peaks at its template position.
        for k, (tx, ty) in enumerate(template):
            image = _landmark_image(points[k:k + 1])[None]
            aligned = np.asarray(geometry.align_faces(image, matrix, h, w))[0, ..., 0]
            y, x = np.unravel_index(np.argmax(aligned), aligned.shape)
            assert abs(x - tx) <= 1.0 and abs(y - ty) <= 1.0, (k, x, y, tx, ty)


def _bilinear_reference(image, matrix, size, fill, upstream):
    """Per pixel, in NumPy: the sampled (h, w, C) and the gradient of sum(out * upstream)."""
    in_h, in_w, _ = image.shape
    out = np.zeros(size + image.shape[2:], np.float64)
    grad = np.zeros(image.shape, np.float64)
    for i in range(size[0]):
        for j in range(size[1]):
            x, y = matrix @ [j, i, 1.0]
            x0, y0 = int(np.floor(x)), int(np.floor(y))
            for dy in (0, 1):
                for dx in (0, 1):
                    w = (x - x0 if dx else 1 - x + x0) * (y - y0 if dy else 1 - y + y0)
                    xi, yi = x0 + dx, y0 + dy
                    if 0 <= xi < in_w and 0 <= yi < in_h:
                        out[i, j] += w * image[yi, xi]
                        grad[yi, xi] += w * upstream[i, j]
                    else:
                        out[i, j] += w * fill
    return out, grad


def test_warp_affine_samples_and_back_propagates_like_bilinear_interpolation():
    rng = np.random.default_rng(3)
    images = rng.uniform(-1, 1, (3, 9, 11, 2)).astype(np.float32)
    matrices = np.array([
        [[0.8, 0.1, 1.3], [-0.2, 0.7, 0.6]],   # inside, turned
        [[1.6, 0.3, -6.0], [0.2, 1.4, -5.0]],  # reaches past every side, far past some
        [[0.5, 0.0, 2.25], [0.0, 0.5, 3.5]],   # up-sampling onto pixel edges
    ], np.float32)
    size = (13, 10)
    upstream = rng.uniform(-1, 1, (3,) + size + (2,)).astype(np.float32)
    for fill in (0.0, 0.5):
        x = tf.constant(images)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = geometry.warp_affine(x, matrices, size, fill=fill)
            loss = tf.reduce_sum(out * upstream)
        grad = tape.gradient(loss, x).numpy()
        for b in range(3):
            want, want_grad = _bilinear_reference(images[b], matrices[b], size, fill, upstream[b])
            np.testing.assert_allclose(out[b].numpy(), want, atol=1e-5)
            np.testing.assert_allclose(grad[b], want_grad, atol=1e-5)
        assert np.abs(grad[1]).sum() > 0 and np.any(out[1].numpy() == fill)


def test_gradient_of_d_loss_reaches_m_through_alignment():
    cfg = get_preset("tiny")
    m = build_modifier(cfg.modifier)
    m.head.kernel.assign(tf.random.normal(m.head.kernel.shape, stddev=0.01))
    d = build_classifier(cfg.classifier, 5)
    faces = tf.random.uniform((2, 64, 64, 3), -1, 1)
    points = np.tile(geometry.template_landmarks(64, 64 * 96 / 112)[None] + [5, 0], (2, 1, 1))
    align = geometry.alignment_matrix(points.astype(np.float32), 56, 48)
    labels = tf.constant([1, 3])
    with tf.GradientTape() as tape:
        aligned = geometry.align_faces(m(faces), align, 56, 48)
        emb = d(aligned)
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            labels, d.head.margin_logits(emb, labels), from_logits=True))
    grads = tape.gradient(loss, m.trainable_variables)
    assert all(g is not None for g in grads)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in grads) > 0


def test_modify_frames_changes_only_the_enlarged_face_box():
    frames = tf.random.uniform((2, 96, 128, 3), -1, 1, seed=1)
    boxes = tf.constant([[[40, 30, 60, 50], [0, 0, 0, 0]], [[10, 10, 30, 34], [80, 40, 100, 70]]],
                        tf.float32)
    num = tf.constant([1, 2])
    out = geometry.modify_frames(frames, boxes, num, lambda x: -x, crop_size=32, enlarge=1.6)
    diff = np.any(np.abs(np.asarray(out) - np.asarray(frames)) > 1e-6, axis=-1)
    big = np.asarray(geometry.enlarge_boxes(boxes, 1.6, 96, 128))
    for b in range(2):
        inside = np.zeros((96, 128), bool)
        for (x1, y1, x2, y2) in big[b][: int(num[b])]:
            inside[int(np.floor(y1)):int(np.ceil(y2)) + 1, int(np.floor(x1)):int(np.ceil(x2)) + 1] = True
        assert not diff[b][~inside].any(), "pixels outside the enlarged boxes changed"
        assert diff[b][inside].mean() > 0.5


def test_jittered_views_move_the_landmarks_a_little_and_mirror_half_of_them():
    h, w = 112, 96
    template = geometry.template_landmarks(h, w)
    points = template + [16.0, 8.0]  # a face already aligned, shifted in a 128 crop
    matrix = np.repeat(np.asarray(geometry.alignment_matrix(points[None], h, w)), 400, 0)
    np.testing.assert_allclose(geometry.jitter_alignment(matrix, h, w, 0.0), matrix)
    jittered = np.asarray(geometry.jitter_alignment(matrix, h, w, 0.05, seed=[3, 4]))
    # where each view puts the eyes' midpoint, in D's frame: inverse of face -> output
    inverse = np.asarray(geometry.invert_affine(jittered))
    eyes = np.append(points[:2].mean(0), 1.0)
    seen = inverse @ eyes
    moved = np.linalg.norm(seen - template[:2].mean(0), axis=1)
    assert 0.5 < moved.mean() < 0.1 * w, moved.mean()  # moved, by a few pixels only
    # the left eye is seen on the right in the mirrored views, and nowhere else
    left = inverse @ np.append(points[0], 1.0)
    mirrored = left[:, 0] > w / 2
    assert 0.35 < mirrored.mean() < 0.65
    assert np.all(np.abs(left[~mirrored, 0] - template[0, 0]) < 0.2 * w)


def test_window_mask_covers_what_d_sees_and_nothing_far_from_it():
    h, w, size = 112, 96, 128
    template = geometry.template_landmarks(h, w)
    points = (template - [48, 56]) * 0.6 + [64, 64]  # a small face in the middle of the crop
    matrix = geometry.alignment_matrix(points[None].astype(np.float32), h, w)
    mask = np.asarray(geometry.window_mask(matrix, size, h, w))[0, ..., 0]
    assert mask[64, 64] == 1.0 and mask[2, 2] == 0.0 and mask[125, 64] == 0.0
    # the window is 96 x 112 of D's pixels, 0.6 of a crop pixel each: about 58 x 67 pixels
    assert abs(mask.sum() - 0.6 * 96 * 0.6 * 112) < 0.15 * 0.36 * 96 * 112


def test_erase_patches_blanks_one_rectangle_per_chosen_view():
    import tensorflow as tf

    from privacy_anon.faces.geometry import erase_patches

    images = tf.ones((64, 40, 32, 3))
    seed = tf.constant([3, 7])
    out = erase_patches(images, 1.0, seed=seed).numpy()
    blank = out[..., 0] == 0
    area = blank.mean(axis=(1, 2))
    # every view lost one rectangle of 20-50% of each side: 4-25% of the pixels
    assert area.min() >= 0.2 * 0.2 * 0.8 and area.max() <= 0.5 * 0.5 * 1.2
    for mask in blank:  # one axis-aligned rectangle: its bounding box is all blank
        ys, xs = np.nonzero(mask)
        assert mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()
    assert len({m.tobytes() for m in blank}) > 50  # placed and sized anew for each view
    np.testing.assert_array_equal(erase_patches(images, 1.0, seed=seed).numpy(), out)  # seeded
    half = erase_patches(images, 0.5, seed=seed).numpy()
    assert 0.25 < (half[..., 0] == 0).any(axis=(1, 2)).mean() < 0.75
    assert erase_patches(images, 0.0) is images
