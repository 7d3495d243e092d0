package catdog.core

/**
 * EXIF orientation (TIFF tag 274): how the stored pixels must be turned to stand upright. [exif] is
 * the EXIF number, which is also `androidx.exifinterface.media.ExifInterface.ORIENTATION_*`.
 */
enum class Orientation(val exif: Int) {
    UP(1), UP_MIRRORED(2), DOWN(3), DOWN_MIRRORED(4), LEFT_MIRRORED(5), RIGHT(6), RIGHT_MIRRORED(7), LEFT(8);

    /** Whether upright width and height are the stored height and width. */
    val swapsSides: Boolean get() = exif >= 5

    companion object {
        /** From an EXIF value; anything outside 1..8 counts as UP, as Pillow treats it. */
        fun fromExif(value: Int): Orientation = entries.firstOrNull { it.exif == value } ?: UP

        /** A camera frame that must be turned [degrees] clockwise to stand upright (CameraX's `rotationDegrees`). */
        fun fromClockwiseDegrees(degrees: Int): Orientation = when (((degrees % 360) + 360) % 360) {
            90 -> RIGHT
            180 -> DOWN
            270 -> LEFT
            else -> UP
        }
    }
}
