package org.privacyanon.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.abs

/**
 * The Kotlin core against golden vectors written by the Python runtime (mobile/golden.py) from
 * the same bundle: fed the same raw model outputs, it must find the same faces (within 1 px),
 * hold the same tracks, replace the same regions and paste bit-identical pixels. There is no
 * TFLite interpreter on a desktop JVM, so the models' outputs are replayed from the recording;
 * the inputs the core builds for them are checked against the ones Python fed.
 * Run with -Dgolden.dir=DIR.
 */
class GoldenTest {
    private val dir = File(System.getProperty("golden.dir") ?: error("set -Dgolden.dir to mobile/golden.py's output"))

    @Suppress("UNCHECKED_CAST")
    private val golden = Json.parse(File(dir, "golden.json").readText()) as Map<String, Any?>

    @Suppress("UNCHECKED_CAST")
    private fun obj(v: Any?) = v as Map<String, Any?>

    @Suppress("UNCHECKED_CAST")
    private fun list(v: Any?) = v as List<Any?>

    private fun bytes(name: Any?): ByteArray = File(dir, obj(obj(golden["arrays"])[name])["file"] as String).readBytes()

    private fun floats(name: Any?): FloatArray {
        val buf = ByteBuffer.wrap(bytes(name)).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
        return FloatArray(buf.remaining()).also { buf.get(it) }
    }

    private fun image(name: Any?): RgbImage {
        val shape = list(obj(obj(golden["arrays"])[name])["shape"]).map { (it as Double).toInt() }
        return RgbImage(shape[1], shape[0], bytes(name))
    }

    private fun boxes(v: Any?) = list(v).map { b -> list(b).map { (it as Double).toFloat() } }

    /** Replays recorded model outputs in call order, after checking the input is the one Python fed. */
    private inner class Replay(val calls: List<Any?>, val kind: String) : TfliteRunner {
        var next = 0
        var worstMean = 0.0
        override fun run(input: Tensor): List<Tensor> {
            if (next >= calls.size) fail("$kind: more calls than Python made (${calls.size})")
            val call = obj(calls[next++])
            if (kind == "detector") {
                val expected = floats(call["input"])
                val got = input.floats!!
                assertEquals(expected.size, got.size)
                val mean = expected.indices.sumOf { abs(expected[it] - got[it]).toDouble() } / got.size
                worstMean = maxOf(worstMean, mean)
                // the same letterbox; resampling within about one grey level of cv2's (2/255 per level)
                assertTrue("$kind call $next: input differs from Python's by $mean on average", mean < 2.0 / 255)
                return listOf(Tensor(intArrayOf(1, 2304, 16), floats = floats(call["regressors"])),
                    Tensor(intArrayOf(1, 2304, 1), floats = floats(call["classificators"])))
            }
            val expected = bytes(call["input"])
            val got = input.bytes!!
            val mean = expected.indices.sumOf { abs((expected[it].toInt() and 0xff) - (got[it].toInt() and 0xff)).toDouble() } / got.size
            worstMean = maxOf(worstMean, mean / 127.5)
            assertTrue("$kind call $next: input differs from Python's by $mean grey levels on average", mean < 1.0)
            return listOf(Tensor(input.shape, bytes = bytes(call["output"])))
        }
    }

    @Test
    fun framesMatchThePythonRuntime() {
        val s = obj(golden["settings"])
        fun d(k: String) = s[k] as Double
        val settings = DetectorSettings(d("score_threshold").toFloat(), d("nms_iou").toFloat(), d("min_face_size").toFloat(), d("zoom_out").toFloat())
        var changedPixels = 0L
        var heldFrames = 0
        var seenFaces = 0
        // one pipeline for the whole clip (the tracker carries over); each frame's recording swapped in
        val detSwitch = Switch()
        val modSwitch = Switch()
        val a = Anonymizer(BlazeFace(detSwitch, settings), Modifier(modSwitch, d("input_size").toInt()),
            d("enlarge"), d("hold").toInt(), d("smoothing"))
        for ((i, f) in list(golden["frames"]).withIndex()) {
            val frame = obj(f)
            val det = Replay(list(frame["detector_calls"]), "detector")
            val mod = Replay(list(frame["modifier_calls"]), "modifier")
            detSwitch.target = det
            modSwitch.target = mod
            if (frame["reset_before"] == true) a.reset()
            val input = image(frame["frame"])
            assertEquals(list(frame["windows"]).map { list(it).map { v -> (v as Double).toInt() } },
                a.detector.windows(input.width, input.height).map { listOf(it.x0, it.y0, it.w, it.h, it.side) })
            val result = a.process(input)
            assertEquals("frame $i: ${result.error}", "ok", result.status)
            assertEquals("frame $i: every recorded detector call replayed", det.calls.size, det.next)
            assertEquals("frame $i: every recorded modifier call replayed", mod.calls.size, mod.next)

            val want = boxes(frame["detections"])
            assertEquals("frame $i: number of faces", want.size, result.detections.size)
            for ((k, b) in result.detections.withIndex()) {
                for ((j, v) in b.toList().withIndex()) assertEquals("frame $i face $k", want[k][j], v, 1.0f)
            }
            seenFaces += want.size
            val tracks = boxes(frame["tracks"])
            assertEquals("frame $i: tracks", tracks.size, a.tracker.tracks.size)
            for ((k, b) in a.tracker.tracks.withIndex()) {
                for ((j, v) in b.toList().withIndex()) assertEquals("frame $i track $k", tracks[k][j], v, 1.0f)
            }
            if (want.isEmpty() && tracks.isNotEmpty()) heldFrames++
            assertEquals("frame $i: regions", list(frame["regions"]).map { r -> list(r).map { (it as Double).toInt() } },
                result.regions.map { listOf(it.x1, it.y1, it.x2, it.y2) })
            val expected = image(frame["output"])
            assertArrayEquals("frame $i: pasted pixels", expected.data, result.image.data)
            changedPixels += expected.data.indices.count { expected.data[it] != input.data[it] }
        }
        // the vectors exercise what they should: faces found and modified, one held by the tracker
        assertTrue("faces found: $seenFaces", seenFaces >= 4)
        assertTrue("frames where only the tracker hides the face: $heldFrames", heldFrames >= 1)
        assertTrue("pixels changed: $changedPixels", changedPixels > 10_000)
    }

    /** A runner that forwards to a replaceable target (one pipeline, per-frame recordings). */
    private class Switch : TfliteRunner {
        var target: TfliteRunner? = null
        override fun run(input: Tensor) = target!!.run(input)
    }

    @Test
    fun goodBundleLoadsAndBadBundlesFailWithOneLine() {
        val good = Bundle.load(File(golden["bundle"] as String))
        assertEquals((obj(golden["settings"])["input_size"] as Double).toInt(), good.inputSize)
        assertTrue(Bundle.isTflite(good.modifierModel) && Bundle.isTflite(good.detectorModel))
        // the cases that need an interpreter (swapped models) are the app's (InterpreterRunner shapes)
        val cases = list(golden["bad_bundles"]).map { obj(it) }.filter { it["needs_interpreter"] != true }
        assertTrue(cases.size >= 9)
        for (c in cases) {
            val path = File(dir, c["path"] as String)
            try {
                Bundle.load(path)
                fail("${c["name"]}: a broken bundle loaded")
            } catch (e: BundleException) {
                val msg = e.message!!
                assertTrue("${c["name"]}: not one line: $msg", '\n' !in msg)
                for (w in list(c["expect"])) assertTrue("${c["name"]}: '$msg' lacks '$w'", (w as String) in msg)
                assertTrue("${c["name"]}: '$msg' does not name the bundle", msg.startsWith(path.path))
            }
        }
        assertTrue(runCatching { Bundle.load(File(dir, "no-such-bundle")) }.exceptionOrNull()!!.message!!.contains("not found"))
    }

    @Test
    fun failuresMaskTheWholeFrame() {
        val frame = image(obj(list(golden["frames"])[0])["frame"])
        val broken = object : TfliteRunner {
            override fun run(input: Tensor): List<Tensor> = throw IllegalStateException("interpreter failed")
        }
        val settings = DetectorSettings()
        val a = Anonymizer(BlazeFace(broken, settings), Modifier(broken, 64))
        val r = a.process(frame)
        assertEquals("masked", r.status)
        assertTrue(r.error.startsWith("detector:"))
        assertTrue(r.image.data.all { it == 0.toByte() })
        // the detector works (replayed), M fails: still nothing of the frame comes out
        val calls = list(obj(list(golden["frames"])[0])["detector_calls"])
        val b = Anonymizer(BlazeFace(Replay(calls, "detector"), settings), Modifier(broken, 64))
        val r2 = b.process(frame)
        assertEquals("masked", r2.status)
        assertTrue(r2.error.startsWith("modifier:"))
        assertTrue(r2.image.data.all { it == 0.toByte() })
    }
}
