"""Torch-free inference runtime (ONNX Runtime, NumPy, OpenCV, shapely)."""
