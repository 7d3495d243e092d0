import Foundation
@testable import CatDogCore

/// tests/golden/apps.json: inputs from the real shipped model and the outputs catdog's Python code
/// computes from them (made by `make golden`, checked by tests/test_golden.py). Found beside this
/// repository's root, or at $CATDOG_GOLDEN.
struct Golden: Decodable {
    struct Sample: Decodable { let x: Int; let y: Int; let photo: [UInt8]; let heat: Float; let jet: [UInt8]; let overlay: [UInt8] }
    struct Size: Decodable { let width: Int; let height: Int }
    struct Photo: Decodable {
        let name: String; let width: Int; let height: Int
        let probabilities: [Float]; let cam: [Float]; let index: Int; let label: String; let label_text: String
        /// The model's `pet`, catdog's verdict and the text and image shown for it ("overlay": each
        /// sample's `overlay`; "photo": its `photo`, the CAM left out for a neither verdict).
        let pet: Float; let verdict: String; let text: String; let shown: String
        let display: Size; let samples: [Sample]
    }
    struct TextCase: Decodable { let probabilities: [Float]; let text: String }
    struct VerdictCase: Decodable { let probabilities: [Float]; let pet: Float; let threshold: Double; let verdict: String; let text: String }
    struct DisplayCase: Decodable { let width: Int; let height: Int; let expected: [Int] }
    struct Squash: Decodable {
        struct Case: Decodable { let side: Int; let rgb: String }
        let width: Int; let height: Int; let rgb: String; let cases: [Case]
    }
    struct OverWhite: Decodable { let width: Int; let height: Int; let rgba: String; let rgb: String }
    struct Orient: Decodable {
        struct Case: Decodable { let exif: Int; let width: Int; let height: Int; let rgb: String }
        let width: Int; let height: Int; let rgb: String; let cases: [Case]
    }
    struct Choice: Decodable { let coreml: String; let tflite: String }

    let golden_version: Int
    let choice: Choice
    let alpha: Float
    let overlay_max_side: Int
    let photos: [Photo]
    let label_text_cases: [TextCase]
    let verdict_cases: [VerdictCase]
    let display_sizes: [DisplayCase]
    let squash: Squash
    let squash_tall: Squash
    let over_white: OverWhite
    let orientation: Orient
    /// The manifest subset, as JSON, for `Manifest.decode` and for edits.
    var manifestJSON: Data = Data()

    enum CodingKeys: String, CodingKey {
        case golden_version, choice, alpha, overlay_max_side, photos, label_text_cases, verdict_cases, display_sizes, squash, squash_tall, over_white,
             orientation
    }

    static let url: URL = {
        if let path = ProcessInfo.processInfo.environment["CATDOG_GOLDEN"] { return URL(fileURLWithPath: path) }
        // Tests/CatDogCoreTests/Golden.swift -> repository root
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<5 { root.deleteLastPathComponent() }
        return root.appendingPathComponent("tests/golden/apps.json")
    }()

    static func load() throws -> Golden {
        let data = try Data(contentsOf: url)
        var golden = try JSONDecoder().decode(Golden.self, from: data)
        let object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        golden.manifestJSON = try JSONSerialization.data(withJSONObject: object["manifest"]!)
        return golden
    }

    /// The manifest subset as a mutable JSON object.
    func manifestObject() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: manifestJSON) as! [String: Any]
    }
}

func bytes(_ base64: String) -> [UInt8] { [UInt8](Data(base64Encoded: base64)!) }

/// Largest |a - b| over two byte arrays of one length.
func maxDifference(_ a: [UInt8], _ b: [UInt8]) -> Int {
    precondition(a.count == b.count)
    return zip(a, b).map { abs(Int($0) - Int($1)) }.max() ?? 0
}
