package org.privacyanon.core

import kotlin.math.exp
import kotlin.math.max
import kotlin.math.min

/** A tensor handed to or returned by a model: float32 or uint8 values, row-major. */
class Tensor(val shape: IntArray, val floats: FloatArray? = null, val bytes: ByteArray? = null) {
    init {
        require((floats == null) != (bytes == null)) { "a tensor holds floats or bytes" }
    }
}

/**
 * "Run this .tflite": the one thing the core needs from an interpreter. The Android app
 * implements it with org.tensorflow.lite.Interpreter; input pixels are uint8 0..255 for M
 * (the runner quantizes if the model's input is not uint8) and float32 for the detector.
 */
interface TfliteRunner {
    fun run(input: Tensor): List<Tensor>
}

/** The windows one frame is searched in: (x0, y0, w, h, canvas side). */
data class Window(val x0: Int, val y0: Int, val w: Int, val h: Int, val side: Int)

/**
 * BlazeFace full-range on frames of any size, decoded as privacy_anon/faces/detector.py does:
 * the whole frame letterboxed into 192x192, the frame zoomed out `zoomOut` times, and
 * half-overlapping tiles of 8 x minFaceSize (doubling) for small faces; 48x48 anchors
 * (stride 4, offset 0.5), sigmoid scores, boxes and keypoints relative to the anchor centre,
 * cut faces at inner tile edges dropped, weighted NMS over all windows.
 */
class BlazeFace(private val model: TfliteRunner, val settings: DetectorSettings) {
    companion object {
        const val INPUT_SIZE = 192
        const val GRID = 48
        const val RAW_SCORE_LIMIT = 80f
        const val TILE_PER_MIN_FACE = 8
        const val EDGE_MARGIN = 0.01
        const val ZOOM_MIN_FACE = 0.2

        /** Python's round(): half to even. */
        fun pyRound(v: Double): Int = Math.rint(v).toInt()

        private fun starts(length: Int, side: Int): List<Int> {
            if (side >= length) return listOf(0)
            val step = max(1, side / 2)
            val out = (0 until length - side step step).toMutableList()
            out.add(length - side)
            return out
        }
    }

    class Detections(val boxes: List<Box>, val scores: FloatArray)

    private val anchors = FloatArray(GRID) { (it + 0.5f) / GRID }

    fun windows(width: Int, height: Int): List<Window> {
        val longer = max(width, height)
        val out = mutableListOf(Window(0, 0, width, height, longer))
        if (settings.zoomOut > 1) out.add(Window(0, 0, width, height, pyRound(settings.zoomOut.toDouble() * longer)))
        if (settings.minFaceSize <= 0) return out
        var side = pyRound(TILE_PER_MIN_FACE * settings.minFaceSize.toDouble())
        while (side < longer) {
            val tw = min(side, width); val th = min(side, height)
            for (y0 in starts(height, th)) for (x0 in starts(width, tw)) out.add(Window(x0, y0, tw, th, max(tw, th)))
            side *= 2
        }
        return out
    }

    /** The model input for one window: the crop letterboxed (centred, black bars) in [-1, 1]. */
    fun canvas(image: RgbImage, win: Window): Triple<FloatArray, IntArray, IntArray> {
        val crop = image.crop(win.x0, win.y0, win.x0 + win.w, win.y0 + win.h)
        val scale = INPUT_SIZE.toDouble() / max(win.side, max(win.w, win.h))
        val newW = max(1, pyRound(win.w * scale)); val newH = max(1, pyRound(win.h * scale))
        val small = if (scale < 1) Resize.area(crop, newW, newH) else Resize.linear(crop, newW, newH)
        val offX = (INPUT_SIZE - newW) / 2; val offY = (INPUT_SIZE - newH) / 2
        val input = FloatArray(INPUT_SIZE * INPUT_SIZE * 3) { -1f }
        for (y in 0 until newH) for (x in 0 until newW) for (c in 0 until 3) {
            input[((y + offY) * INPUT_SIZE + x + offX) * 3 + c] = small.get(x, y, c).toFloat() / 127.5f - 1f
        }
        return Triple(input, intArrayOf(newW, newH), intArrayOf(offX, offY))
    }

    /** Decodes one window's raw outputs into frame-pixel boxes above the score threshold. */
    fun decode(regressors: FloatArray, classificators: FloatArray, win: Window, size: IntArray, offset: IntArray): Detections {
        val boxes = ArrayList<Box>()
        val scores = ArrayList<Float>()
        val sx = win.w.toDouble() / size[0]; val sy = win.h.toDouble() / size[1]
        for (i in 0 until GRID * GRID) {
            val logit = min(max(classificators[i], -RAW_SCORE_LIMIT), RAW_SCORE_LIMIT)
            val score = 1f / (1f + exp(-logit))
            if (score < settings.scoreThreshold) continue
            val ax = anchors[i % GRID] * INPUT_SIZE; val ay = anchors[i / GRID] * INPUT_SIZE
            val cx = regressors[i * 16] + ax; val cy = regressors[i * 16 + 1] + ay
            val hw = regressors[i * 16 + 2] / 2f; val hh = regressors[i * 16 + 3] / 2f
            // letterbox removal in double, as numpy does with Python-float factors
            fun fx(v: Float) = ((v.toDouble() - offset[0]) * sx + win.x0).toFloat()
            fun fy(v: Float) = ((v.toDouble() - offset[1]) * sy + win.y0).toFloat()
            boxes.add(Box(fx(cx - hw), fy(cy - hh), fx(cx + hw), fy(cy + hh)))
            scores.add(score)
        }
        return Detections(boxes, scores.toFloatArray())
    }

    /** Faces in a frame: boxes in frame pixels and scores, highest first. */
    fun detect(image: RgbImage): Detections {
        val width = image.width; val height = image.height
        val allBoxes = ArrayList<Box>()
        val allScores = ArrayList<Float>()
        for (win in windows(width, height)) {
            val (input, size, offset) = canvas(image, win)
            val outputs = model.run(Tensor(intArrayOf(1, INPUT_SIZE, INPUT_SIZE, 3), floats = input))
            val reg = outputs.firstOrNull { it.shape.last() == 16 }?.floats
            val cls = outputs.firstOrNull { it.shape.last() == 1 }?.floats
            if (reg == null || cls == null || reg.size != GRID * GRID * 16 || cls.size != GRID * GRID) {
                throw IllegalStateException("face detector: not BlazeFace full-range outputs")
            }
            val found = decode(reg, cls, win, size, offset)
            for ((k, b) in found.boxes.withIndex()) {
                val keep = if (win.w != width || win.h != height) !touchesInnerEdge(b, win, width, height)
                else if (win.side > max(width, height)) max(b.x2 - b.x1, b.y2 - b.y1) >= ZOOM_MIN_FACE * max(width, height)
                else true
                if (keep) { allBoxes.add(b); allScores.add(found.scores[k]) }
            }
        }
        if (allBoxes.isEmpty()) return Detections(emptyList(), FloatArray(0))
        val (boxes, scores) = Boxes.weightedNms(allBoxes, allScores.toFloatArray(), settings.nmsIou)
        return Detections(boxes, scores)
    }

    private fun touchesInnerEdge(b: Box, win: Window, width: Int, height: Int): Boolean {
        val mx = EDGE_MARGIN * win.w; val my = EDGE_MARGIN * win.h
        return (win.x0 > 0 && b.x1 < win.x0 + mx) || (win.y0 > 0 && b.y1 < win.y0 + my) ||
            (win.x0 + win.w < width && b.x2 > win.x0 + win.w - mx) ||
            (win.y0 + win.h < height && b.y2 > win.y0 + win.h - my)
    }
}
