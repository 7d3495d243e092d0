import Foundation

/// What the app shows for one photo: the verdict (`verdict`: "cat", "dog" or `Verdict.neither`), the
/// model's `pet`, the top label (the first largest probability, whatever the verdict) and its index,
/// the probabilities in label order, the text under the photo, and the image to show: the CAM overlay
/// for a cat or dog verdict, the plain photo (at the same display size) for neither, whose CAM is no
/// evidence for either class.
public struct Analysis: Sendable {
    public let verdict: String
    public let pet: Float
    public let label: String
    public let index: Int
    public let probabilities: [Float]
    public let text: String
    public let overlay: RGBImage
}

/// The model's three outputs for one photo: probabilities in label order, `pet` (the probability that
/// the photo shows a cat or a dog at all), and the `cam` values with their shape [1, G, G, C] and
/// element strides (nil: contiguous).
public struct ModelOutput: Sendable {
    public let probabilities: [Float]
    public let pet: Float
    public let cam: [Float]
    public let camShape: [Int]
    public let camStrides: [Int]?

    public init(probabilities: [Float], pet: Float, cam: [Float], camShape: [Int], camStrides: [Int]? = nil) {
        self.probabilities = probabilities; self.pet = pet; self.cam = cam; self.camShape = camShape; self.camStrides = camStrides
    }
}

/// One photo through the model, as `catdog cam` does it: squash the upright photo to the input size,
/// run `predict` on that S x S image, then the verdict, its text, and the photo shrunk to at most
/// `maxSide` on its longer side, with the top label's CAM blended in unless the verdict is neither.
public func analyse(_ photo: RGBImage, manifest: Manifest, maxSide: Int = 640,
                    predict: (RGBImage) throws -> ModelOutput) throws -> Analysis {
    guard let threshold = manifest.pet_threshold else { throw Manifest.Unusable(description: Manifest.noPetThreshold) }
    let out = try predict(photo.squashed(to: manifest.inputSize))
    guard out.probabilities.count == manifest.labels.count else {
        throw CAM.ShapeError(description: "model gave \(out.probabilities.count) probabilities for \(manifest.labels.count) labels")
    }
    let top = topLabel(probabilities: out.probabilities, labels: manifest.labels)
    let map = try CAM.channel(out.cam, shape: out.camShape, strides: out.camStrides, index: top.index)
    let said = verdict(probabilities: out.probabilities, pet: out.pet, threshold: threshold, labels: manifest.labels)
    let size = displaySize(width: photo.width, height: photo.height, maxSide: maxSide)
    let shown = (size.width, size.height) == (photo.width, photo.height) ? photo : photo.resized(width: size.width, height: size.height)
    return Analysis(verdict: said, pet: out.pet, label: top.label, index: top.index, probabilities: out.probabilities,
                    text: verdictText(verdict: said, probabilities: out.probabilities, labels: manifest.labels),
                    overlay: said == Verdict.neither ? shown : CAM.overlay(shown, map: map, side: out.camShape[1]))
}
