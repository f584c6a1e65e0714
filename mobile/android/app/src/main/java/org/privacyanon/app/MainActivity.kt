package org.privacyanon.app

import android.Manifest
import android.app.Activity
import android.content.ContentValues
import android.content.Intent
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.ImageFormat
import android.hardware.camera2.CameraCaptureSession
import android.hardware.camera2.CameraCharacteristics
import android.hardware.camera2.CameraDevice
import android.hardware.camera2.CameraManager
import android.content.pm.PackageManager
import android.media.ImageReader
import android.os.Environment
import android.os.Handler
import android.os.HandlerThread
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
 * the APK's assets, or a .zip the user picks), open an image or a video or the camera, anonymize,
 * preview, save. Only anonymized pixels are ever shown or saved: a frame the pipeline could not process
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
    private var camera: CameraHandles? = null

    companion object {
        const val PICK_IMAGE = 1
        const val PICK_VIDEO = 2
        const val PICK_BUNDLE = 3
        const val MAX_SIDE = 1920 // larger photos are shrunk before processing
        const val VIDEO_FPS = 10 // frames per second taken from a picked video
        const val CAMERA_PERMISSION = 4
        const val STORAGE_PERMISSION = 5
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
            button("Camera (start / stop)") { startCamera() },
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
            if (modifier.outputCount != 1) {
                throw BundleException("${bundle.where}${Bundle.MODIFIER_FILE}: expected 1 input and 1 output, got 1 and ${modifier.outputCount}")
            }
            if (!modifier.inputShape.contentEquals(intArrayOf(1, s, s, 3)) || !modifier.outputShape(0).contentEquals(intArrayOf(1, s, s, 3))) {
                throw BundleException("${bundle.where}${Bundle.MODIFIER_FILE}: wrong tensor shapes (input ${modifier.inputShape.toList()}, expected [1, $s, $s, 3])")
            }
            anonymizer = Anonymizer.fromBundle(bundle, detector, modifier)
            status.text = "bundle ${bundle.where}: ok (M ${s} px)"
        } catch (e: BundleException) {
            status.text = "error: ${e.message}"
        } catch (e: Exception) { // an unreadable picked file, an interpreter that will not start
            status.text = "error: ${e.javaClass.simpleName}: ${e.message?.lineSequence()?.first()}"
        }
        buttons.forEach { it.isEnabled = anonymizer != null }
    }

    private fun pick(type: String, code: Int) {
        stopCamera() // one user of the pipeline at a time
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

    /**
     * The video's frames at VIDEO_FPS, anonymized in order (the tracker holds faces between them),
     * encoded into an .mp4 in the app's Movies folder (no audio). A frame that fails is black.
     */
    private fun anonymizeVideo(uri: Uri) {
        val a = anonymizer ?: return
        val retriever = MediaMetadataRetriever()
        try {
            retriever.setDataSource(this, uri)
            val durationMs = retriever.extractMetadata(MediaMetadataRetriever.METADATA_KEY_DURATION)?.toLongOrNull() ?: 0L
            val n = maxOf(1L, durationMs * VIDEO_FPS / 1000).toInt()
            val target = File(getExternalFilesDir(Environment.DIRECTORY_MOVIES), "anonymized-${System.currentTimeMillis()}.mp4")
            var writer: VideoWriter? = null
            var masked = 0
            a.reset()
            try {
                for (i in 0 until n) {
                    val frame = retriever.getFrameAtTime(i * 1_000_000L / VIDEO_FPS, MediaMetadataRetriever.OPTION_CLOSEST)
                        ?: continue
                    val image = toRgb(shrink(frame, even = true))
                    val r = a.process(image)
                    if (r.status != "ok") masked++
                    val w = writer ?: VideoWriter(target, image.width, image.height, VIDEO_FPS).also { writer = it }
                    if (r.image.width == w.width && r.image.height == w.height) w.write(r.image)
                    val bitmap = toBitmap(r.image)
                    result = bitmap
                    show(bitmap, "frame ${i + 1}/$n: ${r.status}, ${r.regions.size} face region(s); $masked masked")
                }
                writer?.finish()
            } finally {
                writer?.close()
                a.reset()
            }
            resultName = "anonymized-${System.currentTimeMillis()}"
            show(result, if (writer == null) "error: no frames could be read from the video" else "video: $n frames -> $target ($masked masked)")
        } finally {
            retriever.release()
        }
    }

    /** The back camera, live: each frame anonymized before it is shown; "Save result" keeps the last one. */
    private fun startCamera() {
        val a = anonymizer ?: return
        if (checkSelfPermission(Manifest.permission.CAMERA) != PackageManager.PERMISSION_GRANTED) {
            requestPermissions(arrayOf(Manifest.permission.CAMERA), CAMERA_PERMISSION)
            return
        }
        if (camera != null) { stopCamera(); return }
        val manager = getSystemService(CAMERA_SERVICE) as CameraManager
        val id = manager.cameraIdList.firstOrNull {
            manager.getCameraCharacteristics(it).get(CameraCharacteristics.LENS_FACING) == CameraCharacteristics.LENS_FACING_BACK
        } ?: manager.cameraIdList.firstOrNull() ?: run { status.text = "error: no camera"; return }
        val rotation = manager.getCameraCharacteristics(id).get(CameraCharacteristics.SENSOR_ORIENTATION) ?: 0
        val thread = HandlerThread("camera").apply { start() }
        val handler = Handler(thread.looper)
        val reader = ImageReader.newInstance(640, 480, ImageFormat.YUV_420_888, 2)
        a.reset()
        reader.setOnImageAvailableListener({ r ->
            val image = r.acquireLatestImage() ?: return@setOnImageAvailableListener
            val rgb = try { Frames.fromYuv(image, rotation) } finally { image.close() }
            val out = a.process(rgb)  // fail closed: a failed frame is black, never the camera's
            val bitmap = toBitmap(out.image)
            result = bitmap
            resultName = "camera-${System.currentTimeMillis()}"
            show(bitmap, "camera: ${out.status}, ${out.regions.size} face region(s)")
        }, handler)
        manager.openCamera(id, object : CameraDevice.StateCallback() {
            override fun onOpened(device: CameraDevice) {
                camera = CameraHandles(device, reader, thread)
                @Suppress("DEPRECATION")
                device.createCaptureSession(listOf(reader.surface), object : CameraCaptureSession.StateCallback() {
                    override fun onConfigured(session: CameraCaptureSession) {
                        val request = device.createCaptureRequest(CameraDevice.TEMPLATE_PREVIEW).apply { addTarget(reader.surface) }
                        session.setRepeatingRequest(request.build(), null, handler)
                    }

                    override fun onConfigureFailed(session: CameraCaptureSession) = show(null, "error: camera session failed")
                }, handler)
            }

            override fun onDisconnected(device: CameraDevice) = stopCamera()
            override fun onError(device: CameraDevice, error: Int) {
                stopCamera()
                show(null, "error: camera error $error")
            }
        }, handler)
    }

    private class CameraHandles(val device: CameraDevice, val reader: ImageReader, val thread: HandlerThread)

    private fun stopCamera() {
        val c = camera ?: return
        camera = null
        c.device.close()
        c.reader.close()
        c.thread.quitSafely()
        anonymizer?.reset()
    }

    override fun onRequestPermissionsResult(requestCode: Int, permissions: Array<String>, grantResults: IntArray) {
        if (requestCode == CAMERA_PERMISSION && grantResults.firstOrNull() == PackageManager.PERMISSION_GRANTED) startCamera()
    }

    override fun onPause() {
        stopCamera()
        super.onPause()
    }

    private fun save() {
        val bitmap = result ?: return
        if (android.os.Build.VERSION.SDK_INT < 29 &&
            checkSelfPermission(Manifest.permission.WRITE_EXTERNAL_STORAGE) != PackageManager.PERMISSION_GRANTED) {
            requestPermissions(arrayOf(Manifest.permission.WRITE_EXTERNAL_STORAGE), STORAGE_PERMISSION)
            status.text = "allow storage, then Save again"
            return
        }
        val values = ContentValues().apply {
            put(MediaStore.Images.Media.DISPLAY_NAME, "$resultName.png")
            put(MediaStore.Images.Media.MIME_TYPE, "image/png")
        }
        val uri = contentResolver.insert(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, values)
        if (uri == null) { status.text = "error: cannot save to the gallery"; return }
        contentResolver.openOutputStream(uri)!!.use { bitmap.compress(Bitmap.CompressFormat.PNG, 100, it) }
        status.text = "saved $uri"
    }

    /** At most MAX_SIDE pixels on the longer side; even sizes for the video encoder. */
    private fun shrink(b: Bitmap, even: Boolean = false): Bitmap {
        val side = maxOf(b.width, b.height)
        var w = if (side <= MAX_SIDE) b.width else b.width * MAX_SIDE / side
        var h = if (side <= MAX_SIDE) b.height else b.height * MAX_SIDE / side
        if (even) { w -= w % 2; h -= h % 2 }
        return if (w == b.width && h == b.height) b else Bitmap.createScaledBitmap(b, maxOf(w, 2), maxOf(h, 2), true)
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
