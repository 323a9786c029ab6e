"""`ModelSpec`: written into checkpoints, read back (old checkpoints too), and the one place that
chooses between the zoo builder and `build_model`.

``tests/data/checkpoint_0.1.0_mask_rcnn_mobilenet.pt`` (250 kB) is the ``best.pt`` of a real
`detect train` run of detect 0.1.0, before `ModelSpec` existed: `_write_fixture_run` below is
how it was made (a Mask R-CNN on MobileNetV3 cut after its stride-8 stage, 16 FPN channels: 52k
parameters, trained one epoch on 4 synthetic images). Keep it as it is: every checkpoint
today's code wrote must go on loading.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from detect.errors import CheckpointError
from detect.models.checkpoint import (
    CHECKPOINT_FORMAT,
    check_resume_spec,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from detect.models.spec import REQUIRED, ModelSpec

FIXTURE = Path(__file__).parent / "data" / "checkpoint_0.1.0_mask_rcnn_mobilenet.pt"
# The fixture's model_spec exactly as detect train 0.1.0 wrote it (the resolved sizes: image
# sizes and anchor scale first, then the config's `sizes`).
FIXTURE_SPEC = {
    "arch": "mask_rcnn",
    "backbone": "mobilenet_v3_fpn",
    "roi": "align",
    "num_classes": 6,
    "sizes": {
        "min_size": 64,
        "max_size": 96,
        "anchor_scale": 0.08,
        "returned_layers": [1, 2],
        "box_batch_size_per_image": 32,
        "fpn_channels": 16,
        "representation_size": 16,
        "rpn_post_nms_top_n_test": 50,
        "rpn_post_nms_top_n_train": 100,
        "rpn_pre_nms_top_n_test": 100,
        "rpn_pre_nms_top_n_train": 100,
    },
}
# What `detect export --pretrained` made before ModelSpec (no `sizes`: the builder's own).
PRETRAINED_SPEC = {
    "arch": "faster_rcnn",
    "backbone": "mobilenet_v3_large_320_fpn",
    "roi": "align",
    "zoo": "fasterrcnn_mobilenet_v3_large_320_fpn",
    "num_classes": 81,
}


def _write_fixture_run(root: Path) -> Path:
    """How the fixture was made (not run by the tests): its ``best.pt`` was copied to FIXTURE."""
    import yaml
    from helpers import run_detect

    from detect.data.synth import write_dataset

    gt = write_dataset(root / "data", images=4, seed=5, size=96)
    sizes = {k: v for k, v in FIXTURE_SPEC["sizes"].items() if k != "anchor_scale"}
    config = {
        "arch": "mask_rcnn", "backbone": "mobilenet_v3_fpn", "roi": "align",
        "data": str(gt), "val": str(gt), "epochs": 1, "batch": 4, "optimizer": "adamw",
        "lr": 0.001, "warmup": 1, "augment": False, "workers": 0, "seed": 0,
        "min_size": sizes.pop("min_size"), "max_size": sizes.pop("max_size"), "sizes": sizes,
        "out": str(root / "run"),
    }  # fmt: skip
    (root / "train.yaml").write_text(yaml.safe_dump(config))
    result = run_detect("train", "--config", str(root / "train.yaml"))
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "run" / "best.pt"


def test_fixture_has_the_layout_detect_train_writes() -> None:
    ckpt = load_checkpoint(FIXTURE)
    assert list(ckpt) == [
        "format", "version", "model_spec", "labels", "category_ids", "config", "model", "epoch",
        "metrics",
    ]  # fmt: skip
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["version"] == "0.1.0"
    assert ckpt["model_spec"] == FIXTURE_SPEC
    assert FIXTURE.stat().st_size < 300_000


def test_fixture_loads_and_runs_in_eval_mode() -> None:
    ckpt = load_checkpoint(FIXTURE)
    model = model_from_checkpoint(ckpt)
    assert not model.training
    state = model.state_dict()
    assert state.keys() == ckpt["model"].keys()
    assert all(torch.equal(state[k], v) for k, v in ckpt["model"].items())
    torch.manual_seed(0)
    with torch.no_grad():
        (out,) = model([torch.rand(3, 72, 90)])
    assert set(out) == {"boxes", "labels", "scores", "masks"}
    n = len(out["scores"])
    assert out["boxes"].shape == (n, 4) and out["masks"].shape == (n, 1, 72, 90)
    assert ((out["labels"] >= 1) & (out["labels"] <= 5)).all()


def test_fixture_spec_round_trips_to_the_same_dict() -> None:
    spec = ModelSpec.from_checkpoint(load_checkpoint(FIXTURE))
    assert spec == ModelSpec(
        "mask_rcnn", "mobilenet_v3_fpn", "align", 6, FIXTURE_SPEC["sizes"], zoo=None
    )
    again = spec.as_dict()
    assert again == FIXTURE_SPEC and list(again) == list(FIXTURE_SPEC)  # no `zoo` key
    assert list(again["sizes"]) == list(FIXTURE_SPEC["sizes"])
    assert ModelSpec.from_dict(again) == spec
    assert hash(spec) == hash(ModelSpec.from_dict(again))


def test_a_checkpoint_written_with_as_dict_reloads(tmp_path: Path) -> None:
    old = load_checkpoint(FIXTURE)
    spec = ModelSpec.from_dict(old["model_spec"])
    path = tmp_path / "new.pt"
    save_checkpoint({**old, "model_spec": spec.as_dict()}, path)
    new = load_checkpoint(path)
    assert new["model_spec"] == old["model_spec"]
    model_from_checkpoint(new)


def test_zoo_spec_round_trips_with_zoo_last() -> None:
    spec = ModelSpec(
        "faster_rcnn",
        "mobilenet_v3_large_320_fpn",
        "align",
        6,
        {"min_size": 96, "max_size": 128, "trainable_layers": 3},
        zoo="fasterrcnn_mobilenet_v3_large_320_fpn",
    )
    d = spec.as_dict()
    assert list(d) == ["arch", "backbone", "roi", "num_classes", "sizes", "zoo"]
    assert ModelSpec.from_dict(d) == spec


def test_sizes_are_copied_not_shared() -> None:
    sizes = {"min_size": 64}
    spec = ModelSpec("faster_rcnn", "resnet18_fpn", "align", 3, sizes)
    sizes["min_size"] = 1
    spec.as_dict()["sizes"]["min_size"] = 2
    assert spec.sizes == {"min_size": 64}


def test_export_pretrained_spec_without_sizes_reads() -> None:
    spec = ModelSpec.from_dict(PRETRAINED_SPEC)
    assert spec.sizes == {} and spec.zoo == "fasterrcnn_mobilenet_v3_large_320_fpn"
    assert spec.num_classes == 81 and spec.arch == "faster_rcnn"
    assert spec.as_dict() == {**PRETRAINED_SPEC, "sizes": {}}


@pytest.mark.parametrize("key", REQUIRED)
def test_a_missing_key_is_a_checkpoint_error_naming_it(key: str) -> None:
    bad = {k: v for k, v in FIXTURE_SPEC.items() if k != key}
    with pytest.raises(CheckpointError, match=f"model_spec has no '{key}'") as info:
        ModelSpec.from_dict(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (["faster_rcnn"], "model_spec is a list, not a dict"),
        ({**FIXTURE_SPEC, "sizes": [64, 96]}, "'sizes' is a list, not a dict"),
        ({**FIXTURE_SPEC, "num_classes": "six"}, "'num_classes' is 'six', not a number"),
    ],
)
def test_a_malformed_spec_is_a_checkpoint_error(spec: Any, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        ModelSpec.from_dict(spec)


def test_load_checkpoint_names_the_file_of_a_bad_spec(tmp_path: Path) -> None:
    ckpt = load_checkpoint(FIXTURE)
    spec = {k: v for k, v in ckpt["model_spec"].items() if k != "num_classes"}
    save_checkpoint({**ckpt, "model_spec": spec}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad\.pt: model_spec has no 'num_classes'"):
        load_checkpoint(tmp_path / "bad.pt")
    save_checkpoint({k: v for k, v in ckpt.items() if k != "model_spec"}, tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match=r"none\.pt has no model_spec"):
        load_checkpoint(tmp_path / "none.pt")


def test_check_resume_spec_compares_the_model_not_the_sizes() -> None:
    ckpt = load_checkpoint(FIXTURE)
    same = ModelSpec("mask_rcnn", "mobilenet_v3_fpn", "align", 6, {"min_size": 128})
    check_resume_spec(ckpt, same, FIXTURE)
    other = ModelSpec("faster_rcnn", "mobilenet_v3_fpn", "align", 6)
    with pytest.raises(CheckpointError, match="cannot resume from .*faster_rcnn"):
        check_resume_spec(ckpt, other, FIXTURE)


def _record(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(
        f"{module}.{name}", lambda *args, **kwargs: calls.append((args, kwargs)) or "model"
    )
    return calls


def test_build_chooses_the_zoo_builder_when_zoo_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = _record(monkeypatch, "detect.models.zoo", "build_zoo_model")
    plain = _record(monkeypatch, "detect.models.build", "build_model")
    spec = ModelSpec.from_dict({**PRETRAINED_SPEC, "sizes": {"trainable_layers": 3}})
    assert spec.build() == "model"
    assert spec.build("COCO_V1") == "model"
    assert spec.build("DEFAULT", coco_classes=True) == "model"
    name = PRETRAINED_SPEC["zoo"]
    assert zoo == [
        ((name, None, 81), {"trainable_layers": 3}),
        ((name, "COCO_V1", 81), {"trainable_layers": 3}),
        ((name, "DEFAULT", None), {"trainable_layers": 3}),
    ]
    assert plain == []
    with pytest.raises(ValueError, match="backbone_weights"):
        spec.build(backbone_weights="IMAGENET1K_V1")


def test_build_chooses_build_model_without_zoo(monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = _record(monkeypatch, "detect.models.zoo", "build_zoo_model")
    plain = _record(monkeypatch, "detect.models.build", "build_model")
    spec = ModelSpec.from_dict(FIXTURE_SPEC)
    spec.build()
    spec.build("COCO_V1", "IMAGENET1K_V1")
    sizes = FIXTURE_SPEC["sizes"]
    assert plain == [
        (
            ("mask_rcnn", "mobilenet_v3_fpn", 6, "align"),
            {"weights": None, "backbone_weights": None, **sizes},
        ),
        (
            ("mask_rcnn", "mobilenet_v3_fpn", 6, "align"),
            {"weights": "COCO_V1", "backbone_weights": "IMAGENET1K_V1", **sizes},
        ),
    ]
    assert zoo == []
    with pytest.raises(ValueError, match="zoo models only"):
        spec.build(coco_classes=True)


def test_importing_the_spec_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import detect.models.spec\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')]\n"
        "assert not loaded, loaded[:5]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
