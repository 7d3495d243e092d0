import Foundation

/// Class Activation Map maths, as `catdog cam` does it: take the predicted class's G x G map
/// (G = `Manifest.camSide`: 7 for a 224 model, 9 for 288),
/// min-max normalise, upsample bilinearly to the photo, colour with jet, blend at 45 %.
public enum CAM {
    public static let alpha: Float = 0.45

    /// One class's map out of the flat `cam` output [1, side, side, C] (NHWC), row-major.
    public static func channel(_ cam: [Float], side: Int, classes: Int = 2, index: Int) -> [Float] {
        precondition(cam.count == side * side * classes, "cam has \(cam.count) values, expected \(side * side * classes)")
        return (0..<(side * side)).map { cam[$0 * classes + index] }
    }

    /// Min-max scale to 0...1; a constant map becomes all zeros.
    public static func normalise(_ map: [Float]) -> [Float] {
        guard let lo = map.min(), let hi = map.max(), hi - lo > 1e-12 else { return map.map { _ in 0 } }
        return map.map { ($0 - lo) / (hi - lo) }
    }

    /// Bilinear upsampling of a side x side map to width x height (pixel centres aligned, as OpenCV).
    public static func upsample(_ map: [Float], side: Int, width: Int, height: Int) -> [Float] {
        var out = [Float](repeating: 0, count: width * height)
        let sx = Float(side) / Float(width), sy = Float(side) / Float(height)
        for y in 0..<height {
            let fy = max(0, min(Float(side - 1), (Float(y) + 0.5) * sy - 0.5))
            let y0 = Int(fy), y1 = min(y0 + 1, side - 1), wy = fy - Float(y0)
            for x in 0..<width {
                let fx = max(0, min(Float(side - 1), (Float(x) + 0.5) * sx - 0.5))
                let x0 = Int(fx), x1 = min(x0 + 1, side - 1), wx = fx - Float(x0)
                let top = map[y0 * side + x0] * (1 - wx) + map[y0 * side + x1] * wx
                let bottom = map[y1 * side + x0] * (1 - wx) + map[y1 * side + x1] * wx
                out[y * width + x] = top * (1 - wy) + bottom * wy
            }
        }
        return out
    }

    /// Jet colour of a 0...1 value as RGB 0...255 (blue = low, red = high).
    public static func jet(_ v: Float) -> (UInt8, UInt8, UInt8) {
        func c(_ x: Float) -> UInt8 { UInt8((max(0, min(1, x)) * 255).rounded()) }
        let t = max(0, min(1, v))
        return (c(1.5 - abs(4 * t - 3)), c(1.5 - abs(4 * t - 2)), c(1.5 - abs(4 * t - 1)))
    }

    /// Blend the heatmap of `map` over RGBA pixels (width x height, 4 bytes each), in place.
    public static func blend(rgba: inout [UInt8], width: Int, height: Int, map: [Float], side: Int) {
        let heat = upsample(normalise(map), side: side, width: width, height: height)
        for i in 0..<(width * height) {
            let (r, g, b) = jet(heat[i])
            for (k, h) in [r, g, b].enumerated() {
                let p = Float(rgba[4 * i + k])
                rgba[4 * i + k] = UInt8(((1 - alpha) * p + alpha * Float(h)).rounded())
            }
        }
    }
}

/// The predicted label and its probability, from probabilities in manifest label order.
public func topLabel(probabilities: [Float], labels: [String]) -> (label: String, index: Int, probability: Float) {
    let index = probabilities.indices.max { probabilities[$0] < probabilities[$1] } ?? 0
    return (labels[index], index, probabilities[index])
}
