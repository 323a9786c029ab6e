#!/usr/bin/env bash
# benchmarks/gpu_speed.py on the offline GPU device machine (../shared/docs/gpu-machine.md).
#
# Here, once: ../shared/tools/ort-gpu-wheel.sh   (onnxruntime-gpu in .device-ort/partNN chunks
# and the small wheels the device image lacks in .whl/, both ignored by git). The wheel is larger
# than one transfer, so the chunks go over in calls of the device tool carrying a few each (they
# gather in /root/w while the machine stays warm); the last call carries .whl and runs
#   bash benchmarks/gpu_device.sh [gpu_speed.py flags]
# which installs everything into /tmp/site and prints the table (also in $OUT/gpu_speed.log).
set -euo pipefail
mkdir -p /root/w
if compgen -G ".device-ort/part*" > /dev/null; then cp .device-ort/part* /root/w/; fi
wheel=/root/w/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
cat /root/w/part* > "$wheel"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$wheel" .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD:$PWD/benchmarks" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -m pip list 2>/dev/null | grep -iE "^(torch|torchvision|onnx|onnxruntime|numpy|opencv)" || true
timeout 540 python3 benchmarks/gpu_speed.py "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_speed.log"
