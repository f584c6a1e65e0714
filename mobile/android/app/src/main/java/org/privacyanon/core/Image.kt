package org.privacyanon.core

import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min
import kotlin.math.roundToInt

/** An RGB image, 3 bytes per pixel, rows top to bottom (the layout of a numpy (H, W, 3) uint8 array). */
class RgbImage(val width: Int, val height: Int, val data: ByteArray = ByteArray(width * height * 3)) {
    init {
        require(width > 0 && height > 0 && data.size == width * height * 3) {
            "image: expected ${width}x${height}x3 bytes, got ${data.size}"
        }
    }

    fun get(x: Int, y: Int, c: Int): Int = data[(y * width + x) * 3 + c].toInt() and 0xff

    fun copy() = RgbImage(width, height, data.copyOf())

    /** The pixels [x1, x2) x [y1, y2). */
    fun crop(x1: Int, y1: Int, x2: Int, y2: Int): RgbImage {
        val w = x2 - x1
        val out = RgbImage(w, y2 - y1)
        for (y in y1 until y2) System.arraycopy(data, (y * width + x1) * 3, out.data, (y - y1) * w * 3, w * 3)
        return out
    }

    /** Writes `patch` with its top-left corner at (x1, y1). */
    fun paste(patch: RgbImage, x1: Int, y1: Int) {
        for (y in 0 until patch.height) {
            System.arraycopy(patch.data, y * patch.width * 3, data, ((y + y1) * width + x1) * 3, patch.width * 3)
        }
    }

    fun fill(value: Int) = data.fill(value.toByte())
}

/**
 * Resizing as OpenCV does it for uint8 RGB, so that crops pasted back are bit-identical to the
 * Python runtime's (cv2.resize). `linear` follows cv2's INTER_LINEAR fixed-point path (11-bit
 * weights, the exact 2x shrink done as a 2x2 average); `area` averages source pixels by their
 * overlap (cv2's INTER_AREA for shrinking; within one grey level of it).
 */
object Resize {
    private const val ONE = 2048 // INTER_RESIZE_COEF_SCALE

    /** Round half to even, as cv2's saturate_cast<short>(float). */
    private fun rint(v: Float): Int = Math.rint(v.toDouble()).toInt()

    private class Taps(val lo: IntArray, val hi: IntArray, val w0: IntArray, val w1: IntArray)

    private fun taps(src: Int, dst: Int, clampWeights: Boolean): Taps {
        val scale = 1.0 / (dst.toDouble() / src)
        val lo = IntArray(dst); val hi = IntArray(dst); val w0 = IntArray(dst); val w1 = IntArray(dst)
        for (d in 0 until dst) {
            var f = ((d + 0.5) * scale - 0.5).toFloat()
            var s = floor(f).toInt()
            f -= s
            if (clampWeights) { // cv2 clamps the x taps and their weights; the y taps only by row
                if (s < 0) { f = 0f; s = 0 }
                if (s >= src - 1) { f = 0f; s = src - 1 }
            }
            lo[d] = min(max(s, 0), src - 1)
            hi[d] = min(max(s + 1, 0), src - 1)
            w0[d] = rint((1f - f) * ONE)
            w1[d] = rint(f * ONE)
        }
        return Taps(lo, hi, w0, w1)
    }

    fun linear(src: RgbImage, dstW: Int, dstH: Int): RgbImage {
        if (dstW == src.width && dstH == src.height) return src.copy()
        val sx = 1.0 / (dstW.toDouble() / src.width)
        val sy = 1.0 / (dstH.toDouble() / src.height)
        if (sx == 2.0 && sy == 2.0) return half(src)
        val xt = taps(src.width, dstW, true)
        val yt = taps(src.height, dstH, false)
        val out = RgbImage(dstW, dstH)
        // the horizontal pass of each source row, cached (cv2 keeps two rows the same way)
        val rows = HashMap<Int, IntArray>()
        fun row(y: Int): IntArray = rows.getOrPut(y) {
            val r = IntArray(dstW * 3)
            for (x in 0 until dstW) for (c in 0 until 3) {
                r[x * 3 + c] = src.get(xt.lo[x], y, c) * xt.w0[x] + src.get(xt.hi[x], y, c) * xt.w1[x]
            }
            r
        }
        for (y in 0 until dstH) {
            val r0 = row(yt.lo[y]); val r1 = row(yt.hi[y])
            val b0 = yt.w0[y]; val b1 = yt.w1[y]
            val base = y * dstW * 3
            for (i in 0 until dstW * 3) {
                val v = (((b0 * (r0[i] shr 4)) shr 16) + ((b1 * (r1[i] shr 4)) shr 16) + 2) shr 2
                out.data[base + i] = min(max(v, 0), 255).toByte()
            }
            rows.keys.retainAll(setOf(yt.lo[y], yt.hi[y], yt.lo.getOrElse(y + 1) { -1 }, yt.hi.getOrElse(y + 1) { -1 }))
        }
        return out
    }

    /** The exact 2x shrink: 2x2 averages rounded half up. */
    private fun half(src: RgbImage): RgbImage {
        val out = RgbImage(src.width / 2, src.height / 2)
        for (y in 0 until out.height) for (x in 0 until out.width) for (c in 0 until 3) {
            val s = src.get(2 * x, 2 * y, c) + src.get(2 * x + 1, 2 * y, c) +
                src.get(2 * x, 2 * y + 1, c) + src.get(2 * x + 1, 2 * y + 1, c)
            out.data[(y * out.width + x) * 3 + c] = ((s + 2) shr 2).toByte()
        }
        return out
    }

    /** Area averaging for shrinking (both sides); falls back to `linear` when either side grows. */
    fun area(src: RgbImage, dstW: Int, dstH: Int): RgbImage {
        if (dstW > src.width || dstH > src.height) return linear(src, dstW, dstH)
        if (dstW == src.width && dstH == src.height) return src.copy()
        val sx = src.width.toDouble() / dstW
        val sy = src.height.toDouble() / dstH
        val out = RgbImage(dstW, dstH)
        val acc = DoubleArray(3)
        for (y in 0 until dstH) {
            val y0 = y * sy; val y1 = min((y + 1) * sy, src.height.toDouble())
            for (x in 0 until dstW) {
                val x0 = x * sx; val x1 = min((x + 1) * sx, src.width.toDouble())
                acc.fill(0.0)
                var yy = floor(y0).toInt()
                while (yy < y1) {
                    val wy = min(y1, yy + 1.0) - max(y0, yy.toDouble())
                    var xx = floor(x0).toInt()
                    while (xx < x1) {
                        val w = wy * (min(x1, xx + 1.0) - max(x0, xx.toDouble()))
                        for (c in 0 until 3) acc[c] += w * src.get(xx, yy, c)
                        xx++
                    }
                    yy++
                }
                val norm = 1.0 / (sx * sy)
                for (c in 0 until 3) {
                    out.data[(y * dstW + x) * 3 + c] = min(max((acc[c] * norm).roundToInt(), 0), 255).toByte()
                }
            }
        }
        return out
    }
}
