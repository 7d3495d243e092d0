import Foundation

/// The part of catdog's `manifest.json` the app relies on. The app never normalises pixels:
/// it feeds the photo (squashed to the input size, RGB 0...255) and the model does the rest.
public struct Manifest: Decodable, Equatable, Sendable {
    public struct Input: Decodable, Equatable, Sendable {
        public let name: String
        public let shape: [ShapeDim]
        public let channel_order: String
        public let value_range: [Double]
    }
    public struct Output: Decodable, Equatable, Sendable {
        public let name: String
        public let shape: [ShapeDim]
    }
    public struct Artefact: Decodable, Equatable, Sendable {
        public let file: String
        public let format: String
        public let precision: String
        public let sha256: String
    }
    public let manifest_version: Int
    /// Informative only, so optional (as in Manifest.kt and catdog): a model without it is still usable.
    public let backbone: String?
    public let labels: [String]
    public let input: Input
    public let outputs: [Output]
    public let artefacts: [Artefact]
    /// Under this `pet` output the verdict is "neither" (`verdict`). Required: nil only in a manifest
    /// of an older catdog, which `problem()` refuses.
    public let pet_threshold: Double?

    public static let supportedVersion = 1
    public static let probabilities = "probabilities"
    public static let cam = "cam"
    public static let pet = "pet"
    public static let noPetThreshold =
        "manifest.json has no pet_threshold (an older catdog exported this model): export it again with this catdog version"

    /// A manifest the app cannot use, met where `problem()` was not asked first.
    public struct Unusable: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    public static func decode(_ data: Data) throws -> Manifest {
        try JSONDecoder().decode(Manifest.self, from: data)
    }

    /// Width (= height) of the square input, from `input.shape` = [batch, H, W, 3].
    public var inputSize: Int { input.shape.count == 4 ? (input.shape[1].value ?? 0) : 0 }

    /// Side G of the square CAM maps, from the `cam` output shape [1, G, G, classes] (input size / 32).
    public var camSide: Int {
        guard let shape = outputs.first(where: { $0.name == Manifest.cam })?.shape, shape.count == 4 else { return 0 }
        return shape[1].value ?? 0
    }

    /// Why this app cannot use the model, or nil when it can.
    public func problem() -> String? {
        if manifest_version != Manifest.supportedVersion {
            return "manifest version \(manifest_version) is not \(Manifest.supportedVersion); update the app"
        }
        guard let threshold = pet_threshold else { return Manifest.noPetThreshold }
        if !(0...1).contains(threshold) { return "pet_threshold \(threshold) is not within 0...1" }
        if labels.count != 2 { return "expected 2 labels, found \(labels.count)" }
        guard input.shape.count == 4, input.shape[3].value == 3, inputSize > 0,
              input.shape[1].value == input.shape[2].value else {
            return "input shape \(input.shape.map { $0.description }) is not [1, N, N, 3]"
        }
        if input.channel_order != "RGB" { return "channel order \(input.channel_order) is not RGB" }
        if input.value_range != [0, 255] { return "input range \(input.value_range) is not 0...255" }
        let names = Set(outputs.map { $0.name })
        for needed in [Manifest.probabilities, Manifest.cam, Manifest.pet] where !names.contains(needed) {
            return "output \(needed) missing"
        }
        let petShape = outputs.first(where: { $0.name == Manifest.pet })!.shape
        guard petShape.count == 2, petShape[1].value == 1 else {
            return "pet shape \(petShape.map { $0.description }) is not [1, 1]"
        }
        let camShape = outputs.first(where: { $0.name == Manifest.cam })!.shape
        guard camShape.count == 4, camSide > 0, camShape[2].value == camSide, camShape[3].value == labels.count else {
            return "cam shape \(camShape.map { $0.description }) is not [1, G, G, \(labels.count)]"
        }
        if coreMLArtefact == nil { return "no Core ML artefact (fp16, fp32 or int8) listed" }
        return nil
    }

    /// The artefact of `format` to ship, by the first precision of `preferring` listed.
    public func artefact(format: String, preferring precisions: [String]) -> Artefact? {
        let candidates = artefacts.filter { $0.format == format }
        for precision in precisions { if let a = candidates.first(where: { $0.precision == precision }) { return a } }
        return nil
    }

    /// The Core ML artefact the app loads: fp16 (half the size; within 5e-3 of Keras), else fp32,
    /// else int8. `ios_app/scripts/add_model.sh` copies the same one.
    public var coreMLArtefact: Artefact? { artefact(format: "coreml", preferring: ["fp16", "fp32", "int8"]) }

    /// File name of the compiled model cached between launches, keyed by the artefact's sha256, so
    /// a new model is compiled once and an unchanged one never again.
    public static func compiledModelName(_ artefact: Artefact) -> String {
        "catdog-\(artefact.sha256.prefix(16)).mlmodelc"
    }
}

/// A shape entry: a number, or a name for a dynamic dimension ("batch").
public enum ShapeDim: Decodable, Equatable, Sendable, CustomStringConvertible {
    case fixed(Int)
    case named(String)

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self) { self = .fixed(n) } else { self = .named(try c.decode(String.self)) }
    }
    public var value: Int? { if case .fixed(let n) = self { return n } else { return nil } }
    public var description: String { switch self { case .fixed(let n): return "\(n)"; case .named(let s): return s } }
}
