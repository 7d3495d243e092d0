package catdog.demo

import android.content.Context
import catdog.core.Analysis
import catdog.core.Manifest
import catdog.core.ModelOutput
import catdog.core.RgbImage
import catdog.core.analyse
import org.tensorflow.lite.Interpreter
import java.io.Closeable
import java.io.FileInputStream
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel

/**
 * Runs the TFLite artefact named in assets/manifest.json (signature "serving_default"). All the
 * maths is `catdog.core` (tested against catdog's golden file); this class only feeds LiteRT.
 * Not thread-safe: use it from one worker thread, and close it there.
 */
class Classifier(context: Context) : Closeable {
    class MissingModel(message: String) : Exception(message)

    val manifest: Manifest
    private val interpreter: Interpreter

    init {
        val assets = context.assets
        if ("manifest.json" !in (assets.list("") ?: emptyArray())) {
            throw MissingModel("No model in the app: run android_demo/scripts/add_model.sh ART_DIR, then build again.")
        }
        manifest = Manifest.parse(assets.open("manifest.json").bufferedReader().use { it.readText() })
        manifest.problem()?.let { throw IllegalStateException("Cannot use this model: $it") }
        val file = manifest.tfliteArtefact()!!.file
        val model = try {
            assets.openFd(file).use { fd ->
                FileInputStream(fd.fileDescriptor).channel.use { it.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength) }
            }
        } catch (e: IOException) {
            throw MissingModel("$file is not in the app's assets: run android_demo/scripts/add_model.sh ART_DIR, then build again.")
        }
        interpreter = Interpreter(model, Interpreter.Options().setNumThreads(2))
    }

    /** The upright photo through the model: its verdict, text and the image to show (the CAM overlay, or the plain photo for neither). */
    fun classify(photo: RgbImage): Analysis = analyse(photo, manifest) { input -> run(input) }

    private fun run(input: FloatArray): ModelOutput {
        fun floats(n: Int) = ByteBuffer.allocateDirect(4 * n).order(ByteOrder.nativeOrder())
        val image = floats(input.size).also { it.asFloatBuffer().put(input) }
        val probabilities = floats(manifest.labels.size)
        val cam = floats(manifest.camShape.fold(1) { a, b -> a * b })
        val pet = floats(1) // [1, 1]: the probability that the photo shows a cat or a dog at all
        interpreter.runSignature(
            mapOf(manifest.inputName to image),
            mapOf(Manifest.PROBABILITIES to probabilities, Manifest.CAM to cam, Manifest.PET to pet),
            "serving_default",
        )
        probabilities.rewind(); cam.rewind(); pet.rewind()
        return ModelOutput(
            FloatArray(manifest.labels.size).also { probabilities.asFloatBuffer().get(it) },
            pet.asFloatBuffer().get(0),
            FloatArray(cam.capacity() / 4).also { cam.asFloatBuffer().get(it) },
        )
    }

    override fun close() = interpreter.close()
}
