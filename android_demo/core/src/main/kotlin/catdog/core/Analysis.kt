package catdog.core

/**
 * What the app shows for one photo: the [verdict] ("cat", "dog" or [Verdict.NEITHER]), the model's
 * [pet], the top label (the first largest probability, whatever the verdict) and its index, the
 * probabilities in label order, the [text] under the photo, and the image to show: the CAM [overlay]
 * for a cat or dog verdict, the plain photo (at the same display size) for neither, whose CAM is no
 * evidence for either class.
 */
class Analysis(
    val verdict: String,
    val pet: Float,
    val label: String,
    val index: Int,
    val probabilities: FloatArray,
    val text: String,
    val overlay: RgbImage,
)

/**
 * The model's three outputs for one photo: probabilities in label order, [pet] (the probability that
 * the photo shows a cat or a dog at all), and the flat `cam` buffer.
 */
class ModelOutput(val probabilities: FloatArray, val pet: Float, val cam: FloatArray, val camStrides: IntArray? = null)

/**
 * One photo through the model, as `catdog cam` does it: squash the upright photo to the input size,
 * run [predict] on the model input (RGB 0..255 floats, NHWC), then the verdict, its text, and the
 * photo shrunk to at most [maxSide] on its longer side, with the top label's CAM blended in unless
 * the verdict is neither.
 */
fun analyse(photo: RgbImage, manifest: Manifest, maxSide: Int = 640, predict: (FloatArray) -> ModelOutput): Analysis {
    val threshold = checkNotNull(manifest.petThreshold) { Manifest.NO_PET_THRESHOLD }
    val input = photo.squashed(manifest.inputSize).toFloatInput()
    val out = predict(input)
    require(out.probabilities.size == manifest.labels.size) { "model gave ${out.probabilities.size} probabilities for ${manifest.labels.size} labels" }
    val (label, index, _) = topLabel(out.probabilities, manifest.labels)
    val map = Cam.channel(out.cam, manifest.camShape, index, out.camStrides)
    val said = verdict(out.probabilities, out.pet, threshold, manifest.labels)
    val (w, h) = displaySize(photo.width, photo.height, maxSide)
    val shown = if (w == photo.width && h == photo.height) photo else photo.resized(w, h)
    return Analysis(
        said, out.pet, label, index, out.probabilities, verdictText(said, out.probabilities, manifest.labels),
        if (said == Verdict.NEITHER) shown else Cam.overlay(shown, map, manifest.camSide),
    )
}
