"""Generated Python stubs of the gRPC API `proto/detect/v1/detector.proto` (package detect.v1).

Regenerate with `make proto` after editing the proto; `tests/test_proto.py` fails when these
files are stale. Do not edit them by hand.
"""
