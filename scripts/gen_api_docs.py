"""Write docs/api/client.md, the SDK's API reference, from its docstrings and annotations.

    python scripts/gen_api_docs.py           # regenerate the page
    python scripts/gen_api_docs.py --check   # exit 1 if the committed page is stale

No doc toolchain: :mod:`inspect` reads the public classes of ``parley.client``
in source order; signatures are printed from the annotations as written
(``from __future__ import annotations`` keeps them as source strings).
tests/docs/test_api_reference.py fails when the page is out of date.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import parley.client as client  # noqa: E402
import parley.client.types as result_types  # noqa: E402
import parley.errors as errors  # noqa: E402

PAGE = ROOT / "docs" / "api" / "client.md"

#: (section title, the classes it documents), in the order of the page.
CLASSES: list[tuple[str, list[type]]] = [
    ("Clients", [client.Parley, client.AsyncParley]),
    ("Live tails", [client.SSETail, client.WSTail]),
    ("Sessions", [client.Actions, client.ResumableSession, client.AsyncResumableSession, client.SessionFile]),
]
FUNCTIONS = [client.turn_body, client.new_ulid, client.new_idempotency_key]
#: Public methods every client class has but that say nothing of their own.
SKIP = {"__init__"}
ROLE = re.compile(r":(?:class|meth|mod|func|data|attr|exc):`~?([^`]+)`")


def prose(doc: str | None) -> str:
    """A docstring as Markdown: reST roles become code spans; the rest is kept as written."""
    if not doc:
        return ""
    return ROLE.sub(lambda m: f"``{m.group(1)}``", inspect.cleandoc(doc)).strip() + "\n"


def annotation(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, type) and not typing.get_args(value):
        return value.__name__
    return re.sub(r"\b(?:typing|builtins|collections\.abc|parley\.client\.types)\.", "", repr(value))


def signature(func: Any, *, drop_self: bool) -> str:
    sig = inspect.signature(func)
    parts: list[str] = []
    star_done = False
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name in ("self", "cls"):
        params = params[1:]
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        if p.kind is p.VAR_POSITIONAL:
            star_done = True
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.annotation is not p.empty:
            text += f": {annotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {p.default!r}" if p.annotation is not p.empty else f"={p.default!r}"
        parts.append(text)
        following = params[i + 1] if i + 1 < len(params) else None
        if p.kind is p.POSITIONAL_ONLY and (following is None or following.kind is not p.POSITIONAL_ONLY):
            parts.append("/")
    out = f"({', '.join(parts)})"
    if sig.return_annotation is not sig.empty:
        out += f" -> {annotation(sig.return_annotation)}"
    return out


def public_members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties defined by ``cls`` or its parley bases, in source order."""
    found: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        if not base.__module__.startswith("parley."):
            continue
        for name, member in vars(base).items():
            if name.startswith("_"):
                continue
            if name in SKIP or not (callable(member) or isinstance(member, (property, classmethod, staticmethod))):
                continue
            found[name] = member

    def where(item: tuple[str, Any]) -> tuple[int, str, int]:
        target = item[1].fget if isinstance(item[1], property) else getattr(item[1], "__func__", item[1])
        defining = next(b for b in cls.__mro__ if item[0] in vars(b))
        return (cls.__mro__.index(defining), inspect.getsourcefile(target) or "", inspect.getsourcelines(target)[1])

    return sorted(found.items(), key=where)


def render_class(cls: type) -> list[str]:
    init = vars(cls).get("__init__")
    head = f"### `{cls.__name__}{signature(init, drop_self=True) if init else ''}`"
    lines = [head, "", prose(cls.__doc__)]
    for name, member in public_members(cls):
        if isinstance(member, property):
            lines += [f"#### `{cls.__name__}.{name}` (property)", "", prose(member.__doc__)]
            continue
        func = getattr(member, "__func__", member)
        kind = "async " if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func) else ""
        drop = not isinstance(member, staticmethod)
        lines += [f"#### `{kind}{cls.__name__}.{name}{signature(func, drop_self=drop)}`", ""]
        lines.append(prose(func.__doc__) or "_(no docstring)_\n")
    return lines


def render_typeddict(cls: type) -> list[str]:
    lines = [f"### `{cls.__name__}`", "", prose(cls.__doc__), "| key | type | always present |", "|---|---|---|"]
    for key, value in cls.__annotations__.items():
        required = key in cls.__required_keys__  # type: ignore[attr-defined]
        if typing.get_origin(value) is typing.NotRequired:
            value = typing.get_args(value)[0]
        lines.append(f"| `{key}` | `{annotation(value)}` | {'yes' if required else 'no'} |")
    return [*lines, ""]


def render() -> str:
    lines = [
        "# API reference: `parley.client`",
        "",
        "<!-- Generated by scripts/gen_api_docs.py from the docstrings; do not edit by hand. -->",
        "",
        prose(client.__doc__),
    ]
    for title, classes in CLASSES:
        lines += [f"## {title}", ""]
        for cls in classes:
            lines += render_class(cls)
    lines += ["## Functions", ""]
    for func in FUNCTIONS:
        lines += [f"### `{func.__name__}{signature(func, drop_self=False)}`", "", prose(func.__doc__) or "_(no docstring)_\n"]
    lines += ["## Result types (`parley.client.types`)", "", prose(result_types.__doc__)]
    for name in result_types.__all__:
        value = getattr(result_types, name)
        if typing.is_typeddict(value):
            lines += render_typeddict(value)
        else:
            lines += [f"### `{name}`", "", f"`{annotation(value)}`", ""]
    lines += ["## Errors (`parley.errors`)", "", prose(errors.__doc__)]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api/client.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run python scripts/gen_api_docs.py", file=sys.stderr)
            return 1
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
