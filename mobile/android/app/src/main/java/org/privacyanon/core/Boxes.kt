package org.privacyanon.core

import kotlin.math.ceil
import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min

/** A box [x1, y1, x2, y2] in pixels (float32, as privacy_anon/faces/boxes.py computes them). */
data class Box(val x1: Float, val y1: Float, val x2: Float, val y2: Float) {
    val area: Float get() = max(x2 - x1, 0f) * max(y2 - y1, 0f)

    fun toList() = listOf(x1, y1, x2, y2)
}

/** An integer pixel region [x1, x2) x [y1, y2). */
data class Region(val x1: Int, val y1: Int, val x2: Int, val y2: Int)

object Boxes {
    fun iou(a: Box, b: Box): Float {
        val w = max(min(a.x2, b.x2) - max(a.x1, b.x1), 0f)
        val h = max(min(a.y2, b.y2) - max(a.y1, b.y1), 0f)
        val inter = w * h
        val union = a.area + b.area - inter
        return if (union > 0f) inter / union else 0f
    }

    /** Indices sorted by score, highest first, ties in input order (numpy's stable argsort of -scores). */
    fun byScore(scores: FloatArray): List<Int> = scores.indices.sortedByDescending { scores[it] }

    /**
     * Weighted NMS (BlazeFace's "WEIGHTED" mode): each cluster (the best remaining box and all
     * boxes overlapping it by more than `iou`) becomes the score-weighted mean box with the best score.
     */
    fun weightedNms(boxes: List<Box>, scores: FloatArray, iou: Float): Pair<List<Box>, FloatArray> {
        var order = byScore(scores)
        val outBoxes = ArrayList<Box>()
        val outScores = ArrayList<Float>()
        while (order.isNotEmpty()) {
            val best = boxes[order[0]]
            val overlap = order.map { iou(best, boxes[it]) }.toFloatArray()
            overlap[0] = 1f // the best box leads its cluster even with zero area
            val members = order.filterIndexed { k, _ -> overlap[k] > iou }
            var total = 0f
            for (m in members) total += scores[m]
            val denom = max(total.toDouble(), 1e-12).toFloat()
            var x1 = 0f; var y1 = 0f; var x2 = 0f; var y2 = 0f
            for (m in members) {
                val w = scores[m] / denom
                x1 += boxes[m].x1 * w; y1 += boxes[m].y1 * w; x2 += boxes[m].x2 * w; y2 += boxes[m].y2 * w
            }
            outBoxes.add(Box(x1, y1, x2, y2))
            outScores.add(scores[order[0]])
            order = order.filterIndexed { k, _ -> overlap[k] <= iou }
        }
        return outBoxes to outScores.toFloatArray()
    }

    /**
     * The pixels a face box's anonymization replaces: the box scaled by `enlarge` about its
     * centre, clipped to the frame, floor of the top-left and ceiling of the bottom-right
     * (privacy_anon.baselines.face_regions). Empty regions are dropped.
     */
    fun faceRegions(boxes: List<Box>, width: Int, height: Int, enlarge: Double): List<Region> {
        val half = (enlarge / 2).toFloat()
        val out = ArrayList<Region>()
        for (b in boxes) {
            require(b.x1.isFinite() && b.y1.isFinite() && b.x2.isFinite() && b.y2.isFinite() && b.x2 >= b.x1 && b.y2 >= b.y1) {
                "face box ${b.toList()}: not finite or x2 < x1 or y2 < y1"
            }
            val cx = (b.x1 + b.x2) / 2f; val cy = (b.y1 + b.y2) / 2f
            val hw = (b.x2 - b.x1) * half; val hh = (b.y2 - b.y1) * half
            val x1 = min(max(cx - hw, 0f), width.toFloat()); val x2 = min(max(cx + hw, 0f), width.toFloat())
            val y1 = min(max(cy - hh, 0f), height.toFloat()); val y2 = min(max(cy + hh, 0f), height.toFloat())
            val r = Region(floor(x1.toDouble()).toInt(), floor(y1.toDouble()).toInt(),
                ceil(x2.toDouble()).toInt(), ceil(y2.toDouble()).toInt())
            if (r.x2 > r.x1 && r.y2 > r.y1) out.add(r)
        }
        return out
    }
}

/**
 * Keeps faces anonymized across frames where the detector blinks, and steadies boxes
 * (privacy_anon.faces.boxes.BoxTracker): every detection, smoothed against its track and grown
 * back to contain the raw detection, plus each track unmatched for at most `holdFrames` frames.
 */
class BoxTracker(val holdFrames: Int = 5, val smoothing: Double = 0.5, val matchIou: Double = 0.3) {
    init {
        require(holdFrames >= 0) { "hold_frames must be >= 0, got $holdFrames" }
        require(smoothing >= 0.0 && smoothing < 1.0) { "smoothing must be in [0, 1), got $smoothing" }
        require(matchIou > 0.0 && matchIou <= 1.0) { "match_iou must be in (0, 1], got $matchIou" }
    }

    var tracks: List<Box> = emptyList()
        private set
    private var missed: IntArray = IntArray(0)

    fun reset() {
        tracks = emptyList()
        missed = IntArray(0)
    }

    fun update(dets: List<Box>, scores: FloatArray): List<Box> {
        require(dets.size == scores.size) { "got ${dets.size} boxes but ${scores.size} scores" }
        val trackOf = match(dets, scores)
        val out = ArrayList<Box>()
        val newBoxes = ArrayList<Box>()
        val newMissed = ArrayList<Int>()
        val matched = HashSet<Int>()
        val s = smoothing.toFloat(); val r = (1 - smoothing).toFloat()
        for ((d, t) in trackOf.withIndex()) {
            val raw = dets[d]
            val smooth = if (t < 0) raw else {
                matched.add(t)
                val p = tracks[t]
                Box(s * p.x1 + r * raw.x1, s * p.y1 + r * raw.y1, s * p.x2 + r * raw.x2, s * p.y2 + r * raw.y2)
            }
            newBoxes.add(smooth)
            newMissed.add(0)
            out.add(Box(min(smooth.x1, raw.x1), min(smooth.y1, raw.y1), max(smooth.x2, raw.x2), max(smooth.y2, raw.y2)))
        }
        for (t in tracks.indices) {
            if (t in matched) continue
            val m = missed[t] + 1
            if (m <= holdFrames) {
                newBoxes.add(tracks[t])
                newMissed.add(m)
                out.add(tracks[t])
            }
        }
        tracks = newBoxes
        missed = newMissed.toIntArray()
        return out
    }

    private fun match(dets: List<Box>, scores: FloatArray): IntArray {
        val result = IntArray(dets.size) { -1 }
        if (dets.isEmpty() || tracks.isEmpty()) return result
        val free = BooleanArray(tracks.size) { true }
        for (d in Boxes.byScore(scores)) {
            var best = 0
            var bestIou = -2f
            for (t in tracks.indices) { // first maximum, as numpy's argmax
                val v = if (free[t]) Boxes.iou(dets[d], tracks[t]) else -1f
                if (v > bestIou) { bestIou = v; best = t }
            }
            if (bestIou >= matchIou.toFloat()) {
                result[d] = best
                free[best] = false
            }
        }
        return result
    }
}
