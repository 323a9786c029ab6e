"""Every declared setting (`detect.settings`) as the user meets it: its flag with its default in
``--help``, its file key, and a bad value's message in the user's own spelling."""

from __future__ import annotations

import argparse
import re
import typing
from collections.abc import Callable
from pathlib import Path

import pytest

from detect.bench import BenchConfig
from detect.cli import build_parser
from detect.client import ClientSettings
from detect.commands.flags import add_flags, from_flags, given_flags
from detect.config import Connection, DetectSettings, Engine
from detect.data.importers import ImportSettings
from detect.data.split import SplitSettings
from detect.data.synth import SynthSettings
from detect.demo import DemoConfig
from detect.errors import ConfigError
from detect.evaluate import EvalConfig
from detect.export.config import ExportConfig
from detect.parity import ParitySettings
from detect.predict import PredictConfig
from detect.settings import Declared, check, declared, from_mapping
from detect.train_config import TrainConfig
from detect.video.config import VideoConfig
from detect.watch.site import SiteSettings
from server.config import ServeConfig

# each class, the fixed values that make it whole, and a verb whose --help shows its flags
CLASSES = {
    VideoConfig: ({"server": "127.0.0.1:1"}, "video"),
    SiteSettings: ({"server": "127.0.0.1:1"}, "watch"),
    Engine: ({}, "video"),
    Connection: ({}, "video"),
    DetectSettings: ({}, "video"),
    ServeConfig: ({"model": Path("m.onnx")}, "serve"),
    ClientSettings: ({"server": "127.0.0.1:1", "info": True}, "client"),
    BenchConfig: ({"server": "127.0.0.1:1"}, "bench"),
    PredictConfig: ({"inputs": ("x.jpg",), "model": Path("m.onnx"), "out": Path("o")}, "predict"),
    EvalConfig: ({"gt": Path("gt.json"), "out": Path("o"), "server": "127.0.0.1:1"}, "eval"),
    TrainConfig: ({"data": Path("train.json")}, "train"),
    SynthSettings: ({"out": Path("o")}, "synth"),
    ImportSettings: ({"format": "voc", "dir": Path("d")}, "import"),
    SplitSettings: ({"gt": Path("gt.json")}, "split"),
    DemoConfig: ({}, "demo"),
    ExportConfig: ({"checkpoint": Path("c.pt"), "out": Path("m.onnx")}, "export"),
    ParitySettings: (
        {"images": ("x.jpg",), "checkpoint": Path("c.pt"), "model": Path("m.onnx")},
        "parity",
    ),
}
DECLARED = [(cls, d) for cls in CLASSES for d in declared(cls)]
CANDIDATES = (0, -1, -0.5, 2.0, "", Path(__file__).parent, Path("x.avi"), Path(__file__))
"""One of them fails each check."""


def _id(item: tuple[type, Declared]) -> str:
    return f"{item[0].__name__}.{item[1].name}"


def _given(args: argparse.Namespace) -> dict:
    return given_flags(SiteSettings, args)


def _parser(cls: type) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test", exit_on_error=False)
    add_flags(parser, cls)
    return parser


def _help_of(verb: str) -> str:
    parser = build_parser([verb])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return " ".join(sub.choices[verb].format_help().split())


@pytest.mark.parametrize("item", DECLARED, ids=_id)
def test_each_flag_is_in_its_verbs_help_with_its_default(item: tuple[type, Declared]) -> None:
    cls, d = item
    if d.flag is None or d.spec.positional:
        return
    text = _help_of(CLASSES[cls][1])
    assert d.flag in text
    shown = d.spec.shown_default
    if shown is None and d.default not in (None, (), [], "") and d.default is not False:
        shown = str(d.default)
    if shown is not None:
        assert f"(default: {shown})" in text, (d.flag, text)


@pytest.mark.parametrize("item", DECLARED, ids=_id)
def test_each_key_refuses_a_wrong_type_naming_the_place_and_the_key(
    item: tuple[type, Declared],
) -> None:
    cls, d = item
    if d.key is None:
        return
    fixed = CLASSES[cls][0]
    wrong = 5 if typing.get_origin(d.type) is dict else {"wrong": 1}
    with pytest.raises(ConfigError) as caught:
        from_mapping(cls, {d.key: wrong}, "camera 'gate'", Path(), **fixed)
    assert str(caught.value).startswith(f"camera 'gate': {d.key}"), str(caught.value)


@pytest.mark.parametrize("item", DECLARED, ids=_id)
def test_a_misspelt_key_names_the_one_meant(item: tuple[type, Declared]) -> None:
    cls, d = item
    if d.key is None or len(d.key) < 4:
        return
    typo = d.key[:-1]
    fixed = CLASSES[cls][0]
    with pytest.raises(ConfigError, match=rf"camera 'gate': {typo}: unknown key \(did you mean"):
        from_mapping(cls, {typo: 1}, "camera 'gate'", Path(), **fixed)


@pytest.mark.parametrize("item", [i for i in DECLARED if i[1].spec.check], ids=_id)
def test_a_checked_value_out_of_range_is_named_as_flag_and_as_key(
    item: tuple[type, Declared],
) -> None:
    cls, d = item
    check = d.spec.check
    assert check is not None
    base = next(t for t in (str, Path, float, int) if t in typing.get_args(d.type) or t is d.type)
    bad = next(v for v in CANDIDATES if isinstance(v, base) and _fails(check, v))
    fix = check(bad)
    fixed = CLASSES[cls][0]
    if d.flag is not None and not d.spec.positional:
        args = argparse.Namespace(**{d.name: bad})
        with pytest.raises(ConfigError) as caught:
            from_flags(cls, args, **fixed)
        assert str(caught.value) == f"{d.flag} {bad}: {fix}"
    if d.key is not None:
        with pytest.raises(ConfigError) as caught:
            from_mapping(cls, {d.key: _plain(bad)}, "camera 'gate'", Path(), **fixed)
        assert str(caught.value) == f"camera 'gate': {d.key}: {_plain(bad)!r}: {fix}"


def _fails(check: Callable[[object], str | None], value: object) -> bool:
    try:
        return check(value) is not None
    except (TypeError, AttributeError):
        return False


def _plain(value: object) -> object:
    return str(value) if isinstance(value, Path) else value


def test_choices_live_once_and_are_refused_in_both_spellings() -> None:
    parser = _parser(VideoConfig)
    with pytest.raises(argparse.ArgumentError, match="invalid choice: 'feet'"):
        parser.parse_args(["clip.mp4", "--server", "127.0.0.1:1", "--anchor", "feet"])
    with pytest.raises(ConfigError, match="camera 'gate': anchor: 'feet': use one of bottom_c"):
        from_mapping(VideoConfig, {"anchor": "feet"}, "camera 'gate'", server="127.0.0.1:1")
    with pytest.raises(ConfigError, match="camera 'gate': device: 'tpu': use one of auto, cpu"):
        from_mapping(Engine, {"device": "tpu"}, "camera 'gate'")


def test_flags_given_override_a_files_keys_and_speak_as_flags(tmp_path: Path) -> None:
    parser = _parser(SiteSettings)
    args = parser.parse_args([str(tmp_path / "site.yaml"), "--model", "m.onnx"])
    with pytest.raises(ConfigError, match="^--model m.onnx: no such file$"):
        from_mapping(SiteSettings, {"server": "127.0.0.1:1"}, "site.yaml", tmp_path, _given(args))
    args = parser.parse_args(["site.yaml", "--status-every", "0"])
    with pytest.raises(ConfigError, match=r"^--status-every 0.0: use more than 0$"):
        from_mapping(SiteSettings, {"server": "127.0.0.1:1"}, "site.yaml", tmp_path, _given(args))
    args = parser.parse_args(["site.yaml", "--device", "cpu"])
    flags = _given(args)
    site = from_mapping(
        SiteSettings, {"server": "127.0.0.1:1", "device": "cuda"}, "s", tmp_path, flags
    )
    assert site.engine.device == "cpu" and site.server == "127.0.0.1:1"


def test_a_files_paths_start_at_its_folder_and_a_flags_at_the_working_one(tmp_path: Path) -> None:
    config = from_mapping(
        VideoConfig, {"jsonl": "out/a.jsonl"}, "camera 'a'", tmp_path, server="127.0.0.1:1"
    )
    assert config.jsonl == tmp_path / "out" / "a.jsonl"
    args = _parser(VideoConfig).parse_args(
        ["clip.mp4", "--server", "127.0.0.1:1", "--jsonl", "b.jsonl"]
    )
    assert from_flags(VideoConfig, args).jsonl == Path("b.jsonl")


def test_settings_made_in_code_are_checked_as_flags_would_be() -> None:
    with pytest.raises(ConfigError, match="^--every 0: use 1 or more$"):
        check(VideoConfig(source="a.mp4", server="127.0.0.1:1", every=0))
    with pytest.raises(ConfigError, match="^--device tpu: use one of auto, cpu, cuda$"):
        check(VideoConfig(source="a.mp4", server="127.0.0.1:1", engine=Engine(device="tpu")))
    with pytest.raises(ConfigError, match="^give exactly one of --model"):
        check(VideoConfig(source="a.mp4"))
    check(VideoConfig(source="a.mp4", server="127.0.0.1:1"))


def test_a_lone_line_is_named_line_on_the_command_line_and_line1_in_a_site_file() -> None:
    args = _parser(VideoConfig).parse_args(
        ["a.mp4", "--server", "127.0.0.1:1", "--line", "0,0,9,9"]
    )
    assert [x.name for x in from_flags(VideoConfig, args).counting.lines] == ["line"]
    site = from_mapping(VideoConfig, {"lines": ["0,0,9,9"]}, "camera 'a'", server="127.0.0.1:1")
    assert [x.name for x in site.counting.lines] == ["line1"]


@pytest.mark.parametrize(
    ("address", "fix"),
    [
        ("127.0.0.1", "give HOST:PORT, e.g. 127.0.0.1:50051"),  # gRPC would dial 443
        ("http://127.0.0.1:50051", "give HOST:PORT without http:// (gRPC is not HTTP/1)"),
        ("localhost:0", "give HOST:PORT, e.g. 127.0.0.1:50051"),
        ("localhost:50051", None),
        ("[::1]:50051", None),
        ("dns:///detect-headless:50051", None),
    ],
)
def test_a_server_address_needs_a_port_and_no_http_scheme(address: str, fix: str | None) -> None:
    args = _parser(VideoConfig).parse_args(["a.mp4", "--server", address])
    if fix is None:
        assert from_flags(VideoConfig, args).server == address
        return
    with pytest.raises(ConfigError, match=f"^--server {re.escape(address)}: {re.escape(fix)}$"):
        from_flags(VideoConfig, args)
