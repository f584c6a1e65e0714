package org.privacyanon.core

/**
 * The learned M: crops resized to its square input (area when shrinking, bilinear otherwise),
 * run, and resized back (bilinear), as privacy_anon/runtime/modifier.py does.
 */
class Modifier(private val model: TfliteRunner, val inputSize: Int) {
    fun modify(crop: RgbImage): RgbImage {
        val s = inputSize
        val shrink = crop.width > s || crop.height > s
        val small = if (shrink) Resize.area(crop, s, s) else Resize.linear(crop, s, s)
        val out = model.run(Tensor(intArrayOf(1, s, s, 3), bytes = small.data))
        val pixels = out.singleOrNull()?.bytes
        if (pixels == null || pixels.size != s * s * 3) throw IllegalStateException("modifier: expected one ${s}x${s}x3 uint8 output")
        val result = RgbImage(s, s, pixels)
        return if (crop.width == s && crop.height == s) result else Resize.linear(result, crop.width, crop.height)
    }
}

/** One processed frame: `status` is "ok" or "masked" (something failed: the whole frame is black). */
class FrameResult(
    val image: RgbImage,
    val status: String,
    val detections: List<Box> = emptyList(),
    val scores: FloatArray = FloatArray(0),
    val regions: List<Region> = emptyList(),
    val error: String = "",
)

/**
 * Per frame: detect -> track (hold lost faces) -> enlarge -> crop -> modify -> paste back
 * (privacy_anon/runtime/pipeline.py). Fails closed: a frame on which the detector or M
 * fails comes back fully black, never as it came in.
 */
class Anonymizer(
    val detector: BlazeFace,
    val modifier: Modifier,
    val enlarge: Double = 1.6,
    hold: Int = 5,
    smoothing: Double = 0.5,
) {
    val tracker = BoxTracker(hold, smoothing)

    companion object {
        /** The pipeline for a checked bundle, given runners for its two models. */
        fun fromBundle(bundle: Bundle, detectorRunner: TfliteRunner, modifierRunner: TfliteRunner, hold: Int = 5) =
            Anonymizer(BlazeFace(detectorRunner, bundle.detector), Modifier(modifierRunner, bundle.inputSize),
                bundle.enlarge.toDouble(), hold)
    }

    /** Forget tracked faces (between unrelated videos or images). */
    fun reset() = tracker.reset()

    fun process(frame: RgbImage): FrameResult {
        val found = try {
            detector.detect(frame)
        } catch (e: Throwable) {
            return masked(frame, "detector: ${e.javaClass.simpleName}: ${e.message}")
        }
        val held = tracker.update(found.boxes, found.scores)
        return try {
            val regions = Boxes.faceRegions(held, frame.width, frame.height, enlarge)
            val out = frame.copy()
            // each crop is cut from the original frame; a later region is pasted last
            for (r in regions) out.paste(modifier.modify(frame.crop(r.x1, r.y1, r.x2, r.y2)), r.x1, r.y1)
            FrameResult(out, "ok", found.boxes, found.scores, regions)
        } catch (e: Throwable) {
            masked(frame, "modifier: ${e.javaClass.simpleName}: ${e.message}", found)
        }
    }

    private fun masked(frame: RgbImage, error: String, found: BlazeFace.Detections? = null) =
        FrameResult(RgbImage(frame.width, frame.height), "masked", found?.boxes ?: emptyList(),
            found?.scores ?: FloatArray(0), emptyList(), error.lineSequence().first())
}
