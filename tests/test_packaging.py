"""The Dockerfile and the Kubernetes manifests, checked by reading them (no Docker engine or
cluster here): what they copy exists, what they run exists, and their ports and probes agree."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import yaml
from helpers import run_detect
from prometheus_client import generate_latest

from detect.cli import build_parser
from server.metrics import ServerMetrics

ROOT = Path(__file__).resolve().parents[1]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def _one(instruction: str) -> str:
    found = [rest for word, rest in _instructions() if word == instruction]
    assert len(found) == 1, f"{instruction}: {found}"
    return found[0]


def test_dockerfile_copies_only_paths_that_exist_and_dockerignore_lets_them_in() -> None:
    copies = [rest for word, rest in _instructions() if word == "COPY"]
    assert copies
    sources = [s for rest in copies for s in shlex.split(rest)[:-1]]
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert set(sources) <= allowed, f"{set(sources) - allowed} are excluded by .dockerignore"


def test_dockerfile_installs_the_gpu_extra_without_torch_as_a_non_root_user() -> None:
    base = _one("FROM")
    assert base.startswith("nvidia/cuda:") and "cudnn" in base and "runtime" in base
    runs = " ".join(rest for word, rest in _instructions() if word == "RUN")
    assert _one("ARG") == "EXTRAS=gpu" and 'pip install ".[${EXTRAS}]"' in runs  # gpu by default
    assert "find_spec('torch') is None" in runs  # whatever the extras
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    gpu = extras["optional-dependencies"]["gpu"]
    assert any(d.startswith("onnxruntime-gpu") for d in gpu)
    assert not any(re.match(r"(torch|torchvision|onnxruntime)\b(?!-)", d) for d in gpu), gpu
    serve = {re.split(r"[=<>]", d)[0] for d in extras["optional-dependencies"]["serve"]}
    assert serve - {"onnxruntime"} <= {re.split(r"[=<>]", d)[0] for d in gpu}
    user = _one("USER")
    assert user not in ("root", "0")


def test_dockerfile_entrypoint_healthcheck_volume_and_ports() -> None:
    assert json.loads(_one("ENTRYPOINT")) == ["detect", "serve"]
    cmd = json.loads(_one("CMD"))
    assert "--model" in cmd and cmd[cmd.index("--model") + 1].startswith("/models/")
    assert json.loads(_one("VOLUME")) == ["/models"]
    assert set(_one("EXPOSE").split()) == {"50051", "9100"}
    assert cmd[cmd.index("--port") + 1] == "50051"
    assert cmd[cmd.index("--metrics-port") + 1] == "9100"
    health = _one("HEALTHCHECK")
    command = json.loads(health.split("CMD", 1)[1])
    assert command[:2] == ["detect", "client"] and "--health" in command
    assert command[command.index("--server") + 1].endswith(":50051")
    # the health check's flags and the served flags exist in this CLI
    assert run_detect(*command[1:2], "--help").stdout.count("--health") >= 1
    help_text = run_detect("serve", "--help").stdout
    for flag in [c for c in cmd if c.startswith("--")]:
        assert flag in help_text, flag


def test_kubernetes_deployment_probes_ports_and_volume_agree() -> None:
    deployment = yaml.safe_load((ROOT / "deploy/deployment.yaml").read_text())
    assert deployment["kind"] == "Deployment"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    assert int(args["port"]) == ports["grpc"] and int(args["metrics-port"]) == ports["metrics"]
    assert args["host"] == "0.0.0.0" and args["model"].startswith("/models/")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], probe
    assert container["readinessProbe"]["grpc"]["service"] == "detect.v1.Detector"
    assert pod["terminationGracePeriodSeconds"] > float(args["grace"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["models"] == "/models"
    assert pod["securityContext"]["runAsNonRoot"] is True
    help_text = run_detect("serve", "--help").stdout
    for flag in args:
        assert f"--{flag}" in help_text, flag

    services = list(yaml.safe_load_all((ROOT / "deploy/service.yaml").read_text()))
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for service in services:
        assert service["kind"] == "Service"
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports


KUBERNETES = "1.33"  # the API version the manifests are checked against


def test_every_kubernetes_manifest_is_valid_against_the_openapi_schemas() -> None:
    import kubernetes_validate

    checked = []
    for path in sorted((ROOT / "deploy").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["apiVersion"].startswith("ray.io/"):  # KubeRay's CRD: no schema here
                continue
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)  # unknown fields too
            checked.append(doc["kind"])
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= set(
        checked
    )


def test_fleet_manifests_drain_scale_on_the_queue_wait_and_keep_one_up() -> None:
    deployment = yaml.safe_load((ROOT / "deploy/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    wait = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > wait + float(args["grace"])
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = yaml.safe_load((ROOT / "deploy/pdb.yaml").read_text())
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] < deployment["spec"]["replicas"]
    hpa = yaml.safe_load((ROOT / "deploy/hpa.yaml").read_text())
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    adapter = yaml.safe_load((ROOT / "deploy/prometheus-adapter.yaml").read_text())
    (rule,) = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    assert rule["name"]["as"] == metric["pods"]["metric"]["name"]
    served = ServerMetrics()  # the series the rule reads, as the server exports them
    served.stage.labels(stage="queue", model="m", version="1").observe(0.01)
    exported = generate_latest(served.registry).decode()
    assert 'detect_stage_seconds_count{model="m",stage="queue",version="1"}' in exported
    assert "detect_stage_seconds_sum" in rule["metricsQuery"]


def test_rayjob_runs_detect_eval_on_the_ray_image_with_the_claims_the_deployment_uses() -> None:
    job = yaml.safe_load((ROOT / "deploy/rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    entrypoint = shlex.split(job["spec"]["entrypoint"])
    assert entrypoint[:2] == ["detect", "eval"]
    args = build_parser(["eval"]).parse_args(entrypoint[1:])  # flags of this CLI, as written
    assert (args.ray, args.device, args.gpus_per_worker) == ("auto", "cuda", 1.0)
    cluster = job["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    claims = set()
    for group in groups:
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"].startswith("detect-ray")
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        for volume in pod["volumes"]:
            claims.add(volume["persistentVolumeClaim"]["claimName"])
            assert volume["name"] in mounts
    assert "detect-models" in claims  # the serving Deployment's models
    (worker,) = cluster["workerGroupSpecs"]
    assert worker["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    assert "--build-arg EXTRAS=gpu,ray,eval -t detect-ray" in (ROOT / "Dockerfile").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for extra in ("ray", "eval"):  # the Ray image stays without torch, as the serving one
        needs = extras["optional-dependencies"][extra]
        assert not any(re.match(r"(torch|torchvision)\b", d) for d in needs), needs
