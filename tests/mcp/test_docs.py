"""docs/connect-an-agent.md lists exactly the tools the server advertises."""

from __future__ import annotations

import json
import re
from pathlib import Path

from parley.mcp.tools import TOOLS, markdown_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "connect-an-agent.md"


def test_the_tool_table_is_generated_from_the_server_definitions():
    text = DOC.read_text(encoding="utf-8")
    table = text.split("<!-- tools:begin -->\n", 1)[1].split("\n<!-- tools:end -->", 1)[0]
    assert table == markdown_table(), "regenerate with: python -m parley.mcp.tools"
    assert re.findall(r"^\| `(parley_\w+)`", table, re.M) == [t.name for t in TOOLS]


def test_the_mcp_json_examples_parse():
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    servers = [json.loads(block)["mcpServers"]["parley"] for block in blocks]
    assert servers[0]["args"] == ["mcp"] and servers[1]["type"] == "http"
