package org.privacyanon.app

import android.app.Activity
import android.content.ContentValues
import android.content.Intent
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.media.MediaMetadataRetriever
import android.net.Uri
import android.os.Bundle as AndroidBundle
import android.provider.MediaStore
import android.view.View
import android.widget.Button
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.TextView
import org.privacyanon.core.Anonymizer
import org.privacyanon.core.Bundle
import org.privacyanon.core.BundleException
import org.privacyanon.core.RgbImage
import java.io.File

/**
 * The thin Android shell around the plain-Kotlin core: load and check the bundle (the one in
 * the APK's assets, or a .zip the user picks), open an image or a video, anonymize it, preview,
 * save. Only anonymized pixels are ever shown or saved: a frame the pipeline could not process
 * comes back black (fail closed), and a bundle that fails its checks disables everything.
 */
class MainActivity : Activity() {
    private lateinit var status: TextView
    private lateinit var preview: ImageView
    private lateinit var buttons: List<Button>
    private var anonymizer: Anonymizer? = null
    private var runners: List<InterpreterRunner> = emptyList()
    private var result: Bitmap? = null
    private var resultName = "anonymized"

    companion object {
        const val PICK_IMAGE = 1
        const val PICK_VIDEO = 2
        const val PICK_BUNDLE = 3
        const val MAX_SIDE = 1920 // larger photos are shrunk before processing
        const val VIDEO_FRAMES = 60 // frames taken evenly from a picked video
    }

    override fun onCreate(state: AndroidBundle?) {
        super.onCreate(state)
        val layout = LinearLayout(this).apply { orientation = LinearLayout.VERTICAL }
        status = TextView(this)
        preview = ImageView(this).apply { adjustViewBounds = true }
        fun button(label: String, action: () -> Unit) = Button(this).apply { text = label; setOnClickListener { action() } }
        buttons = listOf(
            button("Open image") { pick("image/*", PICK_IMAGE) },
            button("Open video") { pick("video/*", PICK_VIDEO) },
            button("Save result") { save() },
        )
        val bundleButton = button("Use another bundle (.zip)") { pick("application/zip", PICK_BUNDLE) }
        buttons.forEach { layout.addView(it) }
        layout.addView(bundleButton)
        layout.addView(status)
        layout.addView(preview)
        setContentView(layout)
        load { Bundle.fromFiles("assets/") { name -> runCatching { assets.open(name).use { it.readBytes() } }.getOrNull() } }
    }

    /** Checks a bundle and builds the pipeline; on any error one line is shown and nothing runs. */
    private fun load(open: () -> Bundle) {
        runners.forEach { it.close() }
        runners = emptyList()
        anonymizer = null
        try {
            val bundle = open()
            val detector = InterpreterRunner(bundle.detectorModel, bundle.where + Bundle.DETECTOR_FILE)
            val modifier = InterpreterRunner(bundle.modifierModel, bundle.where + Bundle.MODIFIER_FILE)
            runners = listOf(detector, modifier)
            val s = bundle.inputSize
            if (!detector.inputShape.contentEquals(intArrayOf(1, 192, 192, 3)) || detector.outputCount != 2) {
                throw BundleException("${bundle.where}${Bundle.DETECTOR_FILE}: not BlazeFace full-range (input ${detector.inputShape.toList()})")
            }
            if (!modifier.inputShape.contentEquals(intArrayOf(1, s, s, 3)) || !modifier.outputShape(0).contentEquals(intArrayOf(1, s, s, 3))) {
                throw BundleException("${bundle.where}${Bundle.MODIFIER_FILE}: wrong tensor shapes (input ${modifier.inputShape.toList()}, expected [1, $s, $s, 3])")
            }
            anonymizer = Anonymizer.fromBundle(bundle, detector, modifier)
            status.text = "bundle ${bundle.where}: ok (M ${s} px)"
        } catch (e: BundleException) {
            status.text = "error: ${e.message}"
        }
        buttons.forEach { it.isEnabled = anonymizer != null }
    }

    private fun pick(type: String, code: Int) {
        startActivityForResult(Intent(Intent.ACTION_OPEN_DOCUMENT).addCategory(Intent.CATEGORY_OPENABLE).setType(type), code)
    }

    @Deprecated("the platform API; no androidx here")
    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        val uri = data?.data
        if (resultCode != RESULT_OK || uri == null) return
        when (requestCode) {
            PICK_BUNDLE -> load {
                val file = File(cacheDir, "picked-bundle.zip")
                contentResolver.openInputStream(uri)!!.use { src -> file.outputStream().use { src.copyTo(it) } }
                Bundle.load(file)
            }
            PICK_IMAGE -> background { anonymizeImage(uri) }
            PICK_VIDEO -> background { anonymizeVideo(uri) }
        }
    }

    private fun background(work: () -> Unit) {
        buttons.forEach { it.isEnabled = false }
        Thread {
            try {
                work()
            } catch (e: Exception) {
                show(null, "error: ${e.message?.lineSequence()?.first()}")
            } finally {
                runOnUiThread { buttons.forEach { it.isEnabled = anonymizer != null } }
            }
        }.start()
    }

    private fun show(bitmap: Bitmap?, text: String) = runOnUiThread {
        status.text = text
        preview.setImageBitmap(bitmap)
        preview.visibility = if (bitmap == null) View.GONE else View.VISIBLE
    }

    private fun anonymizeImage(uri: Uri) {
        val a = anonymizer ?: return
        val decoded = contentResolver.openInputStream(uri)!!.use { BitmapFactory.decodeStream(it) }
            ?: throw IllegalArgumentException("$uri: not a readable image")
        val image = toRgb(shrink(decoded))
        a.reset()
        val started = System.nanoTime()
        val r = a.process(image)
        a.reset()
        val ms = (System.nanoTime() - started) / 1_000_000
        result = toBitmap(r.image)
        resultName = "anonymized-${System.currentTimeMillis()}"
        show(result, "${r.status}: ${r.regions.size} face region(s), ${ms} ms" + if (r.error.isEmpty()) "" else " (${r.error})")
    }

    /** Frames taken evenly from the video, anonymized in order (the tracker holds faces between them). */
    private fun anonymizeVideo(uri: Uri) {
        val a = anonymizer ?: return
        val retriever = MediaMetadataRetriever()
        retriever.setDataSource(this, uri)
        val durationMs = retriever.extractMetadata(MediaMetadataRetriever.METADATA_KEY_DURATION)?.toLongOrNull() ?: 0L
        val dir = File(getExternalFilesDir(null), "video-${System.currentTimeMillis()}").apply { mkdirs() }
        a.reset()
        var masked = 0
        for (i in 0 until VIDEO_FRAMES) {
            val us = durationMs * 1000 * i / VIDEO_FRAMES
            val frame = retriever.getFrameAtTime(us, MediaMetadataRetriever.OPTION_CLOSEST) ?: continue
            val r = a.process(toRgb(shrink(frame)))
            if (r.status != "ok") masked++
            val bitmap = toBitmap(r.image)
            File(dir, "frame-%03d.jpg".format(i)).outputStream().use { bitmap.compress(Bitmap.CompressFormat.JPEG, 92, it) }
            result = bitmap
            show(bitmap, "frame ${i + 1}/$VIDEO_FRAMES: ${r.status}, ${r.regions.size} face region(s); $masked masked")
        }
        a.reset()
        retriever.release()
        resultName = "anonymized-${System.currentTimeMillis()}"
        show(result, "video: $VIDEO_FRAMES anonymized frames in $dir ($masked masked)")
    }

    private fun save() {
        val bitmap = result ?: return
        val values = ContentValues().apply {
            put(MediaStore.Images.Media.DISPLAY_NAME, "$resultName.png")
            put(MediaStore.Images.Media.MIME_TYPE, "image/png")
        }
        val uri = contentResolver.insert(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, values)
        if (uri == null) { status.text = "error: cannot save to the gallery"; return }
        contentResolver.openOutputStream(uri)!!.use { bitmap.compress(Bitmap.CompressFormat.PNG, 100, it) }
        status.text = "saved $uri"
    }

    private fun shrink(b: Bitmap): Bitmap {
        val side = maxOf(b.width, b.height)
        if (side <= MAX_SIDE) return b
        return Bitmap.createScaledBitmap(b, b.width * MAX_SIDE / side, b.height * MAX_SIDE / side, true)
    }

    private fun toRgb(b: Bitmap): RgbImage {
        val argb = IntArray(b.width * b.height)
        b.getPixels(argb, 0, b.width, 0, 0, b.width, b.height)
        val out = RgbImage(b.width, b.height)
        for ((i, p) in argb.withIndex()) {
            out.data[i * 3] = (p shr 16).toByte(); out.data[i * 3 + 1] = (p shr 8).toByte(); out.data[i * 3 + 2] = p.toByte()
        }
        return out
    }

    private fun toBitmap(img: RgbImage): Bitmap {
        val argb = IntArray(img.width * img.height) { i ->
            (0xff shl 24) or (img.get(i % img.width, i / img.width, 0) shl 16) or
                (img.get(i % img.width, i / img.width, 1) shl 8) or img.get(i % img.width, i / img.width, 2)
        }
        return Bitmap.createBitmap(argb, img.width, img.height, Bitmap.Config.ARGB_8888)
    }
}
