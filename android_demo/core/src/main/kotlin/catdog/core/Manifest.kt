package catdog.core

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
    val tfliteFiles: Map<String, String>, // precision -> file
) {
    val inputSize: Int get() = inputShape.getOrNull(1) ?: 0

    /** Side G of the square CAM maps, from the `cam` output shape [1, G, G, classes] (input size / 32). */
    val camSide: Int get() = outputs[CAM]?.getOrNull(1) ?: 0

    /** Why this app cannot use the model, or null when it can. */
    fun problem(): String? = when {
        version != SUPPORTED_VERSION -> "manifest version $version is not $SUPPORTED_VERSION; update the app"
        labels.size != 2 -> "expected 2 labels, found ${labels.size}"
        inputShape.size != 4 || inputShape[3] != 3 || inputSize <= 0 || inputShape[1] != inputShape[2] ->
            "input shape $inputShape is not [1, N, N, 3]"
        channelOrder != "RGB" -> "channel order $channelOrder is not RGB"
        valueRange != listOf(0.0, 255.0) -> "input range $valueRange is not 0..255"
        PROBABILITIES !in outputs -> "output $PROBABILITIES missing"
        CAM !in outputs -> "output $CAM missing"
        outputs[CAM]?.let { it.size != 4 || camSide <= 0 || it[2] != camSide || it[3] != labels.size } == true ->
            "cam shape ${outputs[CAM]} is not [1, G, G, ${labels.size}]"
        tfliteFile() == null -> "no TFLite artefact listed"
        else -> null
    }

    /** fp32 first (exact), then fp16, then int8. */
    fun tfliteFile(): String? = listOf("fp32", "fp16", "int8").firstNotNullOfOrNull { tfliteFiles[it] }

    companion object {
        const val SUPPORTED_VERSION = 1
        const val PROBABILITIES = "probabilities"
        const val CAM = "cam"

        fun parse(json: String): Manifest {
            val m = JSONObject(json)
            fun dims(a: org.json.JSONArray) = (0 until a.length()).map { a.opt(it) as? Int }
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
                tfliteFiles = (0 until artefacts.length()).map { artefacts.getJSONObject(it) }
                    .filter { it.getString("format") == "tflite" }
                    .associate { it.getString("precision") to it.getString("file") },
            )
        }
    }
}
