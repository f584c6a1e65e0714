package org.privacyanon.app

import org.privacyanon.core.BundleException
import org.privacyanon.core.Tensor
import org.privacyanon.core.TfliteRunner
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.roundToInt

/**
 * The core's "run this .tflite" on the TensorFlow Lite Interpreter (org.tensorflow:tensorflow-lite).
 * Pixels in and out are uint8 0..255 for M; a float32 or other quantized tensor is converted
 * with the tensor's own scale and zero point, as privacy_anon/runtime/modifier.py does.
 */
class InterpreterRunner(model: ByteArray, name: String, threads: Int = 2) : TfliteRunner, AutoCloseable {
    private val interpreter: Interpreter

    init {
        val buffer = ByteBuffer.allocateDirect(model.size).order(ByteOrder.nativeOrder())
        buffer.put(model).rewind()
        interpreter = try {
            Interpreter(buffer, Interpreter.Options().setNumThreads(threads))
        } catch (e: IllegalArgumentException) {
            throw BundleException("$name: not a loadable TFLite model (${e.message?.lineSequence()?.first()})")
        }
        if (interpreter.inputTensorCount != 1) throw BundleException("$name: expected 1 input, got ${interpreter.inputTensorCount}")
    }

    val inputShape: IntArray get() = interpreter.getInputTensor(0).shape()
    fun outputShape(i: Int): IntArray = interpreter.getOutputTensor(i).shape()
    val outputCount: Int get() = interpreter.outputTensorCount

    override fun run(input: Tensor): List<Tensor> {
        val inT = interpreter.getInputTensor(0)
        val inBuf = ByteBuffer.allocateDirect(inT.numBytes()).order(ByteOrder.nativeOrder())
        val q = inT.quantizationParams()
        when (inT.dataType()) {
            DataType.FLOAT32 -> if (input.floats != null) input.floats!!.forEach { inBuf.putFloat(it) }
            else input.bytes!!.forEach { inBuf.putFloat((it.toInt() and 0xff).toFloat()) }
            DataType.UINT8 -> input.bytes!!.forEach {
                val v = it.toInt() and 0xff
                inBuf.put((if (q.scale == 1f && q.zeroPoint == 0) v else (v / q.scale + q.zeroPoint).roundToInt().coerceIn(0, 255)).toByte())
            }
            DataType.INT8 -> input.bytes!!.forEach {
                inBuf.put(((it.toInt() and 0xff) / q.scale + q.zeroPoint).roundToInt().coerceIn(-128, 127).toByte())
            }
            else -> throw IllegalStateException("unsupported input type ${inT.dataType()}")
        }
        inBuf.rewind()
        val outs = HashMap<Int, Any>()
        for (i in 0 until interpreter.outputTensorCount) {
            outs[i] = ByteBuffer.allocateDirect(interpreter.getOutputTensor(i).numBytes()).order(ByteOrder.nativeOrder())
        }
        interpreter.runForMultipleInputsOutputs(arrayOf<Any>(inBuf), outs)
        return (0 until interpreter.outputTensorCount).map { i ->
            val t = interpreter.getOutputTensor(i)
            val buf = (outs[i] as ByteBuffer).also { it.rewind() }
            val n = t.numElements()
            if (input.floats != null) { // the detector: float outputs
                Tensor(t.shape(), floats = FloatArray(n) { buf.float })
            } else { // M: back to pixels
                val oq = t.quantizationParams()
                Tensor(t.shape(), bytes = ByteArray(n) {
                    val v = when (t.dataType()) {
                        DataType.FLOAT32 -> buf.float
                        DataType.UINT8 -> ((buf.get().toInt() and 0xff) - oq.zeroPoint) * oq.scale
                        DataType.INT8 -> (buf.get().toInt() - oq.zeroPoint) * oq.scale
                        else -> throw IllegalStateException("unsupported output type ${t.dataType()}")
                    }
                    Math.rint(v.toDouble()).toInt().coerceIn(0, 255).toByte()
                })
            }
        }
    }

    override fun close() = interpreter.close()
}
