"""`detect export`: a `detect train` checkpoint (or a zoo model) -> ``NAME.onnx`` + ``NAME.json``
model card.

The graph (see `detect.runtime.model_card` for its contract) takes one ``(H, W, 3) uint8`` RGB
image of any size and does everything torchvision's ``GeneralizedRCNN.forward`` does in eval mode
except pasting masks: mask models return each detection's low-resolution ``(M, M)`` mask
probabilities, and the runtime pastes only the detections that survive its thresholds
(`detect.runtime.masks`). Exported with the TorchScript tracer (``dynamo=False``), opset 17 by
default; ``--fp16`` converts weights and activations to float16, ``--int8`` quantizes
(`detect.quantize`) and keeps the result only when its AP cost is within bounds.

Modules: `config` (`ExportConfig`, the settings), `source` (the checkpoint or zoo model),
`trace` (the traced modules and the ``batched_nms`` patch), `onnx_file` (float16, metadata),
`card` (the model card), `int8` (its AP gate), `verify` (the parity check), `run` (`export`).
Nothing is imported here: `detect export` checks its settings (`config.check_export`) before
it loads torch.
"""
