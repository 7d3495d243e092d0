package catdog.demo

import android.content.ContentResolver
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.net.Uri
import androidx.exifinterface.media.ExifInterface
import catdog.core.DECODE_MAX_PIXELS
import catdog.core.Orientation
import catdog.core.RgbImage
import catdog.core.sampleSize
import java.io.IOException

/** Android bitmaps to and from `catdog.core.RgbImage` (all pixel work is in :core). */
object Photos {
    /** A picked photo, upright (its EXIF orientation applied, as catdog's decoder does), alpha over white. Works on API 24.
     *  A photo over DECODE_MAX_PIXELS (16 MP) is decoded shrunk by a power of two (inSampleSize). */
    fun decode(resolver: ContentResolver, uri: Uri): RgbImage {
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        resolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, bounds) }
        if (bounds.outWidth <= 0 || bounds.outHeight <= 0) throw IOException("not an image")
        val options = BitmapFactory.Options().apply {
            inSampleSize = sampleSize(bounds.outWidth, bounds.outHeight, DECODE_MAX_PIXELS)
            inPreferredConfig = Bitmap.Config.ARGB_8888
        }
        val bitmap = resolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, options) }
            ?: throw IOException("cannot decode it")
        val exif = resolver.openInputStream(uri)?.use {
            ExifInterface(it).getAttributeInt(ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL)
        } ?: ExifInterface.ORIENTATION_NORMAL
        val stored = fromBitmap(bitmap)
        bitmap.recycle()  // before upright() copies the pixels: at 16 MP the bitmap is 64 MB, each RgbImage 48 MB
        return stored.upright(Orientation.fromExif(exif))
    }

    /** A software ARGB_8888 bitmap's pixels (straight alpha, as getPixels returns them). */
    fun fromBitmap(bitmap: Bitmap): RgbImage {
        val software = if (bitmap.config == Bitmap.Config.ARGB_8888) bitmap else bitmap.copy(Bitmap.Config.ARGB_8888, false)
        val w = software.width; val h = software.height
        val image = RgbImage.fromArgbRows(w, h) { y, row -> software.getPixels(row, 0, w, 0, y, w, 1) }
        if (software !== bitmap) software.recycle()
        return image
    }

    fun toBitmap(image: RgbImage): Bitmap = Bitmap.createBitmap(image.toArgb(), image.width, image.height, Bitmap.Config.ARGB_8888)
}
