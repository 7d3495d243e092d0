package catdog.core

import org.json.JSONArray
import org.json.JSONObject

/** The part of catdog's manifest.json the app relies on. The app never normalises pixels. */
data class Manifest(
    val version: Int,
    val labels: List<String>,
    val inputName: String,
    val inputShape: List<Int?>,
    val channelOrder: String,
    val valueRange: List<Double>,
    val outputs: Map<String, List<Int?>>,
    val artefacts: List<Artefact>,
    /** Under this `pet` output the verdict is "neither" ([verdict]). Required: null only in a manifest of an older catdog, which [problem] refuses. */
    val petThreshold: Double?,
) {
    data class Artefact(val file: String, val format: String, val precision: String, val sha256: String)

    val inputSize: Int get() = inputShape.getOrNull(1) ?: 0

    /** Side G of the square CAM maps, from the `cam` output shape [1, G, G, classes] (input size / 32). */
    val camSide: Int get() = outputs[CAM]?.getOrNull(1) ?: 0

    /** The `cam` output's shape with the batch set to 1: [1, G, G, classes]. */
    val camShape: IntArray get() = intArrayOf(1, camSide, camSide, labels.size)

    /** Why this app cannot use the model, or null when it can. */
    fun problem(): String? = when {
        version != SUPPORTED_VERSION -> "manifest version $version is not $SUPPORTED_VERSION; update the app"
        petThreshold == null -> NO_PET_THRESHOLD
        petThreshold !in 0.0..1.0 -> "pet_threshold $petThreshold is not within 0..1"
        labels.size != 2 -> "expected 2 labels, found ${labels.size}"
        inputShape.size != 4 || inputShape[3] != 3 || inputSize <= 0 || inputShape[1] != inputShape[2] ->
            "input shape $inputShape is not [1, N, N, 3]"
        channelOrder != "RGB" -> "channel order $channelOrder is not RGB"
        valueRange != listOf(0.0, 255.0) -> "input range $valueRange is not 0..255"
        PROBABILITIES !in outputs -> "output $PROBABILITIES missing"
        CAM !in outputs -> "output $CAM missing"
        PET !in outputs -> "output $PET missing"
        outputs[PET]?.let { it.size != 2 || it[1] != 1 } == true -> "pet shape ${outputs[PET]} is not [1, 1]"
        outputs[CAM]?.let { it.size != 4 || camSide <= 0 || it[2] != camSide || it[3] != labels.size } == true ->
            "cam shape ${outputs[CAM]} is not [1, G, G, ${labels.size}]"
        tfliteArtefact() == null -> "no TFLite artefact (fp32, fp16 or int8) listed"
        else -> null
    }

    /** The artefact of [format] to ship, by the first of [precisions] listed. */
    fun artefact(format: String, precisions: List<String>): Artefact? =
        precisions.firstNotNullOfOrNull { p -> artefacts.firstOrNull { it.format == format && it.precision == p } }

    /**
     * The TFLite artefact the app runs: fp32 (exact), else fp16, else int8.
     * `android_demo/scripts/add_model.sh` copies the same one.
     */
    fun tfliteArtefact(): Artefact? = artefact("tflite", listOf("fp32", "fp16", "int8"))

    companion object {
        const val SUPPORTED_VERSION = 1
        const val PROBABILITIES = "probabilities"
        const val CAM = "cam"
        const val PET = "pet"
        const val NO_PET_THRESHOLD =
            "manifest.json has no pet_threshold (an older catdog exported this model): export it again with this catdog version"

        /** Parses manifest.json; throws org.json.JSONException when a field the app reads is absent. */
        fun parse(json: String): Manifest {
            val m = JSONObject(json)
            fun dims(a: JSONArray) = (0 until a.length()).map { a.opt(it) as? Int }
            val input = m.getJSONObject("input")
            val outputs = m.getJSONArray("outputs")
            val artefacts = m.getJSONArray("artefacts")
            return Manifest(
                version = m.getInt("manifest_version"),
                labels = m.getJSONArray("labels").let { a -> (0 until a.length()).map { a.getString(it) } },
                inputName = input.getString("name"),
                inputShape = dims(input.getJSONArray("shape")),
                channelOrder = input.getString("channel_order"),
                valueRange = input.getJSONArray("value_range").let { a -> (0 until a.length()).map { a.getDouble(it) } },
                outputs = (0 until outputs.length()).associate {
                    outputs.getJSONObject(it).let { o -> o.getString("name") to dims(o.getJSONArray("shape")) }
                },
                artefacts = (0 until artefacts.length()).map { artefacts.getJSONObject(it) }.map {
                    Artefact(it.getString("file"), it.getString("format"), it.getString("precision"), it.optString("sha256"))
                },
                // a number only, as catdog.contract.pet_threshold reads it (getDouble would take "0.8" too)
                petThreshold = (m.opt("pet_threshold") as? Number)?.toDouble(),
            )
        }
    }
}
