import CatDogCore
import CoreML
import UIKit

/// Loads the Core ML artefact named in Model/manifest.json and runs it on a photo.
/// The model carries its own preprocessing (ImageType scale/bias): the app only squashes
/// the photo to the manifest's input size, RGB, as `catdog` does.
final class Classifier {
    struct Result {
        let label: String
        let probabilities: [String: Float]
        let overlay: UIImage
    }

    enum Failure: LocalizedError {
        case manifest(String)
        var errorDescription: String? { if case .manifest(let why) = self { return "Cannot use this model: \(why)" }; return nil }
    }

    let manifest: Manifest
    private let model: MLModel

    init(bundle: Bundle = .main) throws {
        guard let folder = bundle.url(forResource: "Model", withExtension: nil),
              let data = try? Data(contentsOf: folder.appendingPathComponent("manifest.json")) else {
            throw Failure.manifest("Model/manifest.json is missing; run scripts/add_model.sh ART_DIR")
        }
        let manifest: Manifest
        do { manifest = try Manifest.decode(data) } catch { throw Failure.manifest("manifest.json is not a catdog manifest (\(error))") }
        if let problem = manifest.problem() { throw Failure.manifest(problem) }
        guard let artefact = manifest.coreMLArtefact else { throw Failure.manifest("no Core ML artefact") }
        let compiled = try MLModel.compileModel(at: folder.appendingPathComponent(artefact.file))
        self.model = try MLModel(contentsOf: compiled)
        self.manifest = manifest
    }

    func classify(_ photo: UIImage) throws -> Result {
        let side = manifest.inputSize
        guard let squashed = photo.squashed(to: side), let buffer = squashed.pixelBuffer() else {
            throw Failure.manifest("could not convert the photo")
        }
        let out = try model.prediction(from: MLDictionaryFeatureProvider(dictionary: [manifest.input.name: buffer]))
        let dictionary = out.featureValue(for: Manifest.probabilities)?.dictionaryValue ?? [:]
        let probabilities = manifest.labels.map { Float(truncating: dictionary[$0 as NSString] ?? 0) }
        guard let cam = out.featureValue(for: Manifest.cam)?.multiArrayValue else { throw Failure.manifest("no cam output") }
        let flat = (0..<cam.count).map { Float(truncating: cam[$0]) }
        let top = topLabel(probabilities: probabilities, labels: manifest.labels)
        let map = CAM.channel(flat, side: manifest.camSide, classes: manifest.labels.count, index: top.index)
        return Result(
            label: top.label,
            probabilities: Dictionary(uniqueKeysWithValues: zip(manifest.labels, probabilities)),
            overlay: photo.withCAM(map, side: manifest.camSide) ?? photo
        )
    }
}

extension UIImage {
    /// The whole photo resized to side x side, aspect ratio not kept (catdog's "squash").
    func squashed(to side: Int) -> UIImage? {
        let format = UIGraphicsImageRendererFormat(); format.scale = 1
        return UIGraphicsImageRenderer(size: CGSize(width: side, height: side), format: format).image { _ in
            draw(in: CGRect(x: 0, y: 0, width: side, height: side))
        }
    }

    func pixelBuffer() -> CVPixelBuffer? {
        guard let cg = cgImage else { return nil }
        var buffer: CVPixelBuffer?
        let attrs = [kCVPixelBufferCGImageCompatibilityKey: true, kCVPixelBufferCGBitmapContextCompatibilityKey: true] as CFDictionary
        CVPixelBufferCreate(kCFAllocatorDefault, cg.width, cg.height, kCVPixelFormatType_32BGRA, attrs, &buffer)
        guard let pb = buffer else { return nil }
        CVPixelBufferLockBaseAddress(pb, [])
        defer { CVPixelBufferUnlockBaseAddress(pb, []) }
        let context = CGContext(data: CVPixelBufferGetBaseAddress(pb), width: cg.width, height: cg.height, bitsPerComponent: 8,
                                bytesPerRow: CVPixelBufferGetBytesPerRow(pb), space: CGColorSpaceCreateDeviceRGB(),
                                bitmapInfo: CGImageAlphaInfo.premultipliedFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue)
        context?.draw(cg, in: CGRect(x: 0, y: 0, width: cg.width, height: cg.height))
        return pb
    }

    /// The photo with the jet heatmap of a side x side CAM map blended over it (as `catdog cam`).
    func withCAM(_ map: [Float], side: Int, maxSide: CGFloat = 640) -> UIImage? {
        let scale = min(1, maxSide / max(size.width, size.height))
        let w = Int(size.width * scale), h = Int(size.height * scale)
        guard w > 0, h > 0, let cg = cgImage else { return nil }
        var rgba = [UInt8](repeating: 0, count: w * h * 4)
        let space = CGColorSpaceCreateDeviceRGB()
        guard let ctx = CGContext(data: &rgba, width: w, height: h, bitsPerComponent: 8, bytesPerRow: 4 * w, space: space,
                                  bitmapInfo: CGImageAlphaInfo.premultipliedLast.rawValue) else { return nil }
        ctx.draw(cg, in: CGRect(x: 0, y: 0, width: w, height: h))
        CAM.blend(rgba: &rgba, width: w, height: h, map: map, side: side)
        guard let out = CGContext(data: &rgba, width: w, height: h, bitsPerComponent: 8, bytesPerRow: 4 * w, space: space,
                                  bitmapInfo: CGImageAlphaInfo.premultipliedLast.rawValue)?.makeImage() else { return nil }
        return UIImage(cgImage: out)
    }
}
