import Foundation

/// EXIF orientation (TIFF tag 274): how the stored pixels must be turned to stand upright. The raw
/// values are the EXIF numbers, which are also `CGImagePropertyOrientation`'s; the case names are
/// `UIImage.Orientation`'s.
public enum Orientation: Int, Sendable, CaseIterable {
    case up = 1, upMirrored, down, downMirrored, leftMirrored, right, rightMirrored, left

    /// From an EXIF value; anything outside 1...8 counts as `up`, as Pillow treats it.
    public init(exif: Int) { self = Orientation(rawValue: exif) ?? .up }

    /// A camera frame that must be turned `degrees` clockwise to stand upright (CameraX's
    /// `rotationDegrees`, AVFoundation's rotation angle).
    public init(clockwiseDegrees degrees: Int) {
        switch ((degrees % 360) + 360) % 360 {
        case 90: self = .right
        case 180: self = .down
        case 270: self = .left
        default: self = .up
        }
    }

    /// Whether upright width and height are the stored height and width.
    public var swapsSides: Bool { rawValue >= 5 }
}

extension RGBImage {
    /// The photo turned upright, as catdog's decoder does (`PIL.ImageOps.exif_transpose`).
    public func upright(_ orientation: Orientation) -> RGBImage {
        if orientation == .up { return self }
        let (w, h) = (width, height)
        let (ow, oh) = orientation.swapsSides ? (h, w) : (w, h)
        var out = [UInt8](repeating: 0, count: pixels.count)
        for y in 0..<oh {
            for x in 0..<ow {
                // the stored pixel that lands at (x, y) of the upright image
                let (sx, sy): (Int, Int)
                switch orientation {
                case .up: (sx, sy) = (x, y)
                case .upMirrored: (sx, sy) = (w - 1 - x, y)
                case .down: (sx, sy) = (w - 1 - x, h - 1 - y)
                case .downMirrored: (sx, sy) = (x, h - 1 - y)
                case .leftMirrored: (sx, sy) = (y, x)
                case .right: (sx, sy) = (y, h - 1 - x)
                case .rightMirrored: (sx, sy) = (w - 1 - y, h - 1 - x)
                case .left: (sx, sy) = (w - 1 - y, x)
                }
                let i = 3 * (sy * w + sx), o = 3 * (y * ow + x)
                out[o] = pixels[i]; out[o + 1] = pixels[i + 1]; out[o + 2] = pixels[i + 2]
            }
        }
        return RGBImage(width: ow, height: oh, pixels: out)
    }
}
