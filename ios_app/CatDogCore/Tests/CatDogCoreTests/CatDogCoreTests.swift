import XCTest
@testable import CatDogCore

final class CatDogCoreTests: XCTestCase {
    let manifestJSON = """
    {"manifest_version": 1, "backbone": "mobilenet_v2", "labels": ["cat", "dog"],
     "input": {"name": "image", "shape": [1, 224, 224, 3], "channel_order": "RGB", "value_range": [0.0, 255.0]},
     "outputs": [{"name": "probabilities", "shape": [1, 2]}, {"name": "cam", "shape": [1, 7, 7, 2]}],
     "artefacts": [{"file": "catdog_mobilenet_v2_fp16.mlpackage", "format": "coreml", "precision": "fp16", "sha256": "x"}]}
    """

    func testManifestIsUnderstood() throws {
        let m = try Manifest.decode(Data(manifestJSON.utf8))
        XCTAssertNil(m.problem())
        XCTAssertEqual(m.inputSize, 224)
        XCTAssertEqual(m.camSide, 7)
        XCTAssertEqual(m.coreMLArtefact?.file, "catdog_mobilenet_v2_fp16.mlpackage")
    }

    func testUnknownManifestIsRefused() throws {
        let bgr = manifestJSON.replacingOccurrences(of: "\"RGB\"", with: "\"BGR\"")
        XCTAssertEqual(try Manifest.decode(Data(bgr.utf8)).problem(), "channel order BGR is not RGB")
        let v2 = manifestJSON.replacingOccurrences(of: "\"manifest_version\": 1", with: "\"manifest_version\": 2")
        XCTAssertNotNil(try Manifest.decode(Data(v2.utf8)).problem())
        let skewed = manifestJSON.replacingOccurrences(of: "[1, 7, 7, 2]", with: "[1, 7, 9, 2]")
        XCTAssertEqual(try Manifest.decode(Data(skewed.utf8)).problem(), "cam shape [\"1\", \"7\", \"9\", \"2\"] is not [1, G, G, 2]")
    }

    func testCAMMaths() {
        let cam: [Float] = (0..<98).map { Float($0) }
        let dog = CAM.channel(cam, side: 7, index: 1)
        XCTAssertEqual(dog.first, 1); XCTAssertEqual(dog.last, 97)
        let n = CAM.normalise(dog)
        XCTAssertEqual(n.min(), 0); XCTAssertEqual(n.max(), 1)
        XCTAssertEqual(CAM.normalise([Float](repeating: 3, count: 49)).max(), 0)
        XCTAssertEqual(CAM.upsample(n, side: 7, width: 7, height: 7), n)
        XCTAssertTrue(CAM.jet(0) == (0, 0, 128)); XCTAssertTrue(CAM.jet(1) == (128, 0, 0))
        XCTAssertEqual(topLabel(probabilities: [0.2, 0.8], labels: ["cat", "dog"]).label, "dog")
    }
}
