package catdog.core

import org.json.JSONArray
import org.json.JSONObject
import java.io.File
import java.util.Base64

/**
 * tests/golden/apps.json: inputs from the real shipped model and the outputs catdog's Python code
 * computes from them (made by `make golden`, checked by tests/test_golden.py). Found at the system
 * property `catdog.golden`, $CATDOG_GOLDEN, or in a parent folder of the working directory.
 */
object Golden {
    val file: File by lazy {
        (System.getProperty("catdog.golden") ?: System.getenv("CATDOG_GOLDEN"))?.let { return@lazy File(it) }
        generateSequence(File(System.getProperty("user.dir")).absoluteFile) { it.parentFile }
            .map { File(it, "tests/golden/apps.json") }.firstOrNull { it.isFile }
            ?: error("tests/golden/apps.json not found above ${System.getProperty("user.dir")}; set -Dcatdog.golden=PATH")
    }
    val json: JSONObject by lazy { JSONObject(file.readText()) }
    val manifestJson: String get() = json.getJSONObject("manifest").toString()
    val photos: List<JSONObject> get() = json.getJSONArray("photos").objects()

    fun bytes(base64: String): ByteArray = Base64.getDecoder().decode(base64)
}

fun JSONArray.objects(): List<JSONObject> = (0 until length()).map { getJSONObject(it) }
fun JSONArray.floats(): FloatArray = FloatArray(length()) { getDouble(it).toFloat() }
fun JSONArray.ints(): List<Int> = (0 until length()).map { getInt(it) }

/** Largest |a - b| over two lists of one length. */
fun maxDifference(a: List<Int>, b: List<Int>): Int {
    require(a.size == b.size)
    return a.zip(b).maxOfOrNull { (x, y) -> Math.abs(x - y) } ?: 0
}
