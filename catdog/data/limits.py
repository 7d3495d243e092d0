"""Limits on input files, in a module of their own so the CLI reads them without numpy or Pillow."""

# Pixel limit (width x height) above which a file is refused as a possible decompression bomb.
MAX_PIXELS = 50_000_000

# The web server's default (`catdog serve --max-pixels`): lower, as each of its threads may hold a
# photo at once (catdog.serve's PixelBudget bounds the decoded pixels in flight to twice this).
MAX_UPLOAD_PIXELS = 40_000_000

# Scans (start-of-scan markers) above which a JPEG is refused as a decoding bomb. A progressive
# JPEG is decoded scan by scan, each scan visiting every block of its components, so a file of
# many near-empty scans costs minutes of CPU in a few kilobytes (libjpeg-turbo's LJT-01-003).
# Encoders write 1-4 scans (baseline) or about 10 (progressive); 100 bounds the worst file at the
# pixel limit to a few seconds (README: Faults and hostile input).
MAX_JPEG_SCANS = 100

# File extension -> the Pillow format its content must have (the photos catdog reads; an output
# named like one is refused, so a CSV is never written over a photo).
EXTENSION_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".webp": "WEBP",
}
