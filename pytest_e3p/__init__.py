"""pytest-e3p: the E3P-ViT energy-efficiency pipeline as a pytest plugin."""

__version__ = "0.1.0"
