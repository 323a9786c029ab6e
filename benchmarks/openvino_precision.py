"""Box/mask AP and speed of one exported model on OpenVINO in f32 and in the CPU plugin's
default precision (bf16 on CPUs without native bf16, as this project's), same images.

    python benchmarks/openvino_precision.py --model models/demo.onnx --gt DATA/annotations.json

The f32 run is `detect.runtime.engines.OpenVinoEngine` as served (``EXECUTION_MODE_HINT``
ACCURACY); the other compiles the same file with OpenVINO's defaults. Both go through
`detect eval`'s own path (`predict_with`, every detection, masks traced exactly); ms per image
includes decoding and postprocessing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import openvino as ov

from detect.evaluate import EvalConfig, predict_with
from detect.metrics.coco import load_gt
from detect.metrics.evaluator import score
from detect.runtime.detector import Detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--gt", type=Path, required=True, help="COCO JSON beside its images")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    gt = load_gt(args.gt)
    images = json.loads(args.gt.read_text())["images"]
    paths = {int(i["id"]): args.gt.parent / i["file_name"] for i in images}
    for mode in ("f32", "default"):
        detector = Detector(args.model, device="cpu", backend="openvino", threads=args.threads)
        if mode == "default":
            engine = detector.engine
            core = ov.Core()
            config = {"INFERENCE_NUM_THREADS": args.threads}
            engine.compiled = core.compile_model(core.read_model(str(args.model)), "CPU", config)
            engine._outputs = [(o, o.get_any_name()) for o in engine.compiled.outputs]
        config = EvalConfig(gt=args.gt, out=Path("runs/openvino-precision"), model=args.model)
        predicted = predict_with(detector, config, paths, gt, str(args.model))
        types = ["bbox", "segm"] if detector.info.has_masks else ["bbox"]
        metrics = score(gt, predicted.evaluator.results, types, detector.info.score_threshold)
        figures = "  ".join(
            f"{t} AP {metrics[t]['AP']:.4f} AP50 {metrics[t]['AP50']:.4f}" for t in types
        )
        ms = 1000 * predicted.seconds / predicted.images
        print(f"{mode:<8} {figures}  {ms:.1f} ms/image", flush=True)


if __name__ == "__main__":
    main()
