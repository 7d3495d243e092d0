package catdog.core

import kotlin.math.abs
import kotlin.math.floor
import kotlin.math.round

/**
 * CAM maths as `catdog cam` does it (`catdog.cam.overlay`): the predicted class's G x G map,
 * min-max, bilinear upsampling, jet, 45 % blend. G comes from the manifest (`Manifest.camSide`):
 * 7 for a 224 model, 9 for 288.
 */
object Cam {
    const val ALPHA = 0.45f

    /**
     * One class's G x G map (row-major) out of the `cam` output, read by its [shape] [1, G, G, C]
     * and element [strides] (default: contiguous NHWC, as TFLite writes it).
     */
    fun channel(values: FloatArray, shape: IntArray, index: Int, strides: IntArray? = null): FloatArray {
        require(shape.size == 4 && shape[0] == 1 && shape[1] > 0 && shape[1] == shape[2] && index in 0 until shape[3]) {
            "cam shape ${shape.toList()} is not [1, G, G, C] with class $index < C"
        }
        val g = shape[1]; val c = shape[3]
        val st = strides ?: intArrayOf(g * g * c, g * c, c, 1)
        require(st.size == 4) { "cam strides ${st.toList()} are not 4 numbers" }
        val last = (g - 1) * st[1] + (g - 1) * st[2] + index * st[3]
        require(last < values.size) { "cam has ${values.size} values, too few for shape ${shape.toList()} strides ${st.toList()}" }
        return FloatArray(g * g) { values[(it / g) * st[1] + (it % g) * st[2] + index * st[3]] }
    }

    /** Min-max scale to 0..1; a constant map becomes all zeros. The range is compared in Double, as catdog.cam.normalise does: in Float, 1e-12 rounds to the float spread of [0, 1e-12] itself. */
    fun normalise(map: FloatArray): FloatArray {
        val lo = map.minOrNull() ?: return map
        val hi = map.maxOrNull() ?: return map
        return if (hi.toDouble() - lo.toDouble() < 1e-12) FloatArray(map.size) else FloatArray(map.size) { (map[it] - lo) / (hi - lo) }
    }

    /** Bilinear upsampling of a side x side map to width x height (pixel centres aligned, edges clamped: OpenCV's INTER_LINEAR). */
    fun upsample(map: FloatArray, side: Int, width: Int, height: Int): FloatArray {
        require(map.size == side * side) { "map has ${map.size} values, not $side x $side" }
        // OpenCV's scale: the reciprocal of the output/input ratio, in double
        val sx = 1.0 / (width.toDouble() / side)
        val sy = 1.0 / (height.toDouble() / side)
        val xs = Array(width) { axis(((it + 0.5) * sx - 0.5).toFloat(), side) }
        val out = FloatArray(width * height)
        for (y in 0 until height) {
            val (y0, y1, wy) = axis(((y + 0.5) * sy - 0.5).toFloat(), side)
            for (x in 0 until width) {
                val (x0, x1, wx) = xs[x]
                val top = map[y0 * side + x0] * (1 - wx) + map[y0 * side + x1] * wx
                val bottom = map[y1 * side + x0] * (1 - wx) + map[y1 * side + x1] * wx
                out[y * width + x] = top * (1 - wy) + bottom * wy
            }
        }
        return out
    }

    /** Source indices and weight of one output coordinate (OpenCV: floor, clamp at both edges). */
    private fun axis(f: Float, side: Int): Triple<Int, Int, Float> {
        var i = floor(f).toInt()
        var w = f - i
        if (i < 0) { i = 0; w = 0f }
        if (i >= side - 1) { i = side - 1; w = 0f }
        return Triple(i, minOf(i + 1, side - 1), w)
    }

    /**
     * Jet colour of a 0..1 value as 0xRRGGBB (blue = low, red = high). The value is first rounded to
     * one of 256 levels, as catdog does before OpenCV's COLORMAP_JET lookup; the formula matches that
     * table to within 1 of 255.
     */
    fun jet(v: Float): Int {
        val t = round(v.coerceIn(0f, 1f) * 255f) / 255f
        fun c(x: Float) = round(x.coerceIn(0f, 1f) * 255f).toInt()
        return (c(1.5f - abs(4 * t - 3)) shl 16) or (c(1.5f - abs(4 * t - 2)) shl 8) or c(1.5f - abs(4 * t - 1))
    }

    /** The photo with the jet heatmap of a side x side map blended over it: (1 - alpha) photo + alpha jet, rounded. */
    fun overlay(photo: RgbImage, map: FloatArray, side: Int, alpha: Float = ALPHA): RgbImage {
        val heat = upsample(normalise(map), side, photo.width, photo.height)
        val out = photo.pixels.copyOf()
        for (i in heat.indices) {
            val colour = jet(heat[i])
            for (k in 0 until 3) {
                val h = (colour shr (16 - 8 * k)) and 0xFF
                val blended = (1 - alpha) * (out[3 * i + k].toInt() and 0xFF) + alpha * h
                out[3 * i + k] = round(blended).toInt().coerceIn(0, 255).toByte()
            }
        }
        return RgbImage(photo.width, photo.height, out)
    }
}

/**
 * Size of the overlay shown for a width x height photo: shrunk to fit maxSide x maxSide, aspect ratio
 * kept, never enlarged (Pillow's `thumbnail` sizing, as `catdog cam` shrinks photos).
 */
fun displaySize(width: Int, height: Int, maxSide: Int = 640): Pair<Int, Int> {
    if (maxSide >= width && maxSide >= height) return width to height
    val aspect = width.toDouble() / height
    val side = maxSide.toDouble()
    // of floor and ceil, the one whose aspect ratio is closer (floor on a tie), at least 1
    fun closer(v: Double, error: (Int) -> Double): Int {
        val lo = floor(v).toInt(); val hi = Math.ceil(v).toInt()
        return maxOf(if (error(hi) < error(lo)) hi else lo, 1)
    }
    return if (1 >= aspect) closer(side * aspect) { abs(aspect - it / side) } to maxSide
    else maxSide to closer(side / aspect) { if (it == 0) 0.0 else abs(aspect - side / it) }
}
