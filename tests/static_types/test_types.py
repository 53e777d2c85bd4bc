"""The SDK's annotations are real: ``mypy --strict`` passes on the SDK and on a typed usage example.

``example_usage.py`` uses every kind of result (and, through
``warn_unused_ignores``, proves a misspelt key *is* an error), so a method
that goes back to returning ``dict[str, Any]`` or loses its annotation
fails here. One mypy run over both, ~10 s cold (mypy caches nothing here:
``--no-incremental`` keeps the worktree clean).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_strict_on_sdk_and_typed_example() -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", "/dev/null",
            "parley/client", "tests/static_types/example_usage.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
