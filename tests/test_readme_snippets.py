"""Every ```python block of the README runs as written, on a machine with no AWS set-up.

Each block runs in a fresh interpreter, in an empty folder, with no AWS variable, no ~/.aws and no
SageMaker SDK config: the machine of the reader the README is for. What a reader would prepare around a
block (a running `localmaker up`, a model.tar.gz, the style dataset) is declared above it in the README
(see tests/readme_blocks.py), and what a block says it prints is checked against what it printed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from localmaker.control_plane.instance_process import free_port
from tests.readme_blocks import (
    KINDS,
    PREPARATIONS,
    README,
    Block,
    exported_variables,
    no_aws_environment,
    python_blocks,
)

BLOCKS = python_blocks()
RUNNABLE = [b for b in BLOCKS if "skip" not in b.directives and "file" not in b.directives]
MAX_SKIPPED = 2  # a README whose examples cannot run is a README that rots
BLOCK_TIMEOUT_S = 900


def test_every_block_says_how_it_runs() -> None:
    assert len(BLOCKS) >= 10, "the README's Python blocks were not found"
    for block in BLOCKS:
        assert set(block.directives) <= KINDS, f"{block.name}: unknown readme-test directive {block.directives}"
        assert set(block.needs) <= PREPARATIONS, f"{block.name}: needs {block.needs}; known: {sorted(PREPARATIONS)}"
        assert "[...]" not in block.code, f"{block.name}: a placeholder a reader cannot run"
    skipped = [b for b in BLOCKS if "skip" in b.directives]
    assert all(len(b.directives["skip"]) > 15 for b in skipped), "a skipped block must say why"
    assert len(skipped) <= MAX_SKIPPED, [b.name for b in skipped]
    for block in BLOCKS:  # a saved file that no later block uses would be an example nothing runs
        if "file" in block.directives:
            folder = Path(block.directives["file"]).parts[0]
            later = [b for b in RUNNABLE if b.line > block.line and folder in b.code]
            assert later, f"{block.name}: no later block uses {block.directives['file']}"


def test_the_install_command_is_one_pyproject_supports() -> None:
    readme = README.read_text(encoding="utf-8")
    pyproject = (README.parent / "pyproject.toml").read_text(encoding="utf-8")
    section = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras = set(re.findall(r"^([\w-]+)\s*=", section, flags=re.MULTILINE))
    commands = re.findall(r"^\s*(?:python -m )?pip install (.+?)\s*(?:#.*)?$", readme, flags=re.MULTILINE)
    assert any(re.match(r"-e \.(\[|$|\s)", c) or c.startswith('-e ".') for c in commands), \
        "the README gives no install command for this checkout"
    for named in re.findall(r'-e "?\.\[([\w,-]+)\]', readme):
        for extra in named.split(","):
            assert extra in extras, f"README installs extra [{extra}]; pyproject.toml has {sorted(extras)}"
    makefile_torch = re.search(r"^TORCH_SPEC \?= (\S+)", (README.parent / "Makefile").read_text(), re.MULTILINE)
    assert makefile_torch is not None
    assert f"pip install {makefile_torch.group(1)} --index-url https://download.pytorch.org/whl/cpu" in readme, \
        "the README's CPU torch is not the one the Makefile pins"
    # `make demo` and `make test` stay the first two commands a reader meets.
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[:2] for line in first_block[:2]] == [["make", "demo"], ["make", "test"]]


def _files_before(block: Block) -> dict[str, str]:
    return {b.directives["file"]: b.code for b in BLOCKS if "file" in b.directives and b.line < block.line}


@pytest.mark.e2e
@pytest.mark.parametrize("block", RUNNABLE, ids=[f"line{b.line}" for b in RUNNABLE])
def test_block_runs_as_written(block: Block, tmp_path: Path, localmaker_home: Path) -> None:
    interpreter = sys.executable
    if "python" in block.directives:
        variable = block.directives["python"]
        if not os.environ.get(variable):
            pytest.skip(f"{block.name} runs in its own environment, named by {variable} (`make test` sets it)")
        interpreter = os.environ[variable]
    work = tmp_path / "work"
    work.mkdir()
    for relative, text in _files_before(block).items():
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        (work / relative).write_text(text, encoding="utf-8")
    env = no_aws_environment(tmp_path / "home")
    env["LOCALMAKER_HOME"] = str(localmaker_home)
    if "pytest" in block.directives:
        script = work / block.directives["pytest"]
        command = [interpreter, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
    else:
        script = work / f"readme_line{block.line}.py"
        command = [interpreter, str(script)]
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(block.code, encoding="utf-8")
    with contextlib.ExitStack() as stack:
        for need in block.needs:
            _prepare(need, work, env, stack)
        started = time.monotonic()
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    took = time.monotonic() - started
    assert done.returncode == 0, f"{block.name} failed after {took:.0f}s:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    remaining = done.stdout.splitlines()
    for pattern in block.expected_prints():
        position = next((i for i, line in enumerate(remaining) if _prints(pattern, line)), None)
        assert position is not None, f"{block.name} says it prints {pattern.pattern!r}; it printed:\n{done.stdout}"
        remaining = remaining[position + 1:]


def _prints(pattern: re.Pattern[str], line: str) -> bool:
    """The line, or what follows a progress display that ended on it (the SDKs' `!`, a panel's `╯`)."""
    return any(pattern.fullmatch(text.strip()) for text in (line, re.split(r"[!\r│╯]", line)[-1]))


def _prepare(need: str, work: Path, env: dict[str, str], stack: contextlib.ExitStack) -> None:
    """What a reader does before the block: the README says each of these in its own words."""
    cli = [sys.executable, "-m", "localmaker.cli"]
    if need == "up":
        env.update(stack.enter_context(_localmaker_up(env)))
    elif need == "model.tar.gz":
        _run_cli([*cli, "pack", "minilm", "-o", "model.tar.gz"], work, env)
    elif need == "my-model-dir":
        from localmaker.model.sources import resolve_source

        shutil.copytree(resolve_source("minilm"), work / "my-model-dir")
    elif need == "weights.tar.gz":
        from localmaker.model.sources import resolve_source

        with tarfile.open(work / "weights.tar.gz", "w:gz") as tar:
            for path in sorted(resolve_source("minilm").iterdir()):
                tar.add(path, arcname=path.name)
    elif need == "neon-city":
        _run_cli([*cli, "examples", "make-style-dataset", "neon-city"], work, env)
    else:
        raise AssertionError(f"no preparation named {need!r}")


def _run_cli(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command[2:])} failed:\n{done.stdout}\n{done.stderr}"


@contextlib.contextmanager
def _localmaker_up(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """`localmaker up` in the background, and the variables it tells the reader to export."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "localmaker.cli", "up", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(iter(process.stdout.readline, "")),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_localmaker/endpoints", timeout=2).close()
                exported = exported_variables("".join(printed))
                if "AWS_ENDPOINT_URL" in exported:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert process.poll() is None, f"localmaker up exited early:\n{''.join(printed)}"
            assert time.monotonic() < deadline, f"localmaker up never answered:\n{''.join(printed)}"
            time.sleep(0.2)
        yield exported
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as the reader stops it
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        reader.join(timeout=10)


def test_the_block_reader_takes_only_what_a_reader_sees_as_python() -> None:
    text = """# Title
<!-- readme-test: needs up -->
```python
print(1)  # 1 ... <n>
```
<!-- readme-test: skip not in this block: a blank line separates it -->

```python
x = 1
```
```bash
python - <<'PY'
```python
PY
```
"""
    first, second = python_blocks(text)
    assert (first.line, first.heading, first.needs, first.code) == (3, "Title", ["up"], "print(1)  # 1 ... <n>\n")
    assert second.directives == {}
    assert [p.fullmatch("1 then 7") is not None for p in first.expected_prints()] == [True]
    assert first.expected_prints()[0].fullmatch("2 then 7") is None
