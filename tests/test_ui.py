"""The site page of `detect watch --ui` in a real headless browser: Debian's `chromium`, driven
by selenium through `chromium-driver` (.ci/run installs both; the tests skip, saying why, only
when they cannot be had). A 2-camera synthetic site plays in real time through the committed
demo model while the page is open."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import local_site, run_detect, synth_site

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "images" / "site-page.png"  # the README's; UPDATE_SCREENSHOT=1
FRAMES = 120  # 12 s of video a camera, played in real time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser() -> Any:
    """Headless chromium at 1400x1000, through chromium-driver."""
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip(
            "chromium and chromium-driver are not installed: .ci/run installs them "
            "(apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1000")
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except WebDriverException as exc:
        pytest.skip(f"chromium does not start here: {exc.msg}")
    yield driver
    driver.quit()


def _site(folder: Path, **keys: Any) -> Path:
    """The 2-camera synthetic site with the demo model, its cameras played in real time."""
    clips = synth_site(folder / "clips", 2, FRAMES, objects=6, seed=4)
    site = local_site(
        clips,
        defaults={"realtime": True},
        events=str(folder / "ev.jsonl"),
        summary=str(folder / "summary.json"),
        **keys,
    )
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def _watch(site: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "detect", "watch", str(site), "--ui", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_page(url: str, watch: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 0.2):
                return
        except OSError:
            assert watch.poll() is None, watch.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the page did not come up"
            time.sleep(0.1)


_EVENT_IDS = "return [...document.querySelectorAll('#events li')].map(li => li.dataset.id)"
_COUNTS = """return [...document.querySelectorAll('article.tile')].map(tile => [
    tile.dataset.camera,
    [...tile.querySelectorAll('td[data-place]')].map(c =>
        [c.dataset.place, c.dataset.kind, c.dataset.label, Number(c.dataset.count)])])"""


def test_the_site_page_shows_both_cameras_live_with_their_events_and_counts(
    browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    site = _site(tmp_path)
    port = _free_port()
    watch = _watch(site, port)
    url = f"http://127.0.0.1:{port}"
    log = site.parent / "ev.jsonl"
    seen_in_log: dict[str, float] = {}
    seen_on_page: dict[str, float] = {}
    try:
        _wait_for_page(url, watch)
        browser.get(url + "/")
        # both tiles get a moving picture: two screenshots of each, a second apart, differ
        deadline = time.monotonic() + 30
        while len(browser.find_elements(By.CSS_SELECTOR, "article.tile .picture img")) < 2:
            assert time.monotonic() < deadline, "the tiles got no picture"
            time.sleep(0.1)
        tiles = browser.find_elements(By.CSS_SELECTOR, "article.tile .picture img")
        first = [tile.screenshot_as_png for tile in tiles]
        time.sleep(1.0)
        second = [tile.screenshot_as_png for tile in tiles]
        assert all(a != b for a, b in zip(first, second, strict=True))
        # each event reaches the timeline within 2 s of its line in the event log
        while watch.poll() is None:
            now = time.monotonic()
            if log.exists():
                for line in log.read_text().splitlines():
                    seen_in_log.setdefault(json.loads(line)["id"], now)
            for event in browser.execute_script(_EVENT_IDS):
                seen_on_page.setdefault(event, now)
            if len(seen_on_page) >= 12 and not (tmp_path / "site-page.png").exists():
                browser.save_screenshot(str(tmp_path / "site-page.png"))  # the README's
                if os.environ.get("UPDATE_SCREENSHOT"):
                    shutil.copy(tmp_path / "site-page.png", SCREENSHOT)
            time.sleep(0.05)
        _, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, err[-3000:]
    assert f"site page on {url}/" in err
    counting = [e for e in seen_in_log if e.split(":")[1] != "-"]
    assert counting, "the clips gave no zone or line event"
    for event in counting:
        assert event in seen_on_page, event
        assert seen_on_page[event] - seen_in_log[event] <= 2.0, event

    # an event's snapshot loads
    item = browser.find_element(By.CSS_SELECTOR, "#events li img")
    loaded = "return arguments[0].complete && arguments[0].naturalWidth"
    deadline = time.monotonic() + 10
    while not browser.execute_script(loaded, item):
        assert time.monotonic() < deadline, "the snapshot did not load"
        time.sleep(0.1)

    # the page's counts at the end are the summary's
    summary = json.loads((site.parent / "summary.json").read_text())
    page = dict(browser.execute_script(_COUNTS))
    for name, camera in summary["cameras"].items():
        expected = sorted(
            [place, kind, label, n]
            for place, kinds in camera["counts"].items()
            for kind, labels in kinds.items()
            for label, n in labels.items()
        )
        assert sorted(page[name]) == expected, name
    assert browser.find_element(By.ID, "run-state").text == "ended"


def test_with_a_token_the_pages_are_refused_without_it(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    (tmp_path / "tokens.txt").write_text("s3cret-ui-token\n")
    site = _site(tmp_path, ui_token_file=str(tmp_path / "tokens.txt"))
    port = _free_port()
    watch = _watch(site, port)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_page(url, watch)
        browser.delete_all_cookies()
        browser.get(url + "/")
        assert "401" in browser.find_element(By.TAG_NAME, "body").text
        browser.get(url + "/api/site")
        assert "401" in browser.find_element(By.TAG_NAME, "body").text
        browser.get(url + "/?token=s3cret-ui-token")  # sets the cookie, then the page
        deadline = time.monotonic() + 20
        while len(browser.find_elements(By.CSS_SELECTOR, "article.tile")) < 2:
            assert time.monotonic() < deadline, "the page did not open with its token"
            time.sleep(0.1)
        assert browser.current_url == url + "/"
        # a camera's page: its own tile, with its picture (the cookie still holds the token)
        browser.get(url + "/camera/cam2")
        while not browser.find_elements(By.CSS_SELECTOR, "article.tile .picture img"):
            assert time.monotonic() < deadline + 20, "the camera page got no picture"
            time.sleep(0.1)
        tiles = browser.find_elements(By.CSS_SELECTOR, "article.tile")
        assert [tile.get_attribute("data-camera") for tile in tiles] == ["cam2"]
        assert browser.find_element(By.ID, "plot").tag_name == "svg"
    finally:
        watch.kill()
        watch.wait()


def test_ui_mistakes_are_one_line_before_any_camera_starts(tmp_path: Path) -> None:
    site = _site(tmp_path)
    bad = run_detect("watch", str(site), "--ui", "nope")
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "error: --ui nope: give HOST:PORT or PORT, e.g. 127.0.0.1:8080 or 8080"
    ]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_detect("watch", str(site), "--ui", str(port))
    assert busy.returncode == 1
    assert busy.stderr.strip().splitlines()[-1] == (
        f"error: ui 127.0.0.1:{port}: cannot listen there (in use, or not this machine's "
        "address?); give another --ui HOST:PORT"
    )
    assert not (tmp_path / "ev.jsonl").exists() or not (tmp_path / "ev.jsonl").read_text()
