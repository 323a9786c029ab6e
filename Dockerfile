# GPU serving image: `detect serve` on ONNX Runtime with CUDA 13 + cuDNN 9. No torch.
#
#   docker build -t detect-serve .
#   docker run --gpus all -p 50051:50051 -p 9100:9100 -v "$PWD/models:/models:ro" detect-serve \
#       --model /models/demo.onnx --host 0.0.0.0
#
# The model (NAME.onnx with its card NAME.json) is mounted at /models, never baked in.
# By default only the `gpu` extra is installed: it is the `serve` extra with onnxruntime-gpu in
# place of onnxruntime (both together would fight over the same `onnxruntime` module). The image
# of a Ray cluster's nodes (deploy/rayjob.yaml) adds the `ray` and `eval` extras:
#
#   docker build --build-arg EXTRAS=gpu,ray,eval -t detect-ray .
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
ARG EXTRAS=gpu

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# wget: KubeRay's health probes of a Ray node run it
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv wget \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/detect
ENV PATH=/opt/detect/bin:$PATH

WORKDIR /build
COPY pyproject.toml README.md ./
COPY detect ./detect
COPY server ./server
RUN pip install ".[${EXTRAS}]" \
    && python -c "import importlib.util as u; assert u.find_spec('torch') is None" \
    && cd / && rm -rf /build

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin detect \
    && mkdir /models && chown detect /models
USER 10001
WORKDIR /home/detect
VOLUME ["/models"]
# 50051: gRPC (detect.v1.Detector, grpc.health.v1, reflection); 9100: Prometheus /metrics
EXPOSE 50051 9100

# grpc.health.v1 via the client; adjust the address (and add --ca for TLS) if you change them.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["detect", "client", "--server", "127.0.0.1:50051", "--health", "--timeout", "4"]

ENTRYPOINT ["detect", "serve"]
CMD ["--model", "/models/model.onnx", "--host", "0.0.0.0", "--port", "50051", "--metrics-port", "9100"]
