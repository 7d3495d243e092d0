package catdog.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Test

class CoreTest {
    private val json = """
        {"manifest_version": 1, "labels": ["cat", "dog"],
         "input": {"name": "image", "shape": [1, 224, 224, 3], "channel_order": "RGB", "value_range": [0.0, 255.0]},
         "outputs": [{"name": "probabilities", "shape": [1, 2]}, {"name": "cam", "shape": [1, 7, 7, 2]}],
         "artefacts": [{"file": "m_fp32.tflite", "format": "tflite", "precision": "fp32"}]}
    """.trimIndent()

    @Test fun manifestIsUnderstood() {
        val m = Manifest.parse(json)
        assertNull(m.problem())
        assertEquals(224, m.inputSize)
        assertEquals(7, m.camSide)
        assertEquals("m_fp32.tflite", m.tfliteFile())
    }

    @Test fun unknownManifestIsRefused() {
        assertEquals("channel order BGR is not RGB", Manifest.parse(json.replace("\"RGB\"", "\"BGR\"")).problem())
        assertEquals("cam shape [1, 7, 9, 2] is not [1, G, G, 2]", Manifest.parse(json.replace("[1, 7, 7, 2]", "[1, 7, 9, 2]")).problem())
    }

    @Test fun camMaths() {
        val cam = FloatArray(98) { it.toFloat() }
        val dog = Cam.channel(cam, 1, side = 7)
        assertEquals(1f, dog.first()); assertEquals(97f, dog.last())
        val n = Cam.normalise(dog)
        assertEquals(0f, n.minOrNull()); assertEquals(1f, n.maxOrNull())
        assertEquals(n.toList(), Cam.upsample(n, 7, 7, side = 7).toList())
        assertEquals(0x000080, Cam.jet(0f)); assertEquals(0x800000, Cam.jet(1f))
        assertEquals("dog", topLabel(floatArrayOf(0.2f, 0.8f), listOf("cat", "dog")).first)
    }
}
