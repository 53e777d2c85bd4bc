"""The error tree drawn in parley.errors' docstring is the real class tree.

The drawing is what a reader trusts (and what ``except Refused`` is written
from), so it is parsed and compared with ``__bases__`` / ``__subclasses__``:
every class drawn exists with the drawn parent, every ParleyError subclass of
the module is drawn, and each leaf's status and code are the drawn ones.
"""

from __future__ import annotations

import re

import parley.client as pc
import parley.errors as pe

NODE = re.compile(r"^(?P<name>[A-Z]\w+)(?:\s+(?P<status>\d{3}) (?P<code>[a-z_]+)\b)?")


def drawn_tree() -> list[tuple[str, str | None, int | None, str | None]]:
    """(name, drawn parent, status, code) for every node of the drawing, in order."""
    doc = pe.__doc__ or ""
    lines = doc.splitlines()
    start = lines.index("    ParleyError")
    nodes: list[tuple[str, str | None, int | None, str | None]] = []
    stack: list[str] = []
    for line in lines[start:]:
        if not line.strip():
            break
        text = line[4:]
        connector = max(text.find("├── "), text.find("└── "))
        depth = 0 if connector < 0 else connector // 4 + 1
        match = NODE.match(text[connector + 4 :] if connector >= 0 else text)
        assert match is not None, f"unreadable tree line: {line!r}"
        del stack[depth:]
        parent = stack[-1] if stack else None
        status = int(match["status"]) if match["status"] else None
        nodes.append((match["name"], parent, status, match["code"]))
        stack.append(match["name"])
    return nodes


def module_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        if sub.__module__ == pe.__name__:
            out |= {sub, *module_subclasses(sub)}
    return out


def test_the_drawn_tree_is_the_class_tree() -> None:
    nodes = drawn_tree()
    assert nodes[0] == ("ParleyError", None, None, None)
    drawn = {name for name, *_ in nodes}
    real = {cls.__name__ for cls in module_subclasses(pe.ParleyError)} | {"ParleyError"}
    assert drawn == real, f"drawn but not real: {drawn - real}; real but not drawn: {real - drawn}"
    for name, parent, status, code in nodes[1:]:
        cls = getattr(pe, name)
        assert cls.__bases__ == (getattr(pe, parent),), f"{name} is drawn under {parent}, its bases are {cls.__bases__}"
        if cls in pe.FAMILIES:
            assert status is None and code is None, f"family {name} drawn with a wire code"
            assert cls not in pe.ERROR_CLASSES
        else:
            assert (cls.status, cls.code) == (status, code), f"{name}: drawn {status} {code}"
            assert cls in pe.ERROR_CLASSES and pe.error_class_for(code) is cls


def test_the_families_sort_the_leaves_by_what_a_caller_does() -> None:
    for cls in pe.ERROR_CLASSES:
        if cls is pe.ParleyError:
            continue
        # 408: the body did not arrive in time; sending the same request again is the fix.
        assert issubclass(cls, pe.Refused) == (400 <= cls.status < 500 and cls.status not in (408, 429)), cls
        assert issubclass(cls, pe.Conflict) == (cls.status == 409), cls
        assert issubclass(cls, pe.Retryable) == (cls.status in (408, 429, 503)), cls
        assert issubclass(cls, pe.ServiceUnavailable) == (cls.status == 503), cls


def test_the_sdk_exposes_the_families_and_rebuilds_leaves_under_them() -> None:
    for family in pe.FAMILIES:
        assert getattr(pc, family.__name__) is family
    assert isinstance(pc.build_error("channel_full", "full", status=409), pc.Conflict)
    assert isinstance(pc.build_error("stream_capacity", "busy", status=503), pc.ServiceUnavailable)
    assert isinstance(pc.build_error("rate_limited", "slow", status=429), pc.Retryable)
    assert not isinstance(pc.build_error("internal_error", "boom", status=500), (pc.Refused, pc.Retryable))


def test_every_wire_code_comes_back_through_the_sdk_in_its_family() -> None:
    """What the server raises and what the SDK rebuilds from the wire sit in the same families."""
    for code, status in pe.STATUS_BY_CODE.items():
        built = pc.build_error(code, "said by the server", status=status)
        server_class = pe.error_class_for(code)
        assert type(built) is server_class, code
        for family in pe.FAMILIES:
            assert isinstance(built, family) == issubclass(server_class, family), (code, family.__name__)


def test_the_journal_mapper_hands_out_leaves_of_the_tree() -> None:
    from parley.actors.failures import JOURNAL_ERRORS

    for _kind, make in JOURNAL_ERRORS:
        error = make()
        assert type(error) in pe.ERROR_CLASSES and type(error) is not pe.ParleyError, error
