package org.privacyanon.core

import java.io.File
import java.security.MessageDigest
import java.util.zip.ZipException
import java.util.zip.ZipFile

/** A bundle that cannot be used; the message is one line naming the file, as in the Python runtime. */
class BundleException(message: String) : Exception(message)

/** Detector settings from bundle.json's "face_detector" (defaults as in privacy_anon.runtime). */
data class DetectorSettings(
    val scoreThreshold: Float = 0.6f,
    val nmsIou: Float = 0.3f,
    val minFaceSize: Float = 40f,
    val zoomOut: Float = 2f,
)

/**
 * The deployable bundle (modifier.tflite, face_detector.tflite, bundle.json), checked as
 * privacy_anon/runtime/bundle.py checks it: manifest present and valid, format and version,
 * input size and file list, both models present, their SHA-256 equal to the manifest's and
 * starting like a TFLite flatbuffer. Tensor shapes are checked by whoever loads the models.
 */
class Bundle private constructor(
    val where: String,
    val manifest: Map<String, Any?>,
    val modifierModel: ByteArray,
    val detectorModel: ByteArray,
) {
    val inputSize: Int get() = (obj(manifest["modifier"])!!["input_size"] as Double).toInt()
    val enlarge: Float get() = ((manifest["enlarge"] as? Double) ?: 1.6).toFloat()
    val detector: DetectorSettings
        get() {
            val d = obj(manifest["face_detector"]) ?: emptyMap()
            fun f(key: String, default: Float) = ((d[key] as? Double)?.toFloat()) ?: default
            return DetectorSettings(f("score_threshold", 0.6f), f("nms_iou", 0.3f),
                f("min_face_size", 40f), f("zoom_out", 2f))
        }

    companion object {
        const val FORMAT = "privacy-anon-bundle"
        const val FORMAT_VERSION = 1
        const val MANIFEST = "bundle.json"
        const val MODIFIER_FILE = "modifier.tflite"
        const val DETECTOR_FILE = "face_detector.tflite"
        private val REQUIRED = listOf(MODIFIER_FILE, DETECTOR_FILE)

        @Suppress("UNCHECKED_CAST")
        private fun obj(v: Any?): Map<String, Any?>? = v as? Map<String, Any?>

        /** A bundle folder or a .zip of its files (at the top or inside one folder). */
        fun load(path: File): Bundle {
            if (!path.exists()) throw BundleException("$path: bundle not found")
            if (path.isDirectory) {
                return fromFiles(path.path + "/") { name -> File(path, name).takeIf { it.isFile }?.readBytes() }
            }
            val entries = HashMap<String, ByteArray>()
            try {
                ZipFile(path).use { zip ->
                    for (entry in zip.entries()) {
                        val base = entry.name.substringAfterLast('/')
                        if (!entry.isDirectory && (base == MANIFEST || base in REQUIRED)) {
                            entries[base] = zip.getInputStream(entry).use { it.readBytes() }
                        }
                    }
                }
            } catch (e: ZipException) {
                throw BundleException("$path: not a readable bundle folder or .zip (${e.message})")
            } catch (e: java.io.IOException) {
                throw BundleException("$path: not a readable bundle folder or .zip (${e.message})")
            }
            return fromFiles("$path!") { entries[it] }
        }

        /**
         * A bundle from any store of files (a folder, a zip, Android assets).
         * @param where prefix for messages, e.g. "bundle/" or "bundle.zip!".
         * @param read the bytes of a file, or null when it is missing.
         */
        fun fromFiles(where: String, read: (String) -> ByteArray?): Bundle {
            val manifestWhere = where + MANIFEST
            val text = read(MANIFEST) ?: throw BundleException("$manifestWhere: missing (not a privacy-anon bundle)")
            val parsed = try {
                Json.parse(String(text, Charsets.UTF_8))
            } catch (e: Json.Error) {
                throw BundleException("$manifestWhere: not valid JSON (${e.message})")
            }
            val manifest = obj(parsed) ?: throw BundleException("$manifestWhere: not a bundle manifest")
            if (manifest["format"] != FORMAT) {
                throw BundleException("$manifestWhere: not a privacy-anon bundle manifest (format ${manifest["format"]})")
            }
            val version = manifest["format_version"] as? Double
            if (version == null || version != FORMAT_VERSION.toDouble()) {
                val shown = if (version != null && version == Math.floor(version)) version.toLong().toString() else manifest["format_version"].toString()
                throw BundleException("$manifestWhere: bundle format version $shown is not supported " +
                    "(this runner reads version $FORMAT_VERSION); re-export the bundle")
            }
            val size = (obj(manifest["modifier"])?.get("input_size") as? Double)
            val files = obj(manifest["files"])
            if (size == null || size < 4 || files == null) {
                throw BundleException("$manifestWhere: incomplete manifest (needs modifier.input_size and files)")
            }
            val models = REQUIRED.map { name ->
                val bytes = read(name) ?: throw BundleException("$where$name: missing from the bundle")
                val expected = obj(files[name])?.get("sha256") as? String
                if (expected.isNullOrEmpty()) throw BundleException("$where$name: no sha256 in $MANIFEST")
                if (sha256(bytes) != expected) {
                    throw BundleException("$where$name: sha256 mismatch (file truncated or modified since export)")
                }
                if (!isTflite(bytes)) throw BundleException("$where$name: not a TFLite model (no TFL3 identifier)")
                bytes
            }
            return Bundle(where, manifest, models[0], models[1])
        }

        fun sha256(bytes: ByteArray): String =
            MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }

        /** A TFLite flatbuffer carries "TFL3" at bytes 4..8. */
        fun isTflite(bytes: ByteArray): Boolean =
            bytes.size >= 8 && String(bytes, 4, 4, Charsets.US_ASCII) == "TFL3"
    }
}

/** `java ... org.privacyanon.core.BundleKt BUNDLE`: checks a bundle folder or .zip; one line and exit 2 if bad. */
fun main(args: Array<String>) {
    if (args.size != 1) {
        System.err.println("usage: BundleKt BUNDLE (a bundle folder or .zip)")
        kotlin.system.exitProcess(2)
    }
    try {
        val b = Bundle.load(File(args[0]))
        println("${args[0]}: ok (modifier ${b.inputSize} px, ${b.modifierModel.size} + ${b.detectorModel.size} bytes)")
    } catch (e: BundleException) {
        System.err.println("error: ${e.message}")
        kotlin.system.exitProcess(2)
    }
}
