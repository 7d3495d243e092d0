package catdog.core

import org.json.JSONArray
import org.json.JSONObject
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test
import kotlin.math.nextDown

/** :core against tests/golden/apps.json: the real shipped model's manifest, probabilities and CAM maps, and what catdog's Python code computes from them. */
class CoreTest {
    private val manifest = Manifest.parse(Golden.manifestJson)

    private fun edited(edit: (JSONObject) -> Unit): Manifest =
        Manifest.parse(JSONObject(Golden.manifestJson).also(edit).toString())

    private fun map(photo: JSONObject): FloatArray =
        Cam.channel(photo.getJSONArray("cam").floats(), manifest.camShape, photo.getInt("index"))

    /** An image of the display size, black but for the golden sample pixels. */
    private fun sampled(photo: JSONObject): RgbImage {
        val w = photo.getJSONObject("display").getInt("width"); val h = photo.getJSONObject("display").getInt("height")
        val pixels = ByteArray(3 * w * h)
        for (s in photo.getJSONArray("samples").objects()) {
            val rgb = s.getJSONArray("photo").ints()
            for (k in 0 until 3) pixels[3 * (s.getInt("y") * w + s.getInt("x")) + k] = rgb[k].toByte()
        }
        return RgbImage(w, h, pixels)
    }

    @Test fun theShippedManifestIsUnderstood() {
        assertEquals(2, Golden.json.getInt("golden_version"))
        assertNull(manifest.problem())
        assertEquals(listOf("cat", "dog"), manifest.labels)
        assertTrue(manifest.petThreshold!! in 0.0..1.0)
        assertTrue(manifest.inputSize > 0)
        assertEquals(manifest.camSide * 32, manifest.inputSize)
        assertEquals(manifest.camSide * manifest.camSide * 2, Golden.photos[0].getJSONArray("cam").length())
    }

    @Test fun manifestsTheAppCannotUseAreRefused() {
        assertEquals("channel order BGR is not RGB", edited { it.getJSONObject("input").put("channel_order", "BGR") }.problem())
        assertEquals("manifest version 2 is not 1; update the app", edited { it.put("manifest_version", 2) }.problem())
        val skewed = edited {
            it.put("outputs", JSONArray("""[{"name": "probabilities", "shape": [1, 2]}, {"name": "cam", "shape": [1, 9, 7, 2]}, {"name": "pet", "shape": [1, 1]}]"""))
        }
        assertEquals("cam shape [1, 9, 7, 2] is not [1, G, G, 2]", skewed.problem())
        val noCam = edited { it.put("outputs", JSONArray("""[{"name": "probabilities", "shape": [1, 2]}, {"name": "pet", "shape": [1, 1]}]""")) }
        assertEquals("output cam missing", noCam.problem())
        // a model of an older catdog: no pet output, no pet_threshold
        val noPet = edited { m -> m.put("outputs", JSONArray(m.getJSONArray("outputs").objects().filter { it.getString("name") != "pet" })) }
        assertEquals("output pet missing", noPet.problem())
        val widePet = edited { m ->
            m.put("outputs", JSONArray(m.getJSONArray("outputs").objects().map { if (it.getString("name") == "pet") JSONObject("""{"name": "pet", "shape": [1, 2]}""") else it }))
        }
        assertEquals("pet shape [1, 2] is not [1, 1]", widePet.problem())
        val noThreshold = edited { it.remove("pet_threshold") }
        assertNull(noThreshold.petThreshold)
        assertEquals(Manifest.NO_PET_THRESHOLD, noThreshold.problem())
        assertTrue(Manifest.NO_PET_THRESHOLD.contains("export it again with this catdog version"))
        val thrown = assertThrows(IllegalStateException::class.java) { analyse(sampled(Golden.photos[2]), noThreshold) { error("no model run without a threshold") } }
        assertEquals(Manifest.NO_PET_THRESHOLD, thrown.message)
        assertEquals("pet_threshold 1.5 is not within 0..1", edited { it.put("pet_threshold", 1.5) }.problem())
        assertEquals(Manifest.NO_PET_THRESHOLD, edited { it.put("pet_threshold", "0.8") }.problem())  // a string is no threshold (catdog's reading)
        assertEquals(Manifest.NO_PET_THRESHOLD, edited { it.put("pet_threshold", true) }.problem())
        val coreMLOnly = edited { m -> m.put("artefacts", JSONArray(m.getJSONArray("artefacts").objects().filter { it.getString("format") == "coreml" })) }
        assertEquals("no TFLite artefact (fp32, fp16 or int8) listed", coreMLOnly.problem())
        assertNull("a named batch dimension is fine", edited { it.getJSONObject("input").put("shape", JSONArray("""["batch", 288, 288, 3]""")) }.problem())
    }

    @Test fun theArtefactIsChosenAmongPrecisions() {
        val choice = Golden.json.getJSONObject("choice")
        assertEquals(choice.getString("tflite"), manifest.tfliteArtefact()?.file)
        assertEquals("fp32", manifest.tfliteArtefact()?.precision)
        val noFp32 = edited { m -> m.put("artefacts", JSONArray(m.getJSONArray("artefacts").objects().filter { it.getString("precision") != "fp32" })) }
        assertEquals("fp16", noFp32.tfliteArtefact()?.precision)
        val int8Only = edited { m -> m.put("artefacts", JSONArray(m.getJSONArray("artefacts").objects().filter { it.getString("precision") == "int8" })) }
        assertEquals("int8", int8Only.tfliteArtefact()?.precision)
        assertEquals(choice.getString("coreml"), manifest.artefact("coreml", listOf("fp16", "fp32", "int8"))?.file)
    }

    @Test fun camIsReadByShapeAndStrides() {
        val g = manifest.camSide; val c = manifest.labels.size
        for (photo in Golden.photos) {
            val cam = photo.getJSONArray("cam").floats(); val index = photo.getInt("index")
            val m = map(photo)
            assertEquals(g * g, m.size)
            assertEquals(cam[(g + 2) * c + index], m[g + 2]) // row 1, column 2
            val strides = intArrayOf(g * 16 * 4, 16 * 4, 4, 1) // rows of 16 elements, channels 4 apart
            val padded = FloatArray(g * 16 * 4) { Float.NaN }
            for (i in 0 until g) for (j in 0 until g) for (k in 0 until c) padded[i * strides[1] + j * strides[2] + k] = cam[(i * g + j) * c + k]
            assertArrayEquals(m, Cam.channel(padded, manifest.camShape, index, strides), 0f)
        }
        val cam = Golden.photos[0].getJSONArray("cam").floats()
        assertThrows(IllegalArgumentException::class.java) { Cam.channel(cam, intArrayOf(1, g, g + 1, c), 0) }
        assertThrows(IllegalArgumentException::class.java) { Cam.channel(cam, manifest.camShape, c) }
        assertThrows(IllegalArgumentException::class.java) { Cam.channel(cam.copyOf(cam.size - 1), manifest.camShape, 1) }
    }

    @Test fun upsampledMapsAreOpenCVs() {
        for (photo in Golden.photos) {
            val w = photo.getJSONObject("display").getInt("width"); val h = photo.getJSONObject("display").getInt("height")
            val heat = Cam.upsample(Cam.normalise(map(photo)), manifest.camSide, w, h)
            for (s in photo.getJSONArray("samples").objects()) {
                assertEquals("${photo.getString("name")} at (${s.getInt("x")}, ${s.getInt("y")})",
                    s.getDouble("heat"), heat[s.getInt("y") * w + s.getInt("x")].toDouble(), 1e-5)
            }
        }
        assertArrayEquals(FloatArray(4), Cam.normalise(floatArrayOf(3f, 3f, 3f, 3f)), 0f)
        // catdog.cam.normalise compares the range in double: a spread of 1e-12f is constant there
        assertArrayEquals(FloatArray(2), Cam.normalise(floatArrayOf(0f, 1e-12f)), 0f)
        assertArrayEquals(floatArrayOf(0f, 1f), Cam.normalise(floatArrayOf(0f, 2e-12f)), 0f)
    }

    @Test fun jetColoursAreCatdogs() {
        for (s in Golden.photos.flatMap { it.getJSONArray("samples").objects() }) {
            val colour = Cam.jet(s.getDouble("heat").toFloat())
            val got = listOf((colour shr 16) and 0xFF, (colour shr 8) and 0xFF, colour and 0xFF)
            assertTrue("jet(${s.getDouble("heat")}) = $got", maxDifference(got, s.getJSONArray("jet").ints()) <= 1)
        }
        assertEquals(0x000080, Cam.jet(0f))
        assertEquals(0x800000, Cam.jet(1f))
    }

    @Test fun overlayColoursAreCatdogCams() {
        var worst = 0
        for (photo in Golden.photos) {
            val out = Cam.overlay(sampled(photo), map(photo), manifest.camSide, Golden.json.getDouble("alpha").toFloat())
            for (s in photo.getJSONArray("samples").objects()) {
                worst = maxOf(worst, maxDifference(out.rgb(s.getInt("x"), s.getInt("y")), s.getJSONArray("overlay").ints()))
            }
        }
        println("overlay colours: largest difference from catdog $worst of 255")
        assertTrue("overlay colours differ by $worst of 255", worst <= 1)
    }

    @Test fun labelTextsAreCatdogs() {
        for (photo in Golden.photos) {
            val p = photo.getJSONArray("probabilities").floats()
            assertEquals(photo.getString("label_text"), labelText(p, manifest.labels))
            assertEquals(photo.getString("label"), topLabel(p, manifest.labels).first)
        }
        for (case in Golden.json.getJSONArray("label_text_cases").objects()) {
            assertEquals(case.getString("text"), labelText(case.getJSONArray("probabilities").floats(), manifest.labels))
        }
    }

    @Test fun nonFiniteProbabilitiesAreWrittenAsPythonWritesThem() {
        // f"{100.0 * p:.1f} %" in catdog.cam.label_text; BigDecimal alone threw on them
        assertEquals("nan %", percentText(Float.NaN))
        assertEquals("inf %", percentText(Float.POSITIVE_INFINITY))
        assertEquals("-inf %", percentText(Float.NEGATIVE_INFINITY))
        assertEquals("It's a cat\ncat nan %   dog 50.0 %", labelText(floatArrayOf(Float.NaN, 0.5f), listOf("cat", "dog")))
    }

    @Test fun verdictsAreCatdogs() {
        val threshold = manifest.petThreshold!!
        for (photo in Golden.photos) {
            val p = photo.getJSONArray("probabilities").floats()
            val name = photo.getString("name")
            val said = verdict(p, photo.getDouble("pet").toFloat(), threshold, manifest.labels)
            assertEquals(name, photo.getString("verdict"), said)
            assertEquals(name, photo.getString("text"), verdictText(said, p, manifest.labels))
            assertEquals(name, if (said == Verdict.NEITHER) "photo" else "overlay", photo.getString("shown"))
        }
        val cases = Golden.json.getJSONArray("verdict_cases").objects()
        assertTrue(cases.any { it.getString("verdict") == Verdict.NEITHER } && cases.any { it.getString("verdict") != Verdict.NEITHER })
        assertTrue("pet at the threshold is kept", cases.any {
            it.getDouble("pet").toFloat().toDouble() == it.getDouble("threshold") && it.getString("verdict") != Verdict.NEITHER
        })
        for (case in cases) {
            val p = case.getJSONArray("probabilities").floats()
            val pet = case.getDouble("pet").toFloat()
            val threshold = case.getDouble("threshold")
            val what = "probabilities ${p.toList()}, pet $pet, threshold $threshold"
            val said = verdict(p, pet, threshold, manifest.labels)
            assertEquals(what, case.getString("verdict"), said)
            assertEquals(what, case.getString("text"), verdictText(said, p, manifest.labels))
        }
        assertEquals("No cat or dog here", Verdict.NEITHER_TEXT)
    }

    @Test fun displaySizesArePillowThumbnails() {
        val maxSide = Golden.json.getInt("overlay_max_side")
        for (case in Golden.json.getJSONArray("display_sizes").objects()) {
            val (w, h) = displaySize(case.getInt("width"), case.getInt("height"), maxSide)
            assertEquals("${case.getInt("width")}x${case.getInt("height")}", case.getJSONArray("expected").ints(), listOf(w, h))
        }
    }

    @Test fun squashIsCatdogsPillowBilinear() {
        for (key in listOf("squash", "squash_tall")) {  // the tall one: Pillow's vertical pass first
            val sq = Golden.json.getJSONObject(key)
            val source = RgbImage(sq.getInt("width"), sq.getInt("height"), Golden.bytes(sq.getString("rgb")))
            for (case in sq.getJSONArray("cases").objects()) {
                val what = "squash ${source.width}x${source.height} to ${case.getInt("side")}"
                assertArrayEquals(what, Golden.bytes(case.getString("rgb")), source.squashed(case.getInt("side")).pixels)
            }
            assertEquals(source, source.resized(source.width, source.height))
        }
    }

    @Test fun alphaIsCompositedOverWhite() {
        val ow = Golden.json.getJSONObject("over_white")
        val rgba = Golden.bytes(ow.getString("rgba"))
        val argb = IntArray(rgba.size / 4) { i ->
            fun b(k: Int) = rgba[4 * i + k].toInt() and 0xFF
            (b(3) shl 24) or (b(0) shl 16) or (b(1) shl 8) or b(2)
        }
        val w = ow.getInt("width"); val h = ow.getInt("height")
        assertArrayEquals(Golden.bytes(ow.getString("rgb")), RgbImage.fromArgb(argb, w, h).pixels)
        // row by row, as the app reads a Bitmap (getPixels one row at a time): the same pixels
        val rowsRead = mutableListOf<Int>()
        val byRows = RgbImage.fromArgbRows(w, h) { y, row -> rowsRead += y; System.arraycopy(argb, y * w, row, 0, w) }
        assertArrayEquals(Golden.bytes(ow.getString("rgb")), byRows.pixels)
        assertEquals((0 until h).toList(), rowsRead)
    }

    @Test fun orientationIsCatdogsExifTranspose() {
        val o = Golden.json.getJSONObject("orientation")
        val raw = RgbImage(o.getInt("width"), o.getInt("height"), Golden.bytes(o.getString("rgb")))
        val cases = o.getJSONArray("cases").objects()
        assertEquals((1..8).toList(), cases.map { it.getInt("exif") })
        for (case in cases) {
            val up = raw.upright(Orientation.fromExif(case.getInt("exif")))
            assertEquals("EXIF ${case.getInt("exif")}", listOf(case.getInt("width"), case.getInt("height")), listOf(up.width, up.height))
            assertArrayEquals("EXIF ${case.getInt("exif")}", Golden.bytes(case.getString("rgb")), up.pixels)
        }
        assertEquals(Orientation.RIGHT, Orientation.fromClockwiseDegrees(90))
        assertEquals(Orientation.LEFT, Orientation.fromClockwiseDegrees(-90))
        assertEquals(Orientation.DOWN, Orientation.fromClockwiseDegrees(180))
        assertEquals(Orientation.UP, Orientation.fromExif(0))
    }

    @Test fun bigPhotosAreDecodedShrunkByAPowerOfTwo() {
        assertEquals(1, sampleSize(4032, 3024, DECODE_MAX_PIXELS)) // a 12.2 MP phone photo: whole, as catdog decodes it
        assertEquals(1, sampleSize(4608, 3456, DECODE_MAX_PIXELS)) // 15.9 MP
        assertEquals(2, sampleSize(8064, 6048, DECODE_MAX_PIXELS)) // 48.8 MP -> 12.2 MP
        assertEquals(2, sampleSize(8160, 6120, DECODE_MAX_PIXELS)) // 50 MP -> 12.5 MP
        assertEquals(4, sampleSize(16320, 12240, DECODE_MAX_PIXELS)) // 200 MP -> 12.5 MP
        assertEquals(2, sampleSize(8000, 6000, 12_000_000)) // 48 MP -> 12 MP
        assertEquals(4, sampleSize(8064, 6048, 12_000_000)) // 48.8 MP: halved is still 12.2 MP
        for (case in Golden.json.getJSONArray("display_sizes").objects()) {
            val w = case.getInt("width"); val h = case.getInt("height")
            val n = sampleSize(w, h, 100_000)
            assertTrue((w / n).toLong() * (h / n) <= 100_000 && (n == 1 || (w / (n / 2)).toLong() * (h / (n / 2)) > 100_000))
        }
    }

    @Test fun pixelsArePackedForLiteRTAndBitmap() {
        val case = Golden.json.getJSONObject("squash").getJSONArray("cases").objects()[0]
        val side = case.getInt("side")
        val image = RgbImage(side, side, Golden.bytes(case.getString("rgb")))
        val input = image.toFloatInput()
        assertEquals(side * side * 3, input.size)
        val argb = image.toArgb()
        for ((x, y) in listOf(0 to 0, side - 1 to 0, 3 to side - 1, side - 1 to side - 1)) {
            val i = y * side + x
            assertEquals(image.rgb(x, y), listOf(input[3 * i], input[3 * i + 1], input[3 * i + 2]).map { it.toInt() })
            assertEquals(0xFF000000.toInt() or (image[x, y, 0] shl 16) or (image[x, y, 1] shl 8) or image[x, y, 2], argb[i])
        }
        assertEquals(image, RgbImage.fromArgb(argb, side, side))
    }

    @Test fun aPhotoGoesThroughTheModelAsCatdogCamDoes() {
        // photos the app shows at their own size: the overlay is drawn on the photo itself
        val maxSide = Golden.json.getInt("overlay_max_side")
        for (photo in Golden.photos.filter { it.getInt("width") <= maxSide && it.getInt("height") <= maxSide }) {
            val image = sampled(photo)
            var fed = 0
            val pet = photo.getDouble("pet").toFloat()
            val analysis = analyse(image, manifest, maxSide) { input ->
                fed = input.size
                ModelOutput(photo.getJSONArray("probabilities").floats(), pet, photo.getJSONArray("cam").floats())
            }
            val name = photo.getString("name")
            assertEquals(manifest.inputSize * manifest.inputSize * 3, fed)
            assertEquals(name, photo.getString("verdict"), analysis.verdict)
            assertEquals(pet, analysis.pet, 0f)
            assertEquals(name, photo.getString("text"), analysis.text)
            assertEquals(photo.getInt("index"), analysis.index)
            // a neither verdict shows the photo itself; cat or dog, catdog's overlay (within 1 of 255)
            val (want, within) = if (photo.getString("shown") == "photo") "photo" to 0 else "overlay" to 1
            for (s in photo.getJSONArray("samples").objects()) {
                val got = analysis.overlay.rgb(s.getInt("x"), s.getInt("y"))
                assertTrue("$name at (${s.getInt("x")}, ${s.getInt("y")})", maxDifference(got, s.getJSONArray(want).ints()) <= within)
            }
        }
        assertNotEquals(0, Golden.photos.count { it.getInt("width") <= maxSide && it.getInt("height") <= maxSide })
    }

    /**
     * Whatever the golden photos' verdicts: under the threshold the app says "No cat or dog here" and
     * shows the plain photo, at the size it would show the overlay; at or over it, the CAM overlay.
     */
    @Test fun aNeitherVerdictShowsThePlainPhoto() {
        val half = edited { it.put("pet_threshold", 0.5) }
        val photo = Golden.photos[0]
        val p = photo.getJSONArray("probabilities").floats(); val cam = photo.getJSONArray("cam").floats()
        val image = RgbImage(40, 30, ByteArray(3 * 40 * 30) { (it * 7).toByte() })
        val shown = image.resized(16, 12) // at most 16 a side: 40x30 is shown 16x12
        val overlay = Cam.overlay(shown, map(photo), manifest.camSide)
        assertNotEquals(shown, overlay)
        for ((pet, neither) in listOf(0.5f.nextDown() to true, 0.5f to false, 0f to true, 1f to false)) {
            val analysis = analyse(image, half, 16) { ModelOutput(p, pet, cam) }
            assertEquals("pet $pet", if (neither) Verdict.NEITHER else photo.getString("label"), analysis.verdict)
            assertEquals("pet $pet", if (neither) "No cat or dog here" else photo.getString("label_text"), analysis.text)
            assertEquals("the top label stays", listOf(photo.getString("label"), photo.getInt("index")), listOf(analysis.label, analysis.index))
            assertArrayEquals(p, analysis.probabilities, 0f)
            assertEquals("pet $pet", if (neither) shown else overlay, analysis.overlay)
        }
    }
}
