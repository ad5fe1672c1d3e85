"""splatforge: photos or a video in, a checked, trained and viewable 3D Gaussian Splatting scene out."""

__version__ = "0.1.0"
