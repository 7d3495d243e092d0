package catdog.core

/**
 * An RGB photo, 8 bits a channel, rows top to bottom without padding: pixel (x, y) starts at
 * `3 * (y * width + x)`. What catdog decodes a photo to (`catdog.data.open_rgb`).
 */
class RgbImage(val width: Int, val height: Int, val pixels: ByteArray) {
    init {
        require(width > 0 && height > 0 && pixels.size == 3 * width * height) {
            "RgbImage ${width}x$height needs ${3 * width * height} bytes, got ${pixels.size}"
        }
    }

    /** Channel [c] (0 r, 1 g, 2 b) of pixel (x, y), 0..255. */
    operator fun get(x: Int, y: Int, c: Int): Int = pixels[3 * (y * width + x) + c].toInt() and 0xFF

    /** The (r, g, b) of pixel (x, y). */
    fun rgb(x: Int, y: Int): List<Int> = listOf(get(x, y, 0), get(x, y, 1), get(x, y, 2))

    /** Opaque ARGB ints (Android's Bitmap.setPixels / createBitmap order). */
    fun toArgb(): IntArray = IntArray(width * height) { i ->
        val r = pixels[3 * i].toInt() and 0xFF
        val g = pixels[3 * i + 1].toInt() and 0xFF
        val b = pixels[3 * i + 2].toInt() and 0xFF
        (0xFF shl 24) or (r shl 16) or (g shl 8) or b
    }

    /** The model input: RGB 0..255 as floats, interleaved (NHWC), no normalisation (the model does it). */
    fun toFloatInput(): FloatArray = FloatArray(pixels.size) { (pixels[it].toInt() and 0xFF).toFloat() }

    /** The whole photo squashed to side x side (aspect ratio not kept, nothing cropped): the model input. */
    fun squashed(side: Int): RgbImage = resized(side, side)

    /**
     * Pillow's `Image.resize(size, Image.BILINEAR)` (antialiased), bit for bit, the passes in Pillow's
     * order: how catdog squashes a photo (`catdog.data.resize`), so the app feeds the model the
     * pixels catdog would.
     */
    fun resized(outWidth: Int, outHeight: Int): RgbImage {
        require(outWidth > 0 && outHeight > 0) { "cannot resize to ${outWidth}x$outHeight" }
        // Pillow 13 (Resample.c) runs the vertical pass first where the height shrinks by more than
        // twice what the width does: a portrait photo, squashed, rounds differently in that order
        val shrink = height - outHeight
        if (shrink > 0 && shrink > 2 * (width - outWidth)) return resizedVertically(outHeight).resizedHorizontally(outWidth)
        return resizedHorizontally(outWidth).resizedVertically(outHeight)
    }

    internal fun resizedHorizontally(outWidth: Int): RgbImage {
        if (outWidth == width) return this
        val co = Resample.coefficients(width, outWidth)
        val out = ByteArray(3 * outWidth * height)
        for (y in 0 until height) for (x in 0 until outWidth) {
            val lo = co.first[x]; val n = co.count[x]
            for (c in 0 until 3) {
                var sum = 1 shl (Resample.PRECISION_BITS - 1)
                for (j in 0 until n) sum += (pixels[3 * (y * width + lo + j) + c].toInt() and 0xFF) * co.weights[x * co.k + j]
                out[3 * (y * outWidth + x) + c] = Resample.clip8(sum).toByte()
            }
        }
        return RgbImage(outWidth, height, out)
    }

    internal fun resizedVertically(outHeight: Int): RgbImage {
        if (outHeight == height) return this
        val co = Resample.coefficients(height, outHeight)
        val out = ByteArray(3 * width * outHeight)
        for (y in 0 until outHeight) {
            val lo = co.first[y]; val n = co.count[y]
            for (x in 0 until width) for (c in 0 until 3) {
                var sum = 1 shl (Resample.PRECISION_BITS - 1)
                for (j in 0 until n) sum += (pixels[3 * ((lo + j) * width + x) + c].toInt() and 0xFF) * co.weights[y * co.k + j]
                out[3 * (y * width + x) + c] = Resample.clip8(sum).toByte()
            }
        }
        return RgbImage(width, outHeight, out)
    }

    /** The photo turned upright, as catdog's decoder does (`PIL.ImageOps.exif_transpose`). */
    fun upright(orientation: Orientation): RgbImage {
        if (orientation == Orientation.UP) return this
        val w = width; val h = height
        val ow = if (orientation.swapsSides) h else w
        val oh = if (orientation.swapsSides) w else h
        val out = ByteArray(pixels.size)
        for (y in 0 until oh) for (x in 0 until ow) {
            // the stored pixel that lands at (x, y) of the upright image
            val (sx, sy) = when (orientation) {
                Orientation.UP -> x to y
                Orientation.UP_MIRRORED -> (w - 1 - x) to y
                Orientation.DOWN -> (w - 1 - x) to (h - 1 - y)
                Orientation.DOWN_MIRRORED -> x to (h - 1 - y)
                Orientation.LEFT_MIRRORED -> y to x
                Orientation.RIGHT -> y to (h - 1 - x)
                Orientation.RIGHT_MIRRORED -> (w - 1 - y) to (h - 1 - x)
                Orientation.LEFT -> (w - 1 - y) to x
            }
            System.arraycopy(pixels, 3 * (sy * w + sx), out, 3 * (y * ow + x), 3)
        }
        return RgbImage(ow, oh, out)
    }

    override fun equals(other: Any?) =
        other is RgbImage && other.width == width && other.height == height && other.pixels.contentEquals(pixels)

    override fun hashCode() = 31 * (31 * width + height) + pixels.contentHashCode()

    companion object {
        /**
         * From ARGB ints with straight (not premultiplied) alpha, as Android's `Bitmap.getPixels`
         * returns them; alpha is composited over white as catdog does (Pillow's rounding).
         */
        fun fromArgb(argb: IntArray, width: Int, height: Int): RgbImage {
            require(argb.size == width * height) { "${argb.size} pixels for ${width}x$height" }
            return fromArgbRows(width, height) { y, row -> System.arraycopy(argb, y * width, row, 0, width) }
        }

        /**
         * As [fromArgb], one row at a time: [readRow] fills `row` (width ints) with row `y`, e.g.
         * `bitmap.getPixels(row, 0, width, 0, y, width, 1)`, so a 12 MP bitmap needs no second
         * 48 MB array of ints beside it.
         */
        fun fromArgbRows(width: Int, height: Int, readRow: (y: Int, row: IntArray) -> Unit): RgbImage {
            require(width > 0 && height > 0) { "cannot read a ${width}x$height image" }
            val out = ByteArray(3 * width * height)
            val row = IntArray(width)
            for (y in 0 until height) {
                readRow(y, row)
                for (x in 0 until width) {
                    val p = row[x]
                    val a = (p ushr 24) and 0xFF
                    val i = 3 * (y * width + x)
                    for (c in 0 until 3) {
                        val v = (p shr (16 - 8 * c)) and 0xFF
                        out[i + c] = div255(v * a + 255 * (255 - a)).toByte()
                    }
                }
            }
            return RgbImage(width, height, out)
        }

        /** round(v / 255) for 0 <= v <= 255 * 255, exactly as Pillow's DIV255. */
        internal fun div255(v: Int): Int {
            val t = v + 128
            return ((t shr 8) + t) shr 8
        }
    }
}

/** Pillow's Resample.c for the bilinear filter (support 1). */
internal object Resample {
    const val PRECISION_BITS = 32 - 8 - 2

    class Coefficients(val first: IntArray, val count: IntArray, val weights: IntArray, val k: Int)

    fun coefficients(inSize: Int, outSize: Int): Coefficients {
        val scale = inSize.toDouble() / outSize
        val filterScale = maxOf(scale, 1.0)
        val support = 1.0 * filterScale
        val k = Math.ceil(support).toInt() * 2 + 1
        val inverse = 1.0 / filterScale // Pillow multiplies by the reciprocal: same bits only so
        val first = IntArray(outSize); val count = IntArray(outSize); val weights = IntArray(outSize * k)
        for (xx in 0 until outSize) {
            val center = (xx + 0.5) * scale
            val lo = maxOf(0, (center - support + 0.5).toInt())
            val n = minOf(inSize, (center + support + 0.5).toInt()) - lo
            val w = DoubleArray(n) { j -> maxOf(0.0, 1.0 - Math.abs(((j + lo).toDouble() - center + 0.5) * inverse)) }
            var total = 0.0
            for (v in w) total += v
            for (j in 0 until n) {
                val scaled = (if (total != 0.0) w[j] / total else w[j]) * (1 shl PRECISION_BITS)
                weights[xx * k + j] = if (scaled < 0) (-0.5 + scaled).toInt() else (0.5 + scaled).toInt()
            }
            first[xx] = lo; count[xx] = n
        }
        return Coefficients(first, count, weights, k)
    }

    fun clip8(v: Int): Int = when {
        v >= (1 shl (PRECISION_BITS + 8)) -> 255
        v <= 0 -> 0
        else -> v shr PRECISION_BITS
    }
}

/**
 * The most pixels the apps decode a photo at (the iOS app's limit too): a 12 MP phone photo,
 * 4032 x 3024, is decoded whole, as catdog decodes it. Decoded at half size first (the 12 MP
 * limit this had), its squashed model input moved P(dog) by up to 1.9e-2 (`python -m
 * bench.decode`), far outside parity's fp32 tolerance of 1e-4 against catdog's own pixels.
 */
const val DECODE_MAX_PIXELS = 16_000_000

/**
 * The power of two to shrink a width x height photo by while decoding (Android's
 * `BitmapFactory.Options.inSampleSize`) so that it has at most [maxPixels] pixels.
 */
fun sampleSize(width: Int, height: Int, maxPixels: Int): Int {
    var n = 1
    while ((width / n).toLong() * (height / n) > maxPixels) n *= 2
    return n
}
