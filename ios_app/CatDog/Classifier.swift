import CatDogCore
import CoreGraphics
import CoreML
import CoreVideo
import Foundation
import ImageIO

/// Runs the Core ML artefact named in Model/manifest.json, off the main thread (an actor). The model
/// carries its preprocessing (ImageType scale/bias): the app only decodes the photo upright and
/// squashes it to the manifest's input size with catdog's own resampling (CatDogCore).
actor Classifier {
    enum Failure: LocalizedError {
        case model(String)
        case photo(String)
        var errorDescription: String? {
            switch self {
            case .model(let why): return "Cannot use the model: \(why)"
            case .photo(let why): return "Cannot read this photo: \(why)"
            }
        }
    }

    nonisolated let manifest: Manifest
    private let model: MLModel

    /// Loads the bundled model; it is compiled on the first launch that sees this artefact (by
    /// sha256) and the compiled model is kept in Application Support for later launches.
    init() async throws {
        guard let folder = Bundle.main.url(forResource: "Model", withExtension: nil),
              let data = try? Data(contentsOf: folder.appendingPathComponent("manifest.json")) else {
            throw Failure.model("Model/manifest.json is not in the app. Run ios_app/scripts/add_model.sh ART_DIR, then build again.")
        }
        let manifest: Manifest
        do { manifest = try Manifest.decode(data) } catch {
            throw Failure.model("Model/manifest.json is not a catdog manifest (\(error.localizedDescription))")
        }
        if let problem = manifest.problem() { throw Failure.model(problem) }
        guard let artefact = manifest.coreMLArtefact else { throw Failure.model("no Core ML artefact listed") }
        let compiled = try await Self.compiledModel(artefact, in: folder)
        self.model = try MLModel(contentsOf: compiled)
        self.manifest = manifest
    }

    /// The photo (an encoded image file: JPEG, HEIC, PNG...) through the model: its verdict, text and
    /// the image to show (the CAM overlay, or the plain photo for a neither verdict).
    func classify(_ data: Data) throws -> Analysis {
        let photo = try Self.decode(data)
        let (model, manifest) = (self.model, self.manifest)
        return try analyse(photo, manifest: manifest) { squashed in try Self.predict(model, manifest, squashed) }
    }

    private static func compiledModel(_ artefact: Manifest.Artefact, in folder: URL) async throws -> URL {
        let files = FileManager.default
        let support = try files.url(for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
        let target = support.appendingPathComponent(Manifest.compiledModelName(artefact))
        if files.fileExists(atPath: target.path) { return target }
        let package = folder.appendingPathComponent(artefact.file)
        guard files.fileExists(atPath: package.path) else {
            throw Failure.model("Model/\(artefact.file) is not in the app. Run ios_app/scripts/add_model.sh ART_DIR, then build again.")
        }
        let temporary = try await MLModel.compileModel(at: package)
        // keep only this model's compiled copy
        for old in (try? files.contentsOfDirectory(at: support, includingPropertiesForKeys: nil)) ?? []
        where old.lastPathComponent.hasPrefix("catdog-") && old.pathExtension == "mlmodelc" {
            try? files.removeItem(at: old)
        }
        try files.moveItem(at: temporary, to: target)
        return target
    }

    private static func predict(_ model: MLModel, _ manifest: Manifest, _ image: RGBImage) throws -> ModelOutput {
        let input = try MLDictionaryFeatureProvider(dictionary: [manifest.input.name: MLFeatureValue(pixelBuffer: try pixelBuffer(image))])
        let out = try model.prediction(from: input)
        guard let dictionary = out.featureValue(for: Manifest.probabilities)?.dictionaryValue else {
            throw Failure.model("no \(Manifest.probabilities) output")
        }
        let probabilities = manifest.labels.map { Float(truncating: dictionary[AnyHashable($0)] ?? 0) }
        guard let cam = out.featureValue(for: Manifest.cam)?.multiArrayValue else { throw Failure.model("no \(Manifest.cam) output") }
        // an fp16 MLMultiArray may pad its rows: read it by shape and strides, as Float
        let shaped = MLShapedArray<Float>(converting: cam)
        // pet: [1, 1], the probability that the photo shows a cat or a dog at all
        guard let petArray = out.featureValue(for: Manifest.pet)?.multiArrayValue,
              let pet = MLShapedArray<Float>(converting: petArray).scalars.first else {
            throw Failure.model("no \(Manifest.pet) output")
        }
        return ModelOutput(probabilities: probabilities, pet: pet, cam: shaped.scalars, camShape: shaped.shape)
    }

    /// A 32BGRA pixel buffer (what Core ML's image input takes) holding `image`.
    private static func pixelBuffer(_ image: RGBImage) throws -> CVPixelBuffer {
        var made: CVPixelBuffer?
        let attributes = [kCVPixelBufferCGImageCompatibilityKey: true, kCVPixelBufferCGBitmapContextCompatibilityKey: true] as CFDictionary
        guard CVPixelBufferCreate(kCFAllocatorDefault, image.width, image.height, kCVPixelFormatType_32BGRA, attributes, &made)
                == kCVReturnSuccess, let buffer = made else {
            throw Failure.photo("no memory for a \(image.width)x\(image.height) pixel buffer")
        }
        CVPixelBufferLockBaseAddress(buffer, [])
        defer { CVPixelBufferUnlockBaseAddress(buffer, []) }
        guard let base = CVPixelBufferGetBaseAddress(buffer) else { throw Failure.photo("pixel buffer has no memory") }
        let bgra = image.bgra(bytesPerRow: CVPixelBufferGetBytesPerRow(buffer))
        bgra.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return buffer
    }

    /// The photo's pixels upright (its EXIF orientation applied, as catdog's decoder does), alpha
    /// over white, in sRGB. Photos over `maxPixels` are decoded shrunk by ImageIO (a 48 MP photo
    /// would take 190 MB as RGBA).
    static func decode(_ data: Data, maxPixels: Int = 16_000_000) throws -> RGBImage {
        guard let source = CGImageSourceCreateWithData(data as CFData, nil), CGImageSourceGetCount(source) > 0 else {
            throw Failure.photo("not an image")
        }
        let properties = CGImageSourceCopyPropertiesAtIndex(source, 0, nil) as? [CFString: Any] ?? [:]
        let exif = (properties[kCGImagePropertyOrientation] as? NSNumber)?.intValue ?? 1
        let width = (properties[kCGImagePropertyPixelWidth] as? NSNumber)?.intValue ?? 0
        let height = (properties[kCGImagePropertyPixelHeight] as? NSNumber)?.intValue ?? 0
        let cgImage: CGImage?
        if width * height > maxPixels {
            let longest = Double(max(width, height)) * (Double(maxPixels) / Double(width * height)).squareRoot()
            let options = [kCGImageSourceCreateThumbnailFromImageAlways: true, kCGImageSourceCreateThumbnailWithTransform: false,
                           kCGImageSourceThumbnailMaxPixelSize: Int(longest)] as [CFString: Any] as CFDictionary
            cgImage = CGImageSourceCreateThumbnailAtIndex(source, 0, options)  // raw orientation: turned upright below
        } else {
            cgImage = CGImageSourceCreateImageAtIndex(source, 0, nil)
        }
        guard let cg = cgImage, let srgb = CGColorSpace(name: CGColorSpace.sRGB) else { throw Failure.photo("cannot decode it") }
        let (w, h) = (cg.width, cg.height)
        var rgba = [UInt8](repeating: 0, count: 4 * w * h)
        // the context lives only inside the closure that owns the pointer
        let drawn = rgba.withUnsafeMutableBytes { bytes -> Bool in
            guard let context = CGContext(data: bytes.baseAddress, width: w, height: h, bitsPerComponent: 8, bytesPerRow: 4 * w,
                                          space: srgb, bitmapInfo: CGImageAlphaInfo.premultipliedLast.rawValue) else { return false }
            context.draw(cg, in: CGRect(x: 0, y: 0, width: w, height: h))
            return true
        }
        guard drawn else { throw Failure.photo("cannot draw a \(w)x\(h) image") }
        return RGBImage(rgba: rgba, width: w, height: h, premultiplied: true).upright(Orientation(exif: exif))
    }
}
