package catdog.core

/**
 * catdog's answer for a photo beyond cat or dog (`catdog.contract`): the model's `pet` output is the
 * probability that the photo shows a cat or a dog at all; under the manifest's `pet_threshold` the
 * verdict is "neither".
 */
object Verdict {
    /** The verdict where pet < the manifest's pet_threshold (`catdog.contract.NEITHER`). */
    const val NEITHER = "neither"

    /** What the app shows for it, with no percentages: cat and dog probabilities of a photo of neither mean nothing. */
    const val NEITHER_TEXT = "No cat or dog here"
}

/**
 * `catdog.contract.verdict`: [Verdict.NEITHER] where [pet] < [threshold], else the label of the first
 * largest probability (a tie goes to the first label). The comparison is in double, as Python's: the
 * Float pet widens exactly, and a threshold that is no Float is not rounded first.
 */
fun verdict(probabilities: FloatArray, pet: Float, threshold: Double, labels: List<String>): String =
    if (pet.toDouble() < threshold) Verdict.NEITHER else topLabel(probabilities, labels).first

/** What the app shows under the photo for a verdict: "No cat or dog here" for neither, else [labelText]. */
fun verdictText(verdict: String, probabilities: FloatArray, labels: List<String>): String =
    if (verdict == Verdict.NEITHER) Verdict.NEITHER_TEXT else labelText(probabilities, labels)
