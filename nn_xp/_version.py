"""The package version, in one place: `nx.__version__`, model files and ONNX graphs read it."""

__version__ = "0.1.0"
