"""Limits on input files, in a module of their own so the CLI reads them without numpy or Pillow."""

# Pixel limit (width x height) above which a file is refused as a possible decompression bomb.
MAX_PIXELS = 50_000_000
