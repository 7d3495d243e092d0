import Foundation

/// Pillow's `Image.resize(size, Image.BILINEAR)` (antialiased: the triangle filter widens with the
/// reduction factor), bit for bit: separable, coefficients in 22-bit fixed point, each pass rounded
/// to 8 bits, the passes in Pillow's order. It is how catdog squashes a photo to the model input
/// (`catdog.data.resize`), so the app feeds the model the pixels catdog would.
extension RGBImage {
    /// The whole photo squashed to side x side (aspect ratio not kept, nothing cropped): the model input.
    public func squashed(to side: Int) -> RGBImage { resized(width: side, height: side) }

    public func resized(width outWidth: Int, height outHeight: Int) -> RGBImage {
        precondition(outWidth > 0 && outHeight > 0, "cannot resize to \(outWidth)x\(outHeight)")
        // Pillow 13 (Resample.c) runs the vertical pass first where the height shrinks by more than
        // twice what the width does: a portrait photo, squashed, rounds differently in that order
        let shrink = height - outHeight
        if shrink > 0 && shrink > 2 * (width - outWidth) {
            return resizedVertically(to: outHeight).resizedHorizontally(to: outWidth)
        }
        return resizedHorizontally(to: outWidth).resizedVertically(to: outHeight)
    }

    func resizedHorizontally(to outWidth: Int) -> RGBImage {
        if outWidth == width { return self }
        let (bounds, weights, k) = Resample.coefficients(inSize: width, outSize: outWidth)
        var out = [UInt8](repeating: 0, count: 3 * outWidth * height)
        for y in 0..<height {
            for x in 0..<outWidth {
                let (lo, n) = bounds[x]
                for c in 0..<3 {
                    var sum = 1 << (Resample.precisionBits - 1)
                    for j in 0..<n { sum += Int(pixels[3 * (y * width + lo + j) + c]) * weights[x * k + j] }
                    out[3 * (y * outWidth + x) + c] = Resample.clip8(sum)
                }
            }
        }
        return RGBImage(width: outWidth, height: height, pixels: out)
    }

    func resizedVertically(to outHeight: Int) -> RGBImage {
        if outHeight == height { return self }
        let (bounds, weights, k) = Resample.coefficients(inSize: height, outSize: outHeight)
        var out = [UInt8](repeating: 0, count: 3 * width * outHeight)
        for y in 0..<outHeight {
            let (lo, n) = bounds[y]
            for x in 0..<width {
                for c in 0..<3 {
                    var sum = 1 << (Resample.precisionBits - 1)
                    for j in 0..<n { sum += Int(pixels[3 * ((lo + j) * width + x) + c]) * weights[y * k + j] }
                    out[3 * (y * width + x) + c] = Resample.clip8(sum)
                }
            }
        }
        return RGBImage(width: width, height: outHeight, pixels: out)
    }
}

/// Pillow's Resample.c for the bilinear filter (support 1).
enum Resample {
    static let precisionBits = 32 - 8 - 2

    /// For each output index: the first input index and how many inputs it reads, and the weights
    /// in fixed point (`k` per output index).
    static func coefficients(inSize: Int, outSize: Int) -> (bounds: [(Int, Int)], weights: [Int], k: Int) {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = 1.0 * filterScale
        let k = Int(support.rounded(.up)) * 2 + 1
        let inverse = 1.0 / filterScale  // Pillow multiplies by the reciprocal: same bits only so
        var bounds = [(Int, Int)](), weights = [Int](repeating: 0, count: outSize * k)
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            let lo = max(0, Int(center - support + 0.5))
            let n = min(inSize, Int(center + support + 0.5)) - lo
            var w = (0..<n).map { j in max(0, 1 - abs((Double(j + lo) - center + 0.5) * inverse)) }
            let total = w.reduce(0, +)
            if total != 0 { w = w.map { $0 / total } }
            for j in 0..<n {
                let scaled = w[j] * Double(1 << precisionBits)
                weights[xx * k + j] = scaled < 0 ? Int(-0.5 + scaled) : Int(0.5 + scaled)
            }
            bounds.append((lo, n))
        }
        return (bounds, weights, k)
    }

    static func clip8(_ v: Int) -> UInt8 {
        if v >= (1 << (precisionBits + 8)) { return 255 }
        if v <= 0 { return 0 }
        return UInt8(v >> precisionBits)
    }
}
