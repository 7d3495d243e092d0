package catdog.core

import kotlin.math.abs
import kotlin.math.roundToInt

/** CAM maths as `catdog cam` does it: predicted class's G x G map, min-max, bilinear, jet, 45 % blend.
 * G (`side`) comes from the manifest (`Manifest.camSide`): 7 for a 224 model, 9 for 288. */
object Cam {
    const val ALPHA = 0.45f

    /** One class's map from the flat `cam` output [1, side, side, C] (NHWC), row-major. */
    fun channel(cam: FloatArray, index: Int, side: Int, classes: Int = 2): FloatArray {
        require(cam.size == side * side * classes) { "cam has ${cam.size} values, expected ${side * side * classes}" }
        return FloatArray(side * side) { cam[it * classes + index] }
    }

    fun normalise(map: FloatArray): FloatArray {
        val lo = map.minOrNull() ?: return map
        val hi = map.maxOrNull() ?: return map
        return if (hi - lo < 1e-12f) FloatArray(map.size) else FloatArray(map.size) { (map[it] - lo) / (hi - lo) }
    }

    /** Bilinear upsampling, pixel centres aligned (as OpenCV's resize). */
    fun upsample(map: FloatArray, width: Int, height: Int, side: Int): FloatArray {
        val out = FloatArray(width * height)
        val sx = side.toFloat() / width
        val sy = side.toFloat() / height
        for (y in 0 until height) {
            val fy = ((y + 0.5f) * sy - 0.5f).coerceIn(0f, (side - 1).toFloat())
            val y0 = fy.toInt(); val y1 = minOf(y0 + 1, side - 1); val wy = fy - y0
            for (x in 0 until width) {
                val fx = ((x + 0.5f) * sx - 0.5f).coerceIn(0f, (side - 1).toFloat())
                val x0 = fx.toInt(); val x1 = minOf(x0 + 1, side - 1); val wx = fx - x0
                val top = map[y0 * side + x0] * (1 - wx) + map[y0 * side + x1] * wx
                val bottom = map[y1 * side + x0] * (1 - wx) + map[y1 * side + x1] * wx
                out[y * width + x] = top * (1 - wy) + bottom * wy
            }
        }
        return out
    }

    /** Jet colour of a 0..1 value as 0xRRGGBB (blue = low, red = high). */
    fun jet(v: Float): Int {
        val t = v.coerceIn(0f, 1f)
        fun c(x: Float) = (x.coerceIn(0f, 1f) * 255).roundToInt()
        return (c(1.5f - abs(4 * t - 3)) shl 16) or (c(1.5f - abs(4 * t - 2)) shl 8) or c(1.5f - abs(4 * t - 1))
    }

    /** Blend the heatmap over ARGB pixels (Android Bitmap order), returning new pixels. */
    fun blend(argb: IntArray, width: Int, height: Int, map: FloatArray, side: Int): IntArray {
        val heat = upsample(normalise(map), width, height, side)
        return IntArray(argb.size) { i ->
            val p = argb[i]
            val h = jet(heat[i])
            fun mix(shift: Int) = ((1 - ALPHA) * ((p shr shift) and 0xFF) + ALPHA * ((h shr shift) and 0xFF)).roundToInt()
            (0xFF shl 24) or (mix(16) shl 16) or (mix(8) shl 8) or mix(0)
        }
    }
}

/** The predicted label, its index and probability, from probabilities in manifest label order. */
fun topLabel(probabilities: FloatArray, labels: List<String>): Triple<String, Int, Float> {
    val i = probabilities.indices.maxByOrNull { probabilities[it] } ?: 0
    return Triple(labels[i], i, probabilities[i])
}
