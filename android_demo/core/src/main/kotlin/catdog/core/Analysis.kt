package catdog.core

/** What the app shows for one photo: label, text, probabilities in label order, and the CAM overlay. */
class Analysis(val label: String, val index: Int, val probabilities: FloatArray, val text: String, val overlay: RgbImage)

/** The model's two outputs for one photo: probabilities in label order and the flat `cam` buffer. */
class ModelOutput(val probabilities: FloatArray, val cam: FloatArray, val camStrides: IntArray? = null)

/**
 * One photo through the model, as `catdog cam` does it: squash the upright photo to the input size,
 * run [predict] on the model input (RGB 0..255 floats, NHWC), then label text and the overlay of the
 * predicted class's map on the photo shrunk to at most [maxSide] on its longer side.
 */
fun analyse(photo: RgbImage, manifest: Manifest, maxSide: Int = 640, predict: (FloatArray) -> ModelOutput): Analysis {
    val input = photo.squashed(manifest.inputSize).toFloatInput()
    val out = predict(input)
    require(out.probabilities.size == manifest.labels.size) { "model gave ${out.probabilities.size} probabilities for ${manifest.labels.size} labels" }
    val (label, index, _) = topLabel(out.probabilities, manifest.labels)
    val map = Cam.channel(out.cam, manifest.camShape, index, out.camStrides)
    val (w, h) = displaySize(photo.width, photo.height, maxSide)
    val shown = if (w == photo.width && h == photo.height) photo else photo.resized(w, h)
    return Analysis(label, index, out.probabilities, labelText(out.probabilities, manifest.labels), Cam.overlay(shown, map, manifest.camSide))
}
