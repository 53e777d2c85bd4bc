"""Every code example in README.md and docs/**/*.md runs, against a real server.

Issue 16 item 5: the quickstart's SDK example crashed. Each Markdown file gets
its own fresh ``parley serve`` (tokens ``tok-a`` = alice, ``tok-b`` = bob), and
its fenced blocks run in order, unchanged except for the port: the docs'
``http://127.0.0.1:4317`` / ``localhost:4317`` become the test server's.

* ```` ```python ```` blocks run in a fresh interpreter (cwd: a temp dir); a
  non-zero exit fails.
* ```` ```sh ```` blocks made only of ``curl`` commands (and ``VAR=…``
  assignments) run under ``bash -e``; every curl must succeed and no answer
  may be an error envelope. As in a reader's terminal, the assignments of
  earlier blocks of the page are still set. Other shell blocks (install, test, serve
  commands) are the set-up steps CI itself performs and are not run here.
* A block that cannot run says so in its info string: ```` ```python no-run ````
  or ```` ```sh no-run ````. Any other language is not run.

New pages are picked up automatically (the file list is a glob).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.process import ROOT, clean_env, serve, sqlite_url

DOC_TOKENS = "tok-a:agent-a:alice,tok-b:agent-b:bob"
DOC_URL = "http://127.0.0.1:4317"
DOC_HOSTPORT = re.compile(r"\b(?:localhost|127\.0\.0\.1):4317\b")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")
PYTHON = {"python", "py", "python3"}
SHELL = {"sh", "bash", "shell", "console"}
#: One shell command per line after joining ``\`` continuations.
CURL_LINE = re.compile(r"^(curl\s|[A-Za-z_][A-Za-z0-9_]*=)")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    flags: tuple[str, ...]
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runnable(self) -> bool:
        if "no-run" in self.flags:
            return False
        if self.lang in PYTHON:
            return True
        return self.lang in SHELL and is_curl_script(self.code)


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file (CommonMark fences, backticks or tildes)."""
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, info = opening["fence"], opening["info"].split()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence) and set(lines[j].strip()) == {fence[0]}):
            body.append(lines[j])
            j += 1
        lang = info[0].lower() if info else ""
        out.append(Block(path, i + 1, lang, tuple(info[1:]), "\n".join(body) + "\n"))
        i = j + 1
    return out


def shell_commands(code: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def is_curl_script(code: str) -> bool:
    commands = shell_commands(code)
    return bool(commands) and all(CURL_LINE.match(c) for c in commands) and any(c.startswith("curl") for c in commands)


def for_server(code: str, url: str) -> str:
    hostport = url.removeprefix("http://")
    return DOC_HOSTPORT.sub(hostport, code.replace(DOC_URL, url))


def run_python(block: Block, url: str, cwd: Path, earlier: list[str]) -> str | None:
    result = subprocess.run(
        [sys.executable, "-c", for_server(block.code, url)],
        cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    if result.returncode != 0:
        return f"{block.where}: python exited {result.returncode}\n{result.stderr[-2000:]}"
    return None


def assignments(code: str) -> list[str]:
    return [c for c in shell_commands(code) if not c.startswith("curl")]


def run_curl(block: Block, url: str, cwd: Path, earlier: list[str]) -> str | None:
    # Each answer is followed by a marker line, so answers can be checked one by one.
    script = "set -e\ncurl() { command curl -sS --fail-with-body --max-time 20 \"$@\"; printf '\\n\\036\\n'; }\n"
    script += "".join(line + "\n" for line in earlier)
    result = subprocess.run(
        ["bash", "-c", script + for_server(block.code, url)],
        cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    if result.returncode != 0:
        return f"{block.where}: a curl failed (exit {result.returncode})\n{result.stdout[-1000:]}{result.stderr[-1000:]}"
    for answer in result.stdout.split("\n\x1e\n"):
        try:
            body = json.loads(answer) if answer.strip() else None
        except ValueError:
            continue
        if isinstance(body, dict) and "error" in body:
            return f"{block.where}: a curl was answered with an error: {answer.strip()[:500]}"
    return None


def runnable_files() -> list[Path]:
    return [path for path in doc_files() if any(b.runnable for b in blocks(path))]


def test_the_doc_examples_are_found() -> None:
    """Guards the extraction itself: the known examples are seen, of the right kinds."""
    quickstart = blocks(ROOT / "docs" / "quickstart.md")
    assert any(b.lang == "python" and "from parley.client import" in b.code for b in quickstart)
    assert any(b.runnable and b.lang == "sh" for b in quickstart)
    setup = [b for b in blocks(ROOT / "README.md") if "pip install" in b.code]
    assert setup and not any(b.runnable for b in setup)
    assert is_curl_script("A='x'\ncurl -s a \\\n  -d b\n# note\n") and not is_curl_script("pip install -e .\n")
    assert for_server("Parley('http://127.0.0.1:4317') curl localhost:4317/x", "http://127.0.0.1:5555") == (
        "Parley('http://127.0.0.1:5555') curl 127.0.0.1:5555/x"
    )


@pytest.mark.parametrize("path", runnable_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_of_the_page_runs(path: Path, tmp_path: Path) -> None:
    failures = []
    shell_vars: list[str] = []
    with serve(sqlite_url(tmp_path), tmp_path, PARLEY_TOKENS=DOC_TOKENS) as server:
        for block in blocks(path):
            if not block.runnable:
                continue
            runner = run_python if block.lang in PYTHON else run_curl
            failure = runner(block, server.url, tmp_path, shell_vars)
            if failure is not None:
                failures.append(failure)
            if block.lang in SHELL:
                shell_vars += assignments(block.code)
    hint = "\n\n(fix the example, or mark a block that cannot run as ```python no-run / ```sh no-run)"
    assert not failures, "\n\n".join(failures) + hint
