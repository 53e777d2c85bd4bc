"""The documented install (no extras) gives a package whose every public module imports.

Issue 16 item 1: ``pip install -e .`` left ``httpx`` out (it sat in the test
extra), so ``from parley.client import Parley`` failed for a newcomer. This
test builds the wheel from the worktree, installs it into a fresh virtualenv
without extras or system site-packages (a non-editable install also proves
the wheel carries its package data: migrations, ``py.typed``) and imports
every module under ``parley`` there. It takes ~30 s: one venv, one install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Left out of the copy that is built: a stale ``build/`` would hide a file the wheel no longer gets.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "*.db*"
)

pytestmark = pytest.mark.packaging

#: Runs inside the fresh venv: import every public module, print one failure per line.
IMPORT_ALL = r"""
import importlib, importlib.resources, pkgutil, sys
import parley

failures = []
for info in pkgutil.walk_packages(parley.__path__, "parley."):
    # __main__ runs the CLI; parley.migrations.* are Alembic scripts run by Alembic.
    if info.name == "parley.__main__" or info.name.startswith("parley.migrations."):
        continue
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failures.append(f"{info.name}: {type(exc).__name__}: {exc}")
try:
    from parley.client import AsyncParley, Parley  # noqa: F401 - the documented import
except Exception as exc:
    failures.append(f"from parley.client import Parley, AsyncParley: {type(exc).__name__}: {exc}")
for name in ("py.typed",):
    if not importlib.resources.files("parley").joinpath(name).is_file():
        failures.append(f"parley/{name} is not in the wheel")
if not importlib.resources.files("parley.migrations").joinpath("script.py.mako").is_file():
    failures.append("parley/migrations/script.py.mako is not in the wheel")
print("\n".join(failures))
sys.exit(1 if failures else 0)
"""


def _clean_env() -> dict[str, str]:
    """The caller's environment without anything that would leak the dev venv into the new one."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def test_install_without_extras_imports_every_public_module(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(target)
    python = target / "bin" / "python"
    env = _clean_env()
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(source)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    # Run from tmp_path so the worktree's own ``parley/`` is not on sys.path: only the installed copy counts.
    check = subprocess.run(
        [str(python), "-I", "-c", IMPORT_ALL], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, f"in a clean install:\n{check.stdout}{check.stderr[-3000:]}"
    assert sys.prefix != str(target)
