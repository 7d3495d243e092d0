package catdog.demo

import android.Manifest.permission.CAMERA
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.ImageDecoder
import android.os.Bundle
import android.view.View
import android.widget.Button
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.TextView
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.ImageCapture
import androidx.camera.core.ImageCaptureException
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import java.util.concurrent.Executors

class MainActivity : AppCompatActivity() {
    private var classifier: Classifier? = null
    private lateinit var preview: PreviewView
    private lateinit var image: ImageView
    private lateinit var text: TextView
    private val capture = ImageCapture.Builder().build()
    private val worker = Executors.newSingleThreadExecutor()

    private val pickPhoto = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        uri ?: return@registerForActivityResult
        val bitmap = ImageDecoder.decodeBitmap(ImageDecoder.createSource(contentResolver, uri)) { d, _, _ ->
            d.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
        }
        run(bitmap)
    }
    private val askCamera = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else text.text = "Camera permission denied: pick a photo instead."
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        preview = PreviewView(this)
        image = ImageView(this).apply { adjustViewBounds = true; visibility = View.GONE }
        text = TextView(this).apply { textSize = 20f; setPadding(24, 24, 24, 24) }
        val shoot = Button(this).apply { text = "Take photo"; setOnClickListener { takePhoto() } }
        val pick = Button(this).apply {
            text = "Pick photo"
            setOnClickListener { pickPhoto.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly)) }
        }
        setContentView(LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            addView(preview, LinearLayout.LayoutParams(LinearLayout.LayoutParams.MATCH_PARENT, 0, 1f))
            addView(image, LinearLayout.LayoutParams(LinearLayout.LayoutParams.MATCH_PARENT, 0, 1f))
            addView(text); addView(shoot); addView(pick)
        })
        classifier = try { Classifier(this) } catch (e: Exception) { text.text = e.message; null }
        if (classifier == null) { shoot.isEnabled = false; pick.isEnabled = false; return }
        if (ContextCompat.checkSelfPermission(this, CAMERA) == PackageManager.PERMISSION_GRANTED) startCamera() else askCamera.launch(CAMERA)
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            val provider = future.get()
            val previewUseCase = Preview.Builder().build().also { it.setSurfaceProvider(preview.surfaceProvider) }
            provider.unbindAll()
            provider.bindToLifecycle(this, androidx.camera.core.CameraSelector.DEFAULT_BACK_CAMERA, previewUseCase, capture)
        }, ContextCompat.getMainExecutor(this))
    }

    private fun takePhoto() {
        capture.takePicture(worker, object : ImageCapture.OnImageCapturedCallback() {
            override fun onCaptureSuccess(proxy: ImageProxy) {
                val rotation = proxy.imageInfo.rotationDegrees
                val bitmap = proxy.toBitmap().let { b ->
                    if (rotation == 0) b else Bitmap.createBitmap(b, 0, 0, b.width, b.height, android.graphics.Matrix().apply { postRotate(rotation.toFloat()) }, true)
                }
                proxy.close()
                runOnUiThread { run(bitmap) }
            }
            override fun onError(e: ImageCaptureException) { runOnUiThread { text.text = "Capture failed: ${e.message}" } }
        })
    }

    private fun run(photo: Bitmap) {
        val c = classifier ?: return
        worker.execute {
            val r = c.classify(photo)
            runOnUiThread {
                preview.visibility = View.GONE
                image.visibility = View.VISIBLE
                image.setImageBitmap(r.overlay)
                text.text = "It's a ${r.label}\n" + r.probabilities.entries.joinToString("   ") { (k, p) -> "$k %.1f %%".format(100 * p) }
            }
        }
    }
}
