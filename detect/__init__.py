"""detect: object detection and instance segmentation, from training to gRPC serving."""

__version__ = "0.1.0"
