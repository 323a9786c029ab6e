"""`--ray`: predict, eval and video archives on a real local Ray give the same files and lines
as without it.

Every run goes through the real CLI, the demo model on the sample images and clips. Most runs
join one Ray started on this machine for the module (`cluster`: 2 CPUs, token authentication,
joined by its address as a cluster is); the others start their own (`--ray` alone, about 3 s
on 2 cores) and stop it at the end. A worker process killed mid-run has its images done again,
each once; a run again into the same --out sends only the images not finished to the pool.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_detect, run_detect_without

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "demo.onnx"
SAMPLES = REPO / "samples"

_HEAD = """
import sys
import ray
ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()  # until the tests are done
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray of 2 CPUs on this machine with token authentication, as a cluster runs: its
    address (``HOST:PORT`` of its GCS) and the environment that holds its token. Stopped when
    the module's tests are done."""
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    head = subprocess.Popen(
        [sys.executable, "-c", _HEAD],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, **env},
    )  # fmt: skip
    assert head.stdout is not None and head.stdin is not None
    address = head.stdout.readline().strip()
    assert address, "the Ray head did not start"
    yield address, env
    head.stdin.close()
    head.wait(timeout=120)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample images and, among them, one that is not an image."""
    folder = tmp_path_factory.mktemp("images")
    for image in sorted((SAMPLES / "images").glob("*.jpg")):
        shutil.copy(image, folder / image.name)
    (folder / "000001b.jpg").write_bytes(b"not a jpeg")
    return folder


@pytest.fixture(scope="module")
def predicted(images: Path, cluster: tuple, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`detect predict` over ``images`` without and with ``--ray`` (`cluster`): (process, out)
    each."""
    address, env = cluster
    runs = {}
    for name, extra in (("plain", ()), ("ray", ("--ray", address))):
        out = tmp_path_factory.mktemp(name) / "out"
        done = run_detect(
            "predict", str(images), "--model", str(MODEL), "--out", str(out), *extra, env=env
        )
        runs[name] = (done, out)
    return runs


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_predict_on_ray_writes_byte_identical_files(predicted: dict) -> None:
    (_, plain), (_, ray) = predicted["plain"], predicted["ray"]
    files = _files(plain)
    assert {"predictions.json", "predict.json", "annotated/000000.jpg"} <= files.keys()
    assert _files(ray) == files


def test_predict_on_ray_prints_identical_lines(predicted: dict) -> None:
    (plain, _), (ray, _) = predicted["plain"], predicted["ray"]
    assert plain.stdout.count("\n") >= 4
    assert ray.stdout == plain.stdout


def test_bad_image_on_ray_is_one_line_and_skipped(predicted: dict, images: Path) -> None:
    (plain, _), (ray, out) = predicted["plain"], predicted["ray"]
    bad = images / "000001b.jpg"
    lines = [line for line in ray.stderr.splitlines() if line.startswith("error:")]
    expected = [line for line in plain.stderr.splitlines() if line.startswith("error:")]
    assert lines == expected
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: ")
    assert ray.returncode == plain.returncode == 1  # an image failed, as without Ray
    assert "4 images, " in ray.stderr and ", 1 failed" in ray.stderr
    assert "Traceback" not in ray.stderr
    assert not (out / "annotated" / bad.name).exists()


def test_predict_on_ray_shows_the_workers_alive(predicted: dict) -> None:
    ray, _ = predicted["ray"]
    [final] = [line for line in ray.stderr.splitlines() if line.startswith("predict: 5/5 ")]
    assert re.search(r", workers \d/2 alive", final), final


def test_predict_resumed_on_ray_runs_only_the_rest_and_writes_the_files_of_a_plain_run(
    predicted: dict, images: Path, cluster: tuple, tmp_path: Path
) -> None:
    address, env = cluster
    plain, plain_out = predicted["plain"]
    out = tmp_path / "out"
    first = [str(images / name) for name in ("000000.jpg", "000001.jpg")]  # the folder's first
    done = run_detect("predict", *first, "--model", str(MODEL), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]

    ray = run_detect(
        "predict", str(images), "--model", str(MODEL), "--out", str(out), "--ray", address, env=env
    )
    assert ray.returncode == plain.returncode == 1  # the bad image, run again and failing again
    assert "Traceback" not in ray.stderr
    assert f"predict: 2 of 5 images finished by an earlier run in {out}; skipped" in ray.stderr
    assert "predict: 3/3 images" in ray.stderr  # the pool got only the rest
    rest = [line for line in plain.stdout.splitlines() if line.split(",")[0] not in first]
    assert ray.stdout.splitlines() == rest
    assert _files(out) == _files(plain_out)  # manifest.jsonl included


def test_eval_model_on_ray_gives_identical_metrics(cluster: tuple, tmp_path: Path) -> None:
    address, env = cluster
    metrics = {}
    for name, extra in (("plain", ()), ("ray", ("--ray", address))):
        out = tmp_path / name
        gt = SAMPLES / "annotations.json"
        done = run_detect(
            "eval", "--gt", str(gt), "--model", str(MODEL), "--out", str(out), *extra, env=env
        )
        assert done.returncode == 0, done.stderr[-3000:]
        metrics[name] = json.loads((out / "metrics.json").read_text())
        metrics[name].pop("speed")  # timings
        assert (out / "predictions.json").read_text()
    assert metrics["ray"] == metrics["plain"]
    assert metrics["ray"]["bbox"]["AP"] > 0.5
    plain, ray = (tmp_path / n / "predictions.json" for n in ("plain", "ray"))
    assert ray.read_bytes() == plain.read_bytes()


def test_cluster_address_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    started = time.monotonic()
    done = run_detect(
        "predict", str(SAMPLES / "images"), "--model", str(MODEL), "--out", str(tmp_path),
        "--ray", "127.0.0.1:1", timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: --ray 127.0.0.1:1: nothing answers there (Connection refused); start the "
        "cluster (`ray start --head` on its head node) or give its address"
    ]
    assert time.monotonic() - started < 30  # not Ray's minute of retries


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--predictions", "p.json", "--ray"),
            "error: --ray runs an exported --model on Ray; with --predictions leave it out",
        ),
        (
            ("--model", str(MODEL), "--workers", "2"),
            "error: --workers is for --ray; add it or leave it out",
        ),
        (
            ("--model", str(MODEL), "--ray", "samples/images"),
            "error: --ray samples/images: give auto, HOST:PORT or ray://HOST:PORT of a Ray "
            "cluster (--ray alone, after the images, starts a Ray on this machine)",
        ),
    ],
)
def test_ray_flags_that_do_not_fit_are_usage_errors(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    gt = SAMPLES / "annotations.json"
    done = run_detect("eval", "--gt", str(gt), "--out", str(tmp_path), *args, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [message]


@pytest.mark.parametrize("verb", ["predict", "watch"])
def test_ray_not_installed_is_one_line_naming_the_extra(verb: str, tmp_path: Path) -> None:
    if verb == "predict":
        args = [str(SAMPLES / "images"), "--model", str(MODEL), "--out", str(tmp_path)]
    else:
        args = [str(_site(tmp_path / "site", 1, 2)), "--model", str(MODEL)]
    done = run_detect_without("ray", verb, *args, "--ray", timeout=60)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(
        f"error: detect {verb} needs ray, which this installation lacks; install the `ray` "
        "extra: pip install '"
    ) and line.endswith("[ray]'")


def _descendants(root: int) -> list[tuple[int, str]]:
    """``(pid, command line's first word)`` of every process under ``root``."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            command = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append((int(entry.name), command))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


@pytest.mark.slow  # 100 images twice, about half a minute on 2 cores
def test_worker_killed_mid_run_loses_and_repeats_nothing(tmp_path: Path) -> None:
    many = tmp_path / "many"
    many.mkdir()
    for copy in range(25):
        for image in sorted((SAMPLES / "images").glob("*.jpg")):
            shutil.copy(image, many / f"{copy:02d}_{image.name}")
    plain = run_detect("predict", str(many), "--model", str(MODEL), "--out", str(tmp_path / "p"))
    assert plain.returncode == 0, plain.stderr[-3000:]

    out = tmp_path / "ray"
    run = subprocess.Popen(
        [sys.executable, "-m", "detect", "predict", str(many), "--model", str(MODEL),
         "--out", str(out), "--ray", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    killed = None
    deadline = time.monotonic() + 240
    while run.poll() is None and killed is None and time.monotonic() < deadline:
        written = list((out / "annotated").glob("*.jpg")) if (out / "annotated").is_dir() else []
        # Ray Data's actor: `ray::MapWorker(MapBatches(_Worker))...`, a process of this run
        workers = [pid for pid, cmd in _descendants(run.pid) if cmd.startswith("ray::MapWorker")]
        if len(written) >= 8 and workers:
            os.kill(workers[0], signal.SIGKILL)
            killed = len(written)
        time.sleep(0.1)
    stdout, stderr = run.communicate(timeout=300)
    assert killed is not None, "the run ended before a worker could be killed"
    assert killed < 100  # mid-run
    assert run.returncode == 0, stderr[-3000:]
    assert stdout == plain.stdout  # every image once, in order
    assert _files(out) == _files(tmp_path / "p")


def test_more_workers_than_the_cluster_holds_is_one_line(tmp_path: Path) -> None:
    done = run_detect(
        "predict", str(SAMPLES / "images"), "--model", str(MODEL), "--out", str(tmp_path),
        "--ray", "--workers", "1000", timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("error: --ray: 1000 workers need 500 CPUs and the cluster has ")
    assert line.endswith("; give fewer --workers")


def test_each_worker_gets_its_share_of_the_cpus_as_engine_threads() -> None:
    from detect.cluster import worker_threads

    assert [worker_threads(2, w) for w in (1, 2, 3)] == [2, 1, 1]
    assert worker_threads(64, 8) == 8 and worker_threads(2.5, 1) == 2


def test_video_archive_on_ray_writes_each_clip_as_without_ray_and_skips_a_bad_one(
    cluster: tuple, tmp_path: Path
) -> None:
    address, env = cluster
    clips = tmp_path / "clips"
    for seed in (1, 2, 3):
        made = run_detect(
            "synth", "--video", str(clips / f"clip{seed}.mp4"), "--frames", "12",
            "--video-size", "160x120", "--seed", str(seed),
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
    (clips / "clip0.mp4").write_bytes(b"not a video")
    runs = {}
    for name, extra in (("plain", ()), ("ray", ("--ray", address, "--workers", "2"))):
        runs[name] = run_detect(
            "video", str(clips), "--model", str(MODEL), "--out", str(tmp_path / name),
            "--track", "--line", "middle=80,0,80,120", *extra, env=env,
        )  # fmt: skip
        assert runs[name].returncode == 1, runs[name].stderr[-3000:]  # the bad clip
        assert "Traceback" not in runs[name].stderr
        lines = runs[name].stderr.splitlines()
        [bad] = [line for line in lines if line.startswith("warning: clip ")]
        # on a CPU the int8 model runs, chosen (and said) once for every worker
        assert len([line for line in lines if "the int8 model of" in line]) <= 1
        assert bad.startswith("warning: clip clip0: cannot open video ")
        assert bad.endswith("; skipped")
    for seed in (1, 2, 3):
        jsonl = f"clip{seed}.jsonl"
        assert (tmp_path / "ray" / jsonl).read_text() == (tmp_path / "plain" / jsonl).read_text()
    plain, ray = (json.loads((tmp_path / n / "summary.json").read_text()) for n in runs)
    assert ray["totals"] == plain["totals"]
    assert (ray["totals"]["finished"], ray["totals"]["failed"]) == (3, 1)
    assert re.search(r"^video: 4/4 clips, .*, workers \d/2 alive", runs["ray"].stderr, re.M)
    again = run_detect(
        "video", str(clips), "--model", str(MODEL), "--out", str(tmp_path / "ray"), "--track",
        "--line", "middle=80,0,80,120", "--ray", address, env=env,
    )  # fmt: skip
    assert again.returncode == 1, again.stderr[-3000:]  # the bad clip, tried again
    assert "archive: 4 clips: 0 processed, 3 finished earlier, 1 failed" in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("clip.mp4", "--model", str(MODEL), "--ray"),
            "error: --ray spreads the clips of an archive over its workers: give --out DIR",
        ),
        (
            ("clip.mp4", "--server", "127.0.0.1:1", "--out", "o", "--ray"),
            "error: --ray runs an exported --model on Ray; with --server leave it out",
        ),
    ],
)
def test_video_ray_flags_that_do_not_fit_are_usage_errors(
    args: tuple[str, ...], message: str
) -> None:
    done = run_detect("video", *args, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [message]


def _site(folder: Path, cameras: int, frames: int) -> Path:
    from detect.data.synth_video import write_site

    return write_site(folder, cameras, frames, seed=3, width=160, height=120)


def _events_by_camera(path: Path) -> dict[str, list[dict]]:
    """The site's event log, per camera in order, without the wall-clock ``time``."""
    cameras: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        del event["time"]
        cameras.setdefault(event.pop("camera"), []).append(event)
    return cameras


def _totals(summary: dict) -> dict:
    """A watch's summary.json without its timings (times per stage too)."""
    cameras = {
        name: {k: v for k, v in camera.items() if k not in ("seconds", "fps", "ms_per_frame")}
        for name, camera in summary["cameras"].items()
    }
    return {"cameras": cameras, "frames_processed": summary["frames_processed"],
            "events": summary["events"]}  # fmt: skip


def test_watch_on_ray_writes_each_camera_as_without_ray(cluster: tuple, tmp_path: Path) -> None:
    address, env = cluster
    site = _site(tmp_path / "site", 3, 16)
    outputs = {}
    for name, extra in (("plain", ()), ("ray", ("--ray", address))):
        done = run_detect("watch", str(site), "--model", str(MODEL), *extra, env=env, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        assert "site: 3 cameras, 48 frames processed" in done.stdout
        outputs[name] = shutil.move(site.parent / "out", tmp_path / name)
    plain, ray = (Path(outputs[n]) for n in ("plain", "ray"))
    for k in (1, 2, 3):
        assert (ray / f"cam{k}.jsonl").read_text() == (plain / f"cam{k}.jsonl").read_text()
    events = _events_by_camera(plain / "events.jsonl")
    assert sum(map(len, events.values())) > 0
    assert _events_by_camera(ray / "events.jsonl") == events
    totals = [_totals(json.loads((out / "summary.json").read_text())) for out in (plain, ray)]
    assert totals[1] == totals[0]


def _frames(jsonl: Path) -> list[int]:
    return [json.loads(line)["frame"] for line in jsonl.read_text().splitlines()]


def test_watch_camera_actor_killed_mid_run_resumes_with_each_frame_once(tmp_path: Path) -> None:
    frames = 80
    site = _site(tmp_path / "site", 2, frames)
    out = site.parent / "out"
    run = subprocess.Popen(
        [sys.executable, "-m", "detect", "watch", str(site), "--model", str(MODEL), "--ray",
         "--status-every", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    killed = None
    deadline = time.monotonic() + 120
    while run.poll() is None and killed is None and time.monotonic() < deadline:
        written = [
            len(_frames(out / f"cam{k}.jsonl")) if (out / f"cam{k}.jsonl").exists() else 0
            for k in (1, 2)
        ]
        # a camera's actor: `ray::CameraActor` (or `ray::CameraActor.poll` while it answers)
        actors = [pid for pid, cmd in _descendants(run.pid) if cmd.startswith("ray::CameraActor")]
        if min(written) >= 10 and actors:
            os.kill(actors[0], signal.SIGKILL)
            killed = written
        time.sleep(0.1)
    stdout, stderr = run.communicate(timeout=180)
    assert killed is not None, "the run ended before a camera could be killed"
    assert max(killed) < frames  # mid-run
    assert run.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "site: 2 cameras, " in stdout
    for k in (1, 2):
        assert _frames(out / f"cam{k}.jsonl") == list(range(frames))  # each frame once, in order
    [restart] = [line for line in stderr.splitlines() if "restarted by Ray" in line]
    assert re.fullmatch(
        r"warning: camera cam[12] restarted by Ray \(its process died\); it resumes after "
        r"frame \d+",
        restart,
    ), restart
    assert re.search(r"^status cam[12]: .*, restarted 1x$", stderr, re.M)
    events = _events_by_camera(out / "events.jsonl")
    for camera in events.values():  # each event once: no two alike
        keys = [json.dumps(e, sort_keys=True) for e in camera]
        assert len(keys) == len(set(keys))


@pytest.mark.parametrize("flag", [("--workers", "2"), ("--gpus-per-worker", "1")])
def test_watch_pool_flags_are_usage_errors_one_actor_per_camera(
    flag: tuple[str, str], tmp_path: Path
) -> None:
    site = _site(tmp_path / "site", 1, 2)
    done = run_detect("watch", str(site), "--model", str(MODEL), "--ray", *flag, timeout=60)
    assert done.returncode == 2
    [*_, line] = done.stderr.splitlines()
    assert line == f"detect: error: unrecognized arguments: {' '.join(flag)}"
