import Foundation

/// What the app shows for one photo: label, text, probabilities in label order, and the CAM overlay.
public struct Analysis: Sendable {
    public let label: String
    public let index: Int
    public let probabilities: [Float]
    public let text: String
    public let overlay: RGBImage
}

/// The model's two outputs for one photo: probabilities in label order and the `cam` values with
/// their shape [1, G, G, C] and element strides (nil: contiguous).
public struct ModelOutput: Sendable {
    public let probabilities: [Float]
    public let cam: [Float]
    public let camShape: [Int]
    public let camStrides: [Int]?

    public init(probabilities: [Float], cam: [Float], camShape: [Int], camStrides: [Int]? = nil) {
        self.probabilities = probabilities; self.cam = cam; self.camShape = camShape; self.camStrides = camStrides
    }
}

/// One photo through the model, as `catdog cam` does it: squash the upright photo to the input size,
/// run `predict` on that S x S image, then the label text and the overlay of the predicted class's
/// map on the photo shrunk to at most `maxSide` on its longer side.
public func analyse(_ photo: RGBImage, manifest: Manifest, maxSide: Int = 640,
                    predict: (RGBImage) throws -> ModelOutput) throws -> Analysis {
    let out = try predict(photo.squashed(to: manifest.inputSize))
    guard out.probabilities.count == manifest.labels.count else {
        throw CAM.ShapeError(description: "model gave \(out.probabilities.count) probabilities for \(manifest.labels.count) labels")
    }
    let top = topLabel(probabilities: out.probabilities, labels: manifest.labels)
    let map = try CAM.channel(out.cam, shape: out.camShape, strides: out.camStrides, index: top.index)
    let size = displaySize(width: photo.width, height: photo.height, maxSide: maxSide)
    let shown = (size.width, size.height) == (photo.width, photo.height) ? photo : photo.resized(width: size.width, height: size.height)
    return Analysis(label: top.label, index: top.index, probabilities: out.probabilities,
                    text: labelText(probabilities: out.probabilities, labels: manifest.labels),
                    overlay: CAM.overlay(shown, map: map, side: out.camShape[1]))
}
