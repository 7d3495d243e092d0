import Foundation

/// Class Activation Map maths, as `catdog cam` does it (`catdog.cam.overlay`): take the predicted
/// class's G x G map (G = `Manifest.camSide`: 7 for a 224 model, 9 for 288), min-max normalise,
/// upsample bilinearly to the photo, colour with jet, blend at 45 %.
public enum CAM {
    public static let alpha: Float = 0.45

    public struct ShapeError: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// One class's G x G map (row-major) out of the `cam` output, read by its shape [1, G, G, C]
    /// and element strides (default: contiguous NHWC). A Core ML MLMultiArray may pad its rows, so
    /// pass its `strides`, or convert it with `MLShapedArray<Float>(converting:)` first.
    public static func channel(_ values: [Float], shape: [Int], strides: [Int]? = nil, index: Int) throws -> [Float] {
        guard shape.count == 4, shape[0] == 1, shape[1] > 0, shape[1] == shape[2], (0..<shape[3]).contains(index) else {
            throw ShapeError(description: "cam shape \(shape) is not [1, G, G, C] with class \(index) < C")
        }
        let (g, c) = (shape[1], shape[3])
        let st = strides ?? [g * g * c, g * c, c, 1]
        guard st.count == 4 else { throw ShapeError(description: "cam strides \(st) are not 4 numbers") }
        let last = (g - 1) * st[1] + (g - 1) * st[2] + index * st[3]
        guard last < values.count else {
            throw ShapeError(description: "cam has \(values.count) values, too few for shape \(shape) strides \(st)")
        }
        var out = [Float](repeating: 0, count: g * g)
        for i in 0..<g { for j in 0..<g { out[i * g + j] = values[i * st[1] + j * st[2] + index * st[3]] } }
        return out
    }

    /// Min-max scale to 0...1; a constant map becomes all zeros. The range is compared in Double, as
    /// catdog.cam.normalise does: in Float, 1e-12 rounds to the float spread of [0, 1e-12] itself.
    public static func normalise(_ map: [Float]) -> [Float] {
        guard let lo = map.min(), let hi = map.max(), Double(hi) - Double(lo) >= 1e-12 else { return map.map { _ in 0 } }
        return map.map { ($0 - lo) / (hi - lo) }
    }

    /// Bilinear upsampling of a side x side map to width x height (pixel centres aligned, edges
    /// clamped: OpenCV's INTER_LINEAR).
    public static func upsample(_ map: [Float], side: Int, width: Int, height: Int) -> [Float] {
        precondition(map.count == side * side, "map has \(map.count) values, not \(side) x \(side)")
        var out = [Float](repeating: 0, count: width * height)
        // OpenCV's scale: the reciprocal of the output/input ratio, in double
        let sx = 1 / (Double(width) / Double(side)), sy = 1 / (Double(height) / Double(side))
        let xs = (0..<width).map { axis(Float((Double($0) + 0.5) * sx - 0.5), side) }
        for y in 0..<height {
            let (y0, y1, wy) = axis(Float((Double(y) + 0.5) * sy - 0.5), side)
            for x in 0..<width {
                let (x0, x1, wx) = xs[x]
                let top = map[y0 * side + x0] * (1 - wx) + map[y0 * side + x1] * wx
                let bottom = map[y1 * side + x0] * (1 - wx) + map[y1 * side + x1] * wx
                out[y * width + x] = top * (1 - wy) + bottom * wy
            }
        }
        return out
    }

    /// Source indices and weight of one output coordinate `f` (OpenCV: floor, clamp at both edges).
    private static func axis(_ f: Float, _ side: Int) -> (Int, Int, Float) {
        var i = Int(f.rounded(.down)), w = f - Float(i)
        if i < 0 { i = 0; w = 0 }
        if i >= side - 1 { i = side - 1; w = 0 }
        return (i, min(i + 1, side - 1), w)
    }

    /// Jet colour of a 0...1 value as RGB 0...255 (blue = low, red = high). The value is first
    /// rounded to one of 256 levels, as catdog does before OpenCV's COLORMAP_JET lookup; the formula
    /// matches that table to within 1 of 255.
    public static func jet(_ v: Float) -> [UInt8] {
        let t = (max(0, min(1, v)) * 255).rounded(.toNearestOrEven) / 255
        func c(_ x: Float) -> UInt8 { UInt8((max(0, min(1, x)) * 255).rounded(.toNearestOrEven)) }
        return [c(1.5 - abs(4 * t - 3)), c(1.5 - abs(4 * t - 2)), c(1.5 - abs(4 * t - 1))]
    }

    /// The photo with the jet heatmap of a side x side CAM map blended over it:
    /// (1 - alpha) * photo + alpha * jet(upsample(normalise(map))), rounded.
    public static func overlay(_ photo: RGBImage, map: [Float], side: Int, alpha: Float = CAM.alpha) -> RGBImage {
        let heat = upsample(normalise(map), side: side, width: photo.width, height: photo.height)
        var out = photo.pixels
        for i in 0..<(photo.width * photo.height) {
            let colour = jet(heat[i])
            for k in 0..<3 {
                let blended = (1 - alpha) * Float(out[3 * i + k]) + alpha * Float(colour[k])
                out[3 * i + k] = UInt8(max(0, min(255, blended.rounded(.toNearestOrEven))))
            }
        }
        return RGBImage(width: photo.width, height: photo.height, pixels: out)
    }
}

/// Size of the overlay shown for a width x height photo: the photo shrunk to fit maxSide x maxSide,
/// aspect ratio kept, never enlarged (Pillow's `thumbnail` sizing, as `catdog cam` shrinks photos).
public func displaySize(width: Int, height: Int, maxSide: Int = 640) -> (width: Int, height: Int) {
    if maxSide >= width && maxSide >= height { return (width, height) }
    let aspect = Double(width) / Double(height), side = Double(maxSide)
    // of floor and ceil, the one whose aspect ratio is closer (floor on a tie), at least 1
    func closer(_ v: Double, _ error: (Int) -> Double) -> Int {
        let lo = Int(v.rounded(.down)), hi = Int(v.rounded(.up))
        return max(error(hi) < error(lo) ? hi : lo, 1)
    }
    if 1 >= aspect {  // maxSide / maxSide >= aspect: height is the long side
        return (closer(side * aspect) { abs(aspect - Double($0) / side) }, maxSide)
    }
    return (maxSide, closer(side / aspect) { $0 == 0 ? 0 : abs(aspect - side / Double($0)) })
}
