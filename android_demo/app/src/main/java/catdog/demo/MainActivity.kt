package catdog.demo

import android.Manifest.permission.CAMERA
import android.content.pm.PackageManager
import android.os.Bundle
import android.view.View
import android.widget.Button
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.TextView
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageCapture
import androidx.camera.core.ImageCaptureException
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import catdog.core.Orientation
import catdog.core.RgbImage
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Camera preview and capture, or a picked photo; the result (the analysis text, and the overlay or,
 * for a "No cat or dog here" verdict, the plain photo) replaces the preview until "Camera" brings it
 * back. Decoding, the model and the overlay run on one worker thread; the main thread only shows
 * results. Every failure is a message on screen.
 */
class MainActivity : AppCompatActivity() {
    @Volatile private var classifier: Classifier? = null // set on the main thread, used on the worker
    private lateinit var preview: PreviewView
    private lateinit var image: ImageView
    private lateinit var text: TextView
    private lateinit var shoot: Button
    private lateinit var pick: Button
    private val capture = ImageCapture.Builder().build()
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    private var cameraReady = false

    private val pickPhoto = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        if (uri != null) classify("that photo") { Photos.decode(contentResolver, uri) }
    }
    private val askCamera = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else text.text = "Camera permission denied: pick a photo instead."
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        preview = PreviewView(this)
        image = ImageView(this).apply { adjustViewBounds = true; visibility = View.GONE }
        text = TextView(this).apply { textSize = 20f; setPadding(24, 24, 24, 24); text = "Loading the model…" }
        shoot = Button(this).apply { text = "Take photo"; isEnabled = false; setOnClickListener { onShoot() } }
        pick = Button(this).apply {
            text = "Pick photo"; isEnabled = false
            setOnClickListener { pickPhoto.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly)) }
        }
        setContentView(LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            addView(preview, LinearLayout.LayoutParams(LinearLayout.LayoutParams.MATCH_PARENT, 0, 1f))
            addView(image, LinearLayout.LayoutParams(LinearLayout.LayoutParams.MATCH_PARENT, 0, 1f))
            addView(text); addView(shoot); addView(pick)
        })
        worker.execute {
            val loaded = try { Classifier(this) } catch (e: Exception) { runOnUiThread { text.text = e.message ?: e.toString() }; null }
            runOnUiThread {
                if (isDestroyed) { loaded?.close(); return@runOnUiThread }
                classifier = loaded
                if (loaded == null) return@runOnUiThread
                text.text = "Take or pick a photo of a cat or a dog."
                pick.isEnabled = true
                if (ContextCompat.checkSelfPermission(this, CAMERA) == PackageManager.PERMISSION_GRANTED) startCamera() else askCamera.launch(CAMERA)
            }
        }
    }

    override fun onDestroy() {
        super.onDestroy()
        val c = classifier
        classifier = null
        worker.execute { c?.close() } // after any classification still queued
        worker.shutdown()
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            try {
                val provider = future.get()
                val previewUseCase = Preview.Builder().build().also { it.setSurfaceProvider(preview.surfaceProvider) }
                provider.unbindAll()
                provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, previewUseCase, capture)
                cameraReady = true
                shoot.isEnabled = true
            } catch (e: Exception) {
                text.text = "Camera unavailable (${e.message}): pick a photo instead."
            }
        }, ContextCompat.getMainExecutor(this))
    }

    /** "Take photo" while the preview shows; after a result, "Camera" shows the preview again. */
    private fun onShoot() {
        if (preview.visibility != View.VISIBLE) {
            showPreview(true)
            return
        }
        shoot.isEnabled = false
        capture.takePicture(worker, object : ImageCapture.OnImageCapturedCallback() {
            override fun onCaptureSuccess(proxy: ImageProxy) {
                // already on the worker thread
                val photo = try {
                    Photos.fromBitmap(proxy.toBitmap()).upright(Orientation.fromClockwiseDegrees(proxy.imageInfo.rotationDegrees))
                } catch (e: Exception) {
                    runOnUiThread { text.text = "Cannot read the photo: ${e.message}"; shoot.isEnabled = true }
                    null
                } finally {
                    proxy.close()
                }
                if (photo != null) classifyOnWorker("the photo", photo)
            }

            override fun onError(e: ImageCaptureException) {
                runOnUiThread { text.text = "Capture failed: ${e.message}"; shoot.isEnabled = true }
            }
        })
    }

    private fun showPreview(live: Boolean) {
        preview.visibility = if (live) View.VISIBLE else View.GONE
        image.visibility = if (live) View.GONE else View.VISIBLE
        shoot.text = if (live) "Take photo" else "Camera"
        shoot.isEnabled = cameraReady
    }

    /** Decode on the worker thread, then classify there. */
    private fun classify(what: String, decode: () -> RgbImage) {
        text.text = "Looking…"
        worker.execute {
            val photo = try { decode() } catch (e: Exception) {
                runOnUiThread { text.text = "Cannot read $what: ${e.message}" }
                return@execute
            }
            classifyOnWorker(what, photo)
        }
    }

    private fun classifyOnWorker(what: String, photo: RgbImage) {
        val c = classifier ?: return
        try {
            val analysis = c.classify(photo)
            val overlay = Photos.toBitmap(analysis.overlay)
            runOnUiThread {
                image.setImageBitmap(overlay)
                text.text = analysis.text
                showPreview(false)
            }
        } catch (e: Exception) {
            runOnUiThread { text.text = "Cannot classify $what: ${e.message ?: e}"; shoot.isEnabled = cameraReady }
        }
    }
}
