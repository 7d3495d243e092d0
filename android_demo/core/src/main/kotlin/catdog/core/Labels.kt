package catdog.core

import java.math.BigDecimal
import java.math.RoundingMode

/** The predicted label, its index and probability: the first largest probability (a tie goes to the first label). */
fun topLabel(probabilities: FloatArray, labels: List<String>): Triple<String, Int, Float> {
    var i = 0
    for (j in probabilities.indices) if (probabilities[j] > probabilities[i]) i = j
    return Triple(labels[i], i, probabilities[i])
}

/**
 * "99.6 %": 100 * p in double, one decimal, rounded correctly (half to even on an exact tie), as
 * `catdog.cam.label_text` and C's printf do. (String.format would round the shortest decimal half up:
 * 6.25 -> "6.3" where catdog says "6.2".)
 */
fun percentText(p: Float): String {
    val percent = 100.0 * p.toDouble()
    // BigDecimal throws on NaN and infinity; Python's "%.1f" and Swift's String(format:) say "nan", "inf"
    if (!percent.isFinite()) return (if (percent.isNaN()) "nan" else if (percent > 0) "inf" else "-inf") + " %"
    return BigDecimal(percent).setScale(1, RoundingMode.HALF_EVEN).toPlainString() + " %"
}

/** What the app shows under the photo, `catdog.cam.label_text`: "It's a cat\ncat 99.6 %   dog 0.4 %". */
fun labelText(probabilities: FloatArray, labels: List<String>): String =
    "It's a ${topLabel(probabilities, labels).first}\n" +
        labels.indices.joinToString("   ") { "${labels[it]} ${percentText(probabilities[it])}" }
