"""docs/api/client.md is what scripts/gen_api_docs.py makes of the current docstrings.

A changed signature or docstring without a regenerated page fails here
(`python scripts/gen_api_docs.py` fixes it); so does a public SDK call
without a docstring.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support.process import ROOT, clean_env


def test_the_committed_api_reference_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_api_docs.py", "--check"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_every_documented_call_has_a_docstring() -> None:
    page = (ROOT / "docs" / "api" / "client.md").read_text(encoding="utf-8")
    missing = [line for line, nxt in zip(page.splitlines(), page.splitlines()[2:]) if nxt == "_(no docstring)_"]
    assert not missing, missing
