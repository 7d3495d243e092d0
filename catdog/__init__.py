"""catdog: cats-vs-dogs on ImageNet features, its CAM model, and phone-ready exports."""

__version__ = "0.1.0"
