"""The console's files are package data: a wheel built from the checkout carries every one (ADR-0017).

Builds the wheel the way an installer would (``pip wheel``, isolated build),
so a file left out of ``[tool.setuptools.package-data]`` fails here rather
than as a blank page after ``pip install parley``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "parley" / "ui" / "static"


def test_a_built_wheel_contains_every_console_file(tmp_path):
    # A clean copy: a stale build/ in the checkout would hide a missing glob.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("parley", "migrations"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=110,
    )
    (wheel,) = tmp_path.glob("parley-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"parley/ui/static/{p.name}" for p in STATIC.iterdir() if p.is_file()}
    assert shipped and shipped <= names, sorted(shipped - names)
    assert "parley/http/ui.py" in names
