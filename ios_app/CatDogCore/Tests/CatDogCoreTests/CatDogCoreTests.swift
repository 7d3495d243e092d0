import Foundation
import XCTest
@testable import CatDogCore

/// CatDogCore against tests/golden/apps.json: the real shipped model's manifest, probabilities and
/// CAM maps, and what catdog's Python code computes from them.
final class CatDogCoreTests: XCTestCase {
    var golden: Golden!
    var manifest: Manifest!

    override func setUpWithError() throws {
        golden = try Golden.load()
        manifest = try Manifest.decode(golden.manifestJSON)
    }

    private func edited(_ edit: (inout [String: Any]) -> Void) throws -> Manifest {
        var object = try golden.manifestObject()
        edit(&object)
        return try Manifest.decode(JSONSerialization.data(withJSONObject: object))
    }

    func testTheShippedManifestIsUnderstood() throws {
        XCTAssertEqual(golden.golden_version, 2)
        XCTAssertNil(manifest.problem())
        XCTAssertEqual(manifest.labels, ["cat", "dog"])
        let threshold = try XCTUnwrap(manifest.pet_threshold)
        XCTAssertTrue((0...1).contains(threshold))
        XCTAssertGreaterThan(manifest.inputSize, 0)
        XCTAssertEqual(manifest.inputSize, manifest.camSide * 32)
        XCTAssertEqual(golden.photos[0].cam.count, manifest.camSide * manifest.camSide * manifest.labels.count)
    }

    func testManifestsTheAppCannotUseAreRefused() throws {
        let bgr = try edited { m in var i = m["input"] as! [String: Any]; i["channel_order"] = "BGR"; m["input"] = i }
        XCTAssertEqual(bgr.problem(), "channel order BGR is not RGB")
        let v2 = try edited { $0["manifest_version"] = 2 }
        XCTAssertEqual(v2.problem(), "manifest version 2 is not 1; update the app")
        let skewed = try edited { m in
            m["outputs"] = [["name": "probabilities", "shape": [1, 2]], ["name": "cam", "shape": [1, 9, 7, 2]], ["name": "pet", "shape": [1, 1]]]
        }
        XCTAssertEqual(skewed.problem(), "cam shape [\"1\", \"9\", \"7\", \"2\"] is not [1, G, G, 2]")
        let noCam = try edited { $0["outputs"] = [["name": "probabilities", "shape": [1, 2]], ["name": "pet", "shape": [1, 1]]] }
        XCTAssertEqual(noCam.problem(), "output cam missing")
        // a model of an older catdog: no pet output, no pet_threshold
        let noPet = try edited { m in m["outputs"] = (m["outputs"] as! [[String: Any]]).filter { $0["name"] as! String != "pet" } }
        XCTAssertEqual(noPet.problem(), "output pet missing")
        let widePet = try edited { m in
            m["outputs"] = (m["outputs"] as! [[String: Any]]).map { $0["name"] as! String == "pet" ? ["name": "pet", "shape": [1, 2]] : $0 }
        }
        XCTAssertEqual(widePet.problem(), "pet shape [\"1\", \"2\"] is not [1, 1]")
        let noThreshold = try edited { $0.removeValue(forKey: "pet_threshold") }
        XCTAssertNil(noThreshold.pet_threshold)
        XCTAssertEqual(noThreshold.problem(), Manifest.noPetThreshold)
        XCTAssertTrue(Manifest.noPetThreshold.contains("export it again with this catdog version"))
        XCTAssertThrowsError(try analyse(sampled(golden.photos[2]), manifest: noThreshold) { _ in
            XCTFail("no model run without a threshold"); return ModelOutput(probabilities: [1, 0], pet: 1, cam: [], camShape: [])
        }) { XCTAssertEqual($0 as? Manifest.Unusable, Manifest.Unusable(description: Manifest.noPetThreshold)) }
        XCTAssertEqual(try edited { $0["pet_threshold"] = 1.5 }.problem(), "pet_threshold 1.5 is not within 0...1")
        let onlyTFLite = try edited { m in m["artefacts"] = (m["artefacts"] as! [[String: Any]]).filter { $0["format"] as! String == "tflite" } }
        XCTAssertEqual(onlyTFLite.problem(), "no Core ML artefact (fp16, fp32 or int8) listed")
        let dynamic = try edited { m in var i = m["input"] as! [String: Any]; i["shape"] = ["batch", 288, 288, 3]; m["input"] = i }
        XCTAssertNil(dynamic.problem(), "a named batch dimension is fine")
        // backbone is informative: a manifest without it decodes and is used, as on Android and in catdog
        let noBackbone = try edited { $0.removeValue(forKey: "backbone") }
        XCTAssertNil(noBackbone.backbone)
        XCTAssertNil(noBackbone.problem())
    }

    func testTheArtefactIsChosenAmongPrecisions() throws {
        XCTAssertEqual(manifest.coreMLArtefact?.file, golden.choice.coreml)
        XCTAssertEqual(manifest.coreMLArtefact?.precision, "fp16")
        let noFP16 = try edited { m in m["artefacts"] = (m["artefacts"] as! [[String: Any]]).filter { $0["precision"] as! String != "fp16" } }
        XCTAssertEqual(noFP16.coreMLArtefact?.precision, "fp32")
        let int8Only = try edited { m in m["artefacts"] = (m["artefacts"] as! [[String: Any]]).filter { $0["precision"] as! String == "int8" } }
        XCTAssertEqual(int8Only.coreMLArtefact?.precision, "int8")
        XCTAssertEqual(manifest.artefact(format: "tflite", preferring: ["fp32", "fp16", "int8"])?.file, golden.choice.tflite)
    }

    func testTheCompiledModelIsCachedByItsSha256() throws {
        let artefact = try XCTUnwrap(manifest.coreMLArtefact)
        let name = Manifest.compiledModelName(artefact)
        XCTAssertEqual(name, "catdog-\(artefact.sha256.prefix(16)).mlmodelc")
        let other = try XCTUnwrap(manifest.artefact(format: "coreml", preferring: ["fp32"]))
        XCTAssertNotEqual(Manifest.compiledModelName(other), name)
    }

    func testCAMIsReadByShapeAndStrides() throws {
        let g = manifest.camSide, c = manifest.labels.count
        for photo in golden.photos {
            let map = try CAM.channel(photo.cam, shape: [1, g, g, c], index: photo.index)
            XCTAssertEqual(map.count, g * g)
            XCTAssertEqual(map[g + 2], photo.cam[(g + 2) * c + photo.index])  // row 1, column 2
            // the same values in a padded buffer (rows of 16 elements, channels 4 apart), as an fp16 MLMultiArray may hold
            let strides = [g * 16 * 4, 16 * 4, 4, 1]
            var padded = [Float](repeating: .nan, count: g * 16 * 4)
            for i in 0..<g { for j in 0..<g { for k in 0..<c { padded[i * strides[1] + j * strides[2] + k] = photo.cam[(i * g + j) * c + k] } } }
            XCTAssertEqual(try CAM.channel(padded, shape: [1, g, g, c], strides: strides, index: photo.index), map)
        }
        XCTAssertThrowsError(try CAM.channel(golden.photos[0].cam, shape: [1, g, g + 1, c], index: 0))
        XCTAssertThrowsError(try CAM.channel(golden.photos[0].cam, shape: [1, g, g, c], index: c))
        XCTAssertThrowsError(try CAM.channel(Array(golden.photos[0].cam.dropLast()), shape: [1, g, g, c], index: 1))
    }

    func testUpsampledMapsAreOpenCVs() throws {
        for photo in golden.photos {
            let g = manifest.camSide
            let map = try CAM.channel(photo.cam, shape: [1, g, g, 2], index: photo.index)
            let heat = CAM.upsample(CAM.normalise(map), side: g, width: photo.display.width, height: photo.display.height)
            for s in photo.samples {
                XCTAssertEqual(heat[s.y * photo.display.width + s.x], s.heat, accuracy: 1e-5, "\(photo.name) at (\(s.x), \(s.y))")
            }
        }
        XCTAssertEqual(CAM.normalise([3, 3, 3, 3]), [0, 0, 0, 0])
        // catdog.cam.normalise compares the range in double: a spread of Float(1e-12) is constant there
        XCTAssertEqual(CAM.normalise([0, 1e-12]), [0, 0])
        XCTAssertEqual(CAM.normalise([0, 2e-12]), [0, 1])
    }

    func testJetColoursAreCatdogs() throws {
        for s in golden.photos.flatMap(\.samples) {
            XCTAssertLessThanOrEqual(maxDifference(CAM.jet(s.heat), s.jet), 1, "jet(\(s.heat))")
        }
        XCTAssertEqual(CAM.jet(0), [0, 0, 128])
        XCTAssertEqual(CAM.jet(1), [128, 0, 0])
    }

    /// An image of the display size, black but for the golden sample pixels.
    private func sampled(_ photo: Golden.Photo) -> RGBImage {
        let (w, h) = (photo.display.width, photo.display.height)
        var pixels = [UInt8](repeating: 0, count: 3 * w * h)
        for s in photo.samples { for k in 0..<3 { pixels[3 * (s.y * w + s.x) + k] = s.photo[k] } }
        return RGBImage(width: w, height: h, pixels: pixels)
    }

    func testOverlayColoursAreCatdogCams() throws {
        var worst = 0
        for photo in golden.photos {
            let g = manifest.camSide
            let map = try CAM.channel(photo.cam, shape: [1, g, g, 2], index: photo.index)
            let out = CAM.overlay(sampled(photo), map: map, side: g, alpha: golden.alpha)
            for s in photo.samples { worst = max(worst, maxDifference(out[s.x, s.y], s.overlay)) }
        }
        print("overlay colours: largest difference from catdog \(worst) of 255")
        XCTAssertLessThanOrEqual(worst, 1, "overlay colours within 1 of 255")
    }

    func testLabelTextsAreCatdogs() {
        for photo in golden.photos {
            XCTAssertEqual(labelText(probabilities: photo.probabilities, labels: manifest.labels), photo.label_text)
            XCTAssertEqual(topLabel(probabilities: photo.probabilities, labels: manifest.labels).label, photo.label)
        }
        for c in golden.label_text_cases {
            XCTAssertEqual(labelText(probabilities: c.probabilities, labels: manifest.labels), c.text, "\(c.probabilities)")
        }
    }

    func testNonFiniteProbabilitiesAreWrittenAsPythonWritesThem() {
        // f"{100.0 * p:.1f} %" in catdog.cam.label_text (the Kotlin core must say the same)
        XCTAssertEqual(percentText(.nan), "nan %")
        XCTAssertEqual(percentText(.infinity), "inf %")
        XCTAssertEqual(percentText(-.infinity), "-inf %")
        XCTAssertEqual(labelText(probabilities: [.nan, 0.5], labels: ["cat", "dog"]), "It's a cat\ncat nan %   dog 50.0 %")
    }

    func testVerdictsAreCatdogs() throws {
        let threshold = try XCTUnwrap(manifest.pet_threshold)
        for photo in golden.photos {
            let said = verdict(probabilities: photo.probabilities, pet: photo.pet, threshold: threshold, labels: manifest.labels)
            XCTAssertEqual(said, photo.verdict, photo.name)
            XCTAssertEqual(verdictText(verdict: said, probabilities: photo.probabilities, labels: manifest.labels), photo.text, photo.name)
            XCTAssertEqual(photo.shown, said == Verdict.neither ? "photo" : "overlay", photo.name)
        }
        let cases = golden.verdict_cases
        XCTAssertTrue(cases.contains { $0.verdict == Verdict.neither } && cases.contains { $0.verdict != Verdict.neither })
        XCTAssertTrue(cases.contains { Double($0.pet) == $0.threshold && $0.verdict != Verdict.neither }, "pet at the threshold is kept")
        for c in cases {
            let what = "probabilities \(c.probabilities), pet \(c.pet), threshold \(c.threshold)"
            let said = verdict(probabilities: c.probabilities, pet: c.pet, threshold: c.threshold, labels: manifest.labels)
            XCTAssertEqual(said, c.verdict, what)
            XCTAssertEqual(verdictText(verdict: said, probabilities: c.probabilities, labels: manifest.labels), c.text, what)
        }
        XCTAssertEqual(Verdict.neitherText, "No cat or dog here")
    }

    func testDisplaySizesArePillowThumbnails() {
        for c in golden.display_sizes {
            let size = displaySize(width: c.width, height: c.height, maxSide: golden.overlay_max_side)
            XCTAssertEqual([size.width, size.height], c.expected, "\(c.width)x\(c.height)")
        }
        for p in golden.photos {
            let size = displaySize(width: p.width, height: p.height, maxSide: golden.overlay_max_side)
            XCTAssertEqual([size.width, size.height], [p.display.width, p.display.height])
        }
    }

    func testSquashIsCatdogsPillowBilinear() {
        for sq in [golden.squash, golden.squash_tall] {  // the tall one: Pillow's vertical pass first
            let source = RGBImage(width: sq.width, height: sq.height, pixels: bytes(sq.rgb))
            for c in sq.cases {
                XCTAssertEqual(source.squashed(to: c.side).pixels, bytes(c.rgb), "squash \(sq.width)x\(sq.height) to \(c.side)")
            }
            XCTAssertEqual(source.resized(width: sq.width, height: sq.height), source)
        }
    }

    func testAlphaIsCompositedOverWhite() {
        let ow = golden.over_white
        let rgba = bytes(ow.rgba), expected = bytes(ow.rgb)
        XCTAssertEqual(RGBImage(rgba: rgba, width: ow.width, height: ow.height, premultiplied: false).pixels, expected)
        // what a Core Graphics context holds: colours premultiplied by alpha, rows padded
        let stride = 4 * ow.width + 8
        var premultiplied = [UInt8](repeating: 0, count: stride * ow.height)
        for y in 0..<ow.height {
            for x in 0..<ow.width {
                let i = 4 * (y * ow.width + x), a = Double(rgba[i + 3])
                for k in 0..<3 { premultiplied[y * stride + 4 * x + k] = UInt8((Double(rgba[i + k]) * a / 255).rounded()) }
                premultiplied[y * stride + 4 * x + 3] = rgba[i + 3]
            }
        }
        let image = RGBImage(rgba: premultiplied, width: ow.width, height: ow.height, bytesPerRow: stride, premultiplied: true)
        XCTAssertLessThanOrEqual(maxDifference(image.pixels, expected), 1)
    }

    func testOrientationIsCatdogsExifTranspose() {
        let o = golden.orientation
        let raw = RGBImage(width: o.width, height: o.height, pixels: bytes(o.rgb))
        XCTAssertEqual(o.cases.map(\.exif), Array(1...8))
        for c in o.cases {
            let up = raw.upright(Orientation(exif: c.exif))
            XCTAssertEqual([up.width, up.height], [c.width, c.height], "EXIF \(c.exif)")
            XCTAssertEqual(up.pixels, bytes(c.rgb), "EXIF \(c.exif)")
        }
        XCTAssertEqual(Orientation(clockwiseDegrees: 90), .right)
        XCTAssertEqual(Orientation(clockwiseDegrees: -90), .left)
        XCTAssertEqual(Orientation(clockwiseDegrees: 180), .down)
        XCTAssertEqual(Orientation(exif: 0), .up)
    }

    func testPixelsArePackedForCoreMLAndCGImage() {
        let sq = golden.squash
        let c = sq.cases[0]
        let image = RGBImage(width: c.side, height: c.side, pixels: bytes(c.rgb))
        let bytesPerRow = 4 * c.side + 16
        let bgra = image.bgra(bytesPerRow: bytesPerRow)
        XCTAssertEqual(bgra.count, bytesPerRow * c.side)
        for (x, y) in [(0, 0), (c.side - 1, 0), (3, c.side - 1), (c.side - 1, c.side - 1)] {
            let o = y * bytesPerRow + 4 * x
            XCTAssertEqual([bgra[o + 2], bgra[o + 1], bgra[o], bgra[o + 3]], image[x, y] + [255])
        }
        XCTAssertEqual(bgra[4 * c.side], 0, "row padding stays zero")
        let rgba = image.rgba()
        XCTAssertEqual(RGBImage(rgba: rgba, width: c.side, height: c.side, premultiplied: true), image)
    }

    func testAPhotoGoesThroughTheModelAsCatdogCamDoes() throws {
        // photos the app shows at their own size: the overlay is drawn on the photo itself
        let shownAsIs = golden.photos.filter { $0.width <= golden.overlay_max_side && $0.height <= golden.overlay_max_side }
        XCTAssertFalse(shownAsIs.isEmpty)
        let g = manifest.camSide
        for photo in shownAsIs {
            var fed: RGBImage?
            let analysis = try analyse(sampled(photo), manifest: manifest, maxSide: golden.overlay_max_side) { input in
                fed = input
                return ModelOutput(probabilities: photo.probabilities, pet: photo.pet, cam: photo.cam, camShape: [1, g, g, 2])
            }
            XCTAssertEqual([fed?.width, fed?.height], [manifest.inputSize, manifest.inputSize])
            XCTAssertEqual(analysis.verdict, photo.verdict, photo.name)
            XCTAssertEqual(analysis.pet, photo.pet)
            XCTAssertEqual(analysis.text, photo.text, photo.name)
            XCTAssertEqual(analysis.index, photo.index)
            for s in photo.samples {
                // a neither verdict shows the photo itself; cat or dog, catdog's overlay (within 1 of 255)
                let (want, within) = photo.shown == "photo" ? (s.photo, 0) : (s.overlay, 1)
                XCTAssertLessThanOrEqual(maxDifference(analysis.overlay[s.x, s.y], want), within, "\(photo.name) at (\(s.x), \(s.y))")
            }
        }
    }

    /// Whatever the golden photos' verdicts: under the threshold the app says "No cat or dog here" and
    /// shows the plain photo, at the size it would show the overlay; at or over it, the CAM overlay.
    func testANeitherVerdictShowsThePlainPhoto() throws {
        let half = try edited { $0["pet_threshold"] = 0.5 }
        let photo = golden.photos[0], g = manifest.camSide
        let image = RGBImage(width: 40, height: 30, pixels: (0..<(3 * 40 * 30)).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let shown = image.resized(width: 16, height: 12)  // at most 16 a side: 40x30 is shown 16x12
        for (pet, neither) in [(Float(0.5).nextDown, true), (0.5, false), (0, true), (1, false)] as [(Float, Bool)] {
            let analysis = try analyse(image, manifest: half, maxSide: 16) { _ in
                ModelOutput(probabilities: photo.probabilities, pet: pet, cam: photo.cam, camShape: [1, g, g, 2])
            }
            XCTAssertEqual(analysis.verdict, neither ? Verdict.neither : photo.label, "pet \(pet)")
            XCTAssertEqual(analysis.text, neither ? "No cat or dog here" : photo.label_text, "pet \(pet)")
            XCTAssertEqual([analysis.label, "\(analysis.index)"], [photo.label, "\(photo.index)"], "the top label stays")
            XCTAssertEqual(analysis.probabilities, photo.probabilities)
            let overlay = CAM.overlay(shown, map: try CAM.channel(photo.cam, shape: [1, g, g, 2], index: photo.index), side: g)
            XCTAssertEqual(analysis.overlay, neither ? shown : overlay, "pet \(pet)")
            XCTAssertNotEqual(shown, overlay)
        }
    }
}
