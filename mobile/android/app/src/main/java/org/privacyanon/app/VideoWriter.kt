package org.privacyanon.app

import android.media.MediaCodec
import android.media.MediaCodecInfo
import android.media.MediaFormat
import android.media.MediaMuxer
import org.privacyanon.core.RgbImage
import java.io.File

/**
 * Anonymized frames -> an H.264 .mp4 (MediaCodec + MediaMuxer; no audio). Written to a
 * temporary file and renamed on `finish`, so no half-written video is left where the user looks.
 */
class VideoWriter(private val target: File, val width: Int, val height: Int, private val fps: Int) : AutoCloseable {
    private val partial = File(target.path + ".part")
    private val codec = MediaCodec.createEncoderByType(MediaFormat.MIMETYPE_VIDEO_AVC)
    private val muxer = MediaMuxer(partial.path, MediaMuxer.OutputFormat.MUXER_OUTPUT_MPEG_4)
    private val info = MediaCodec.BufferInfo()
    private var track = -1
    private var frames = 0L
    private var released = false
    private var finished = false

    init {
        require(width % 2 == 0 && height % 2 == 0) { "video size must be even, got ${width}x$height" }
        val format = MediaFormat.createVideoFormat(MediaFormat.MIMETYPE_VIDEO_AVC, width, height).apply {
            setInteger(MediaFormat.KEY_COLOR_FORMAT, MediaCodecInfo.CodecCapabilities.COLOR_FormatYUV420Flexible)
            setInteger(MediaFormat.KEY_BIT_RATE, width * height * 4)
            setInteger(MediaFormat.KEY_FRAME_RATE, fps)
            setInteger(MediaFormat.KEY_I_FRAME_INTERVAL, 1)
        }
        codec.configure(format, null, null, MediaCodec.CONFIGURE_FLAG_ENCODE)
        codec.start()
    }

    fun write(frame: RgbImage) {
        val index = codec.dequeueInputBuffer(1_000_000)
        if (index < 0) throw IllegalStateException("video encoder: no input buffer")
        val image = codec.getInputImage(index) ?: throw IllegalStateException("video encoder: no input image")
        Frames.toYuv(frame, image)
        codec.queueInputBuffer(index, 0, width * height * 3 / 2, frames * 1_000_000 / fps, 0)
        frames++
        drain(false)
    }

    private fun drain(end: Boolean) {
        while (true) {
            val index = codec.dequeueOutputBuffer(info, if (end) 100_000 else 0)
            when {
                index == MediaCodec.INFO_OUTPUT_FORMAT_CHANGED -> { track = muxer.addTrack(codec.outputFormat); muxer.start() }
                index >= 0 -> {
                    val buf = codec.getOutputBuffer(index)!!
                    if (info.flags and MediaCodec.BUFFER_FLAG_CODEC_CONFIG != 0) info.size = 0
                    if (info.size > 0 && track >= 0) muxer.writeSampleData(track, buf, info)
                    codec.releaseOutputBuffer(index, false)
                    if (info.flags and MediaCodec.BUFFER_FLAG_END_OF_STREAM != 0) return
                }
                else -> if (!end) return
            }
        }
    }

    /** Ends the stream and moves the file into place. */
    fun finish(): File {
        val index = codec.dequeueInputBuffer(1_000_000)
        if (index >= 0) codec.queueInputBuffer(index, 0, 0, frames * 1_000_000 / fps, MediaCodec.BUFFER_FLAG_END_OF_STREAM)
        drain(true)
        release()
        if (!partial.renameTo(target)) throw IllegalStateException("cannot move the video to $target")
        finished = true
        return target
    }

    private fun release() {
        if (released) return
        released = true
        runCatching { codec.stop() }
        codec.release()
        runCatching { if (track >= 0) muxer.stop() }
        muxer.release()
    }

    /** Releases the encoder; an unfinished video is deleted. */
    override fun close() {
        release()
        if (!finished) partial.delete()
    }
}
