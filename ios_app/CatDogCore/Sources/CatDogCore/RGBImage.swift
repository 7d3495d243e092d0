import Foundation

/// An RGB photo, 8 bits a channel, rows top to bottom without padding: pixel (x, y) starts at
/// `3 * (y * width + x)`. What catdog decodes a photo to (`catdog.data.open_rgb`).
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0 && pixels.count == 3 * width * height,
                     "RGBImage \(width)x\(height) needs \(3 * width * height) bytes, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The (r, g, b) of pixel (x, y).
    public subscript(x: Int, y: Int) -> [UInt8] {
        let i = 3 * (y * width + x)
        return Array(pixels[i..<(i + 3)])
    }

    /// From RGBA bytes (4 a pixel, rows of `bytesPerRow`, default 4 * width), alpha composited over
    /// white as catdog does. `premultiplied`: the colours are already multiplied by alpha (what a
    /// Core Graphics bitmap context holds); else they are straight.
    public init(rgba: [UInt8], width: Int, height: Int, bytesPerRow: Int? = nil, premultiplied: Bool) {
        let stride = bytesPerRow ?? 4 * width
        precondition(stride >= 4 * width && rgba.count >= stride * (height - 1) + 4 * width, "RGBA buffer too small")
        var out = [UInt8](repeating: 0, count: 3 * width * height)
        for y in 0..<height {
            for x in 0..<width {
                let i = y * stride + 4 * x, o = 3 * (y * width + x)
                let a = Int(rgba[i + 3])
                for c in 0..<3 {
                    let v = Int(rgba[i + c])
                    // over white: c * a / 255 + 255 - a; Pillow's paste rounds c * a + 255 * (255 - a) by /255
                    out[o + c] = premultiplied ? UInt8(min(255, v + 255 - a)) : UInt8(div255(v * a + 255 * (255 - a)))
                }
            }
        }
        self.init(width: width, height: height, pixels: out)
    }

    /// RGBA bytes, alpha 255 (for a CGImage: `CGImageAlphaInfo.noneSkipLast` or `.premultipliedLast`).
    public func rgba() -> [UInt8] {
        var out = [UInt8](repeating: 255, count: 4 * width * height)
        for i in 0..<(width * height) {
            out[4 * i] = pixels[3 * i]; out[4 * i + 1] = pixels[3 * i + 1]; out[4 * i + 2] = pixels[3 * i + 2]
        }
        return out
    }

    /// BGRA bytes, alpha 255, rows of `bytesPerRow` (≥ 4 * width; the padding is zero): the layout of a
    /// `kCVPixelFormatType_32BGRA` CVPixelBuffer, which Core ML's image input takes.
    public func bgra(bytesPerRow: Int) -> [UInt8] {
        precondition(bytesPerRow >= 4 * width, "bytesPerRow \(bytesPerRow) < 4 * width \(4 * width)")
        var out = [UInt8](repeating: 0, count: bytesPerRow * height)
        for y in 0..<height {
            for x in 0..<width {
                let i = 3 * (y * width + x), o = y * bytesPerRow + 4 * x
                out[o] = pixels[i + 2]; out[o + 1] = pixels[i + 1]; out[o + 2] = pixels[i]; out[o + 3] = 255
            }
        }
        return out
    }
}

/// round(v / 255) for 0 <= v <= 255 * 255, exactly as Pillow's DIV255.
@inline(__always) func div255(_ v: Int) -> Int {
    let t = v + 128
    return ((t >> 8) + t) >> 8
}
