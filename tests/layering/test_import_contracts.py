"""The layers of DESIGN.md hold: ``lint-imports`` keeps every contract in pyproject.toml.

The second half proves the contracts are live: the same linter run over a copy of the
package with one deliberate violation per contract must fail and name it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "pyproject.toml", "--no-cache", "--no-logo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_layering_contract_is_kept() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ", 0 broken." in result.stdout


VIOLATIONS = {
    # module to append to, the import that breaks the rule, the contract it breaks
    "domain/channel.py": ("import trio", "domain is pure"),
    "actors/channel_actor.py": ("import sqlalchemy", "actors import no SQLAlchemy"),
    "http/ops.py": ("from ..journal import schema", "http reaches the journal only through"),
    "journal/errors.py": ("from .. import domain", "http -> actors -> journal"),
    "replay/report.py": ("from .. import actors", "replay beside actors"),
}


@pytest.mark.parametrize("module", sorted(VIOLATIONS))
def test_a_deliberate_violation_breaks_its_contract(tmp_path: Path, module: str) -> None:
    shutil.copytree(ROOT / "parley", tmp_path / "parley", ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    line, contract = VIOLATIONS[module]
    with open(tmp_path / "parley" / module, "a", encoding="utf-8") as fh:
        fh.write(f"\n{line}  # deliberate violation\n")

    result = lint(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken, result.stdout
