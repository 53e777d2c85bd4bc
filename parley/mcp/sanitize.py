"""Untrusted text going into a model's context (contracts/mcp.md §2, "Sanitising output").

Pure functions: C0 (U+0000–U+001F), DEL and C1 (U+0080–U+009F) are dropped;
``body`` and ``purpose`` keep tab and newline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_ALL = re.compile("[\x00-\x1f\x7f-\x9f]")
_KEEP_TAB_NL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_STRICT_FIELDS = ("owner", "agent_id", "target", "artifact")


def strip_all(value: Any) -> Any:
    return _ALL.sub("", value) if isinstance(value, str) else value


def strip_keep_tab_nl(value: Any) -> Any:
    return _KEEP_TAB_NL.sub("", value) if isinstance(value, str) else value


def message(msg: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(msg)
    if "body" in out:
        out["body"] = strip_keep_tab_nl(out["body"])
    for name in _STRICT_FIELDS:
        if name in out:
            out[name] = strip_all(out[name])
    if isinstance(out.get("to"), list):
        out["to"] = [strip_all(item) for item in out["to"]]
    return out


def descriptor(desc: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(desc)
    if "purpose" in out:
        out["purpose"] = strip_keep_tab_nl(out["purpose"])
    if "created_by" in out:
        out["created_by"] = strip_all(out["created_by"])
    return out


def holder(by: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(by)
    for name in ("agent_id", "owner"):
        if name in out:
            out[name] = strip_all(out[name])
    return out
