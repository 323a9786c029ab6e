"""The documentation's examples run as written: README.md and docs/*.md.

The convention (docs/install.md, "The examples are tests"): every ```bash block runs with
`bash -e`, every ```python block with `python`, in a scratch folder holding a copy of the
repository's models/ and samples/, with this checkout's `detect` and `python` first on PATH. The
blocks of one page run in order in one folder, so a block may use what an earlier block of the
same page wrote or started (a server started with `&` in one block may be stopped in a later
one; whatever is still running when the docs tests end is killed). A block that must not run (it
installs, trains for hours, needs a GPU, Docker or a cluster) has the line
`<!-- docs-test: skip REASON -->` right before its fence; it is reported as skipped with REASON.
Other fences (```text, ```yaml, ```json, ```proto) are shown, not run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNERS = {"bash": ["bash", "-e"], "python": ["python"]}
SKIP = re.compile(r"^<!-- docs-test: skip (?P<reason>.+?) -->$")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")
BLOCK_TIMEOUT_S = 180


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page: its language, first line (1-based) and text."""

    page: Path
    line: int
    lang: str
    text: str
    skip_reason: str | None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def read_blocks(page: Path) -> list[Block]:
    """Every fenced block of `page` in order, with the skip reason of the line before it."""
    blocks: list[Block] = []
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while not lines[end].startswith("```"):
            end += 1
        before = lines[index - 1] if index > 0 else ""
        skip = SKIP.match(before)
        blocks.append(
            Block(
                page=page,
                line=index + 1,
                lang=opening["lang"],
                text="\n".join(lines[index + 1 : end]) + "\n",
                skip_reason=skip["reason"] if skip else None,
            )
        )
        index = end + 1
    return blocks


RUN = [b for page in PAGES for b in read_blocks(page) if b.lang in RUNNERS]


@dataclass
class PageFolder:
    """A page's scratch folder, the blocks run in it so far and their process groups."""

    path: Path
    done: set[int]
    groups: list[int]


def bin_folder(path: Path) -> Path:
    """`detect` and `python` of this interpreter, running this checkout's code."""
    path.mkdir()
    (path / "detect").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m detect "$@"\n')
    (path / "detect").chmod(0o755)
    (path / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (path / "python").chmod(0o755)
    return path


@pytest.fixture(scope="module")
def page_folders(tmp_path_factory: pytest.TempPathFactory):
    """One scratch folder per page, with models/ and samples/ copied in; cleaned up at the end."""
    tools = bin_folder(tmp_path_factory.mktemp("docs-bin") / "bin")
    env = {
        **os.environ,
        "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    folders: dict[Path, PageFolder] = {}

    def folder(page: Path) -> PageFolder:
        if page not in folders:
            path = tmp_path_factory.mktemp(page.stem)
            for name in ("models", "samples"):
                shutil.copytree(ROOT / name, path / name)
            folders[page] = PageFolder(path, set(), [])
        return folders[page]

    yield folder, env
    for page_folder in folders.values():
        for group in page_folder.groups:
            kill_group(group)


def run_block(block: Block, folder: PageFolder, env: dict[str, str]) -> None:
    """Run one block in the page's folder; fail with its output unless it exits 0.

    The output goes to a file, not a pipe, so that a server the block leaves running does not
    hold the test until it exits; a block that fails has its whole process group killed."""
    name = f".block-{block.line}"
    script = folder.path / f"{name}.{'sh' if block.lang == 'bash' else 'py'}"
    script.write_text(block.text)
    log = folder.path / f"{name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*RUNNERS[block.lang], script.name],
            cwd=folder.path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    folder.groups.append(process.pid)
    folder.done.add(block.line)
    try:
        code = process.wait(timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        code = None
    if code != 0:
        kill_group(process.pid)
        process.wait()
        verdict = f"ran over {BLOCK_TIMEOUT_S} s" if code is None else f"exited {code}"
        pytest.fail(f"{block.id} {verdict}:\n{block.text}\n{log.read_text()[-4000:]}")


def kill_group(group: int) -> None:
    """Kill what a block started and left running (a server started with `&`)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def test_every_docs_test_marker_is_right_before_a_block_that_runs() -> None:
    for page in PAGES:
        text = page.read_text()
        marked = [b for b in read_blocks(page) if b.skip_reason is not None]
        markers = [line for line in text.splitlines() if line.startswith("<!-- docs-test")]
        assert len(marked) == len(markers), f"{page}: a docs-test marker not right before a fence"
        assert all(b.lang in RUNNERS for b in marked), f"{page}: a skip on a block never run"


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_documented_block_runs(block: Block, page_folders) -> None:
    folder_of, env = page_folders
    if block.skip_reason is not None:
        pytest.skip(f"{block.id}: {block.skip_reason}")
    folder = folder_of(block.page)
    earlier = [
        b
        for b in RUN
        if b.page == block.page
        and b.line < block.line
        and b.line not in folder.done
        and b.skip_reason is None
    ]
    for needed in earlier:  # a block chosen alone (-k) still finds what the page made before it
        run_block(needed, folder, env)
    run_block(block, folder, env)
    if block == [b for b in RUN if b.page == block.page][-1]:
        for group in folder.groups:  # a server a page forgot to stop is not the next page's
            kill_group(group)


def test_the_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = [line for line in ci if line and not line.startswith(("#", "set ", "cd "))][-1]
    (install,) = [b for b in read_blocks(ROOT / "README.md") if "make install" in b.text]
    assert command in install.text.splitlines(), f"README's Install block lacks {command!r}"
