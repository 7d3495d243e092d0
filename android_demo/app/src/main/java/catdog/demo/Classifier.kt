package catdog.demo

import android.content.Context
import android.graphics.Bitmap
import catdog.core.Cam
import catdog.core.Manifest
import catdog.core.topLabel
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel

/** Runs the TFLite artefact named in assets/manifest.json (signature "serving_default"). */
class Classifier(context: Context) {
    data class Result(val label: String, val probabilities: Map<String, Float>, val overlay: Bitmap)

    val manifest: Manifest = Manifest.parse(context.assets.open("manifest.json").bufferedReader().readText())
    private val interpreter: Interpreter

    init {
        manifest.problem()?.let { throw IllegalStateException("Cannot use this model: $it") }
        val fd = context.assets.openFd(manifest.tfliteFile()!!)
        val model = FileInputStream(fd.fileDescriptor).channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
        interpreter = Interpreter(model, Interpreter.Options().setNumThreads(2))
    }

    fun classify(photo: Bitmap): Result {
        val side = manifest.inputSize
        // squash the whole photo (no crop), raw RGB 0..255 as float: the model normalises itself
        val input = Bitmap.createScaledBitmap(photo, side, side, true)
        val pixels = IntArray(side * side).also { input.getPixels(it, 0, side, 0, 0, side, side) }
        val buffer = ByteBuffer.allocateDirect(4 * 3 * side * side).order(ByteOrder.nativeOrder())
        for (p in pixels) {
            buffer.putFloat(((p shr 16) and 0xFF).toFloat()); buffer.putFloat(((p shr 8) and 0xFF).toFloat()); buffer.putFloat((p and 0xFF).toFloat())
        }
        buffer.rewind()
        val probabilities = Array(1) { FloatArray(manifest.labels.size) }
        val g = manifest.camSide
        val cam = Array(1) { Array(g) { Array(g) { FloatArray(manifest.labels.size) } } }
        interpreter.runSignature(
            mapOf(manifest.inputName to buffer),
            mapOf(Manifest.PROBABILITIES to probabilities, Manifest.CAM to cam),
            "serving_default",
        )
        val (label, index, _) = topLabel(probabilities[0], manifest.labels)
        val flat = cam[0].flatMap { row -> row.flatMap { it.asList() } }.toFloatArray()
        return Result(label, manifest.labels.zip(probabilities[0].asList()).toMap(), overlay(photo, Cam.channel(flat, index, side = g, classes = manifest.labels.size), g))
    }

    private fun overlay(photo: Bitmap, map: FloatArray, side: Int, maxSide: Int = 640): Bitmap {
        val scale = minOf(1f, maxSide.toFloat() / maxOf(photo.width, photo.height))
        val shown = Bitmap.createScaledBitmap(photo, (photo.width * scale).toInt(), (photo.height * scale).toInt(), true)
        val w = shown.width; val h = shown.height
        val pixels = IntArray(w * h).also { shown.getPixels(it, 0, w, 0, 0, w, h) }
        return Bitmap.createBitmap(Cam.blend(pixels, w, h, map, side), w, h, Bitmap.Config.ARGB_8888)
    }
}
