package org.privacyanon.app

import android.media.Image
import org.privacyanon.core.RgbImage

/** YUV 4:2:0 (camera frames, video encoder input) <-> the core's RGB, BT.601 limited range. */
object Frames {
    private fun clamp(v: Int) = if (v < 0) 0 else if (v > 255) 255 else v

    /** A YUV_420_888 camera image to RGB, turned by `rotation` degrees clockwise (0, 90, 180, 270). */
    fun fromYuv(image: Image, rotation: Int): RgbImage {
        val w = image.width; val h = image.height
        val (yp, up, vp) = image.planes
        val out = RgbImage(if (rotation % 180 == 0) w else h, if (rotation % 180 == 0) h else w)
        for (y in 0 until h) for (x in 0 until w) {
            val yy = (yp.buffer.get(y * yp.rowStride + x * yp.pixelStride).toInt() and 0xff) - 16
            val ci = (y / 2) * up.rowStride + (x / 2) * up.pixelStride
            val u = (up.buffer.get(ci).toInt() and 0xff) - 128
            val v = (vp.buffer.get((y / 2) * vp.rowStride + (x / 2) * vp.pixelStride).toInt() and 0xff) - 128
            val r = clamp((298 * yy + 409 * v + 128) shr 8)
            val g = clamp((298 * yy - 100 * u - 208 * v + 128) shr 8)
            val b = clamp((298 * yy + 516 * u + 128) shr 8)
            val (ox, oy) = when (rotation) {
                90 -> Pair(h - 1 - y, x)
                180 -> Pair(w - 1 - x, h - 1 - y)
                270 -> Pair(y, w - 1 - x)
                else -> Pair(x, y)
            }
            val o = (oy * out.width + ox) * 3
            out.data[o] = r.toByte(); out.data[o + 1] = g.toByte(); out.data[o + 2] = b.toByte()
        }
        return out
    }

    /** Writes RGB into a video encoder's YUV_420 input image (even sizes). */
    fun toYuv(rgb: RgbImage, image: Image) {
        val (yp, up, vp) = image.planes
        for (y in 0 until image.height) for (x in 0 until image.width) {
            val r = rgb.get(x, y, 0); val g = rgb.get(x, y, 1); val b = rgb.get(x, y, 2)
            yp.buffer.put(y * yp.rowStride + x * yp.pixelStride, (((66 * r + 129 * g + 25 * b + 128) shr 8) + 16).toByte())
            if (y % 2 == 0 && x % 2 == 0) {
                up.buffer.put((y / 2) * up.rowStride + (x / 2) * up.pixelStride, (((-38 * r - 74 * g + 112 * b + 128) shr 8) + 128).toByte())
                vp.buffer.put((y / 2) * vp.rowStride + (x / 2) * vp.pixelStride, (((112 * r - 94 * g - 18 * b + 128) shr 8) + 128).toByte())
            }
        }
    }
}
