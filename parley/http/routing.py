"""The route table's vocabulary and the matcher derived from it (ADR-0033).

A :class:`Route` is one operation: a method, a path pattern, the handler,
its metric label, its auth rule and its OpenAPI description. The table
itself is :data:`parley.http.routes.ROUTES`; this module turns it into the
dispatcher's lookup (:class:`Router`) without knowing any route.

Caucus's 404/405 matrix (channels.md §4.2) is not "405 when the path is
known": ``/channels/:c/<action>`` checks the method *before* the action
(``GET /channels/x/foo`` is 405, ``POST /channels/x/foo`` 404), a non-GET on
``/openapi.json`` is 404, and a plain request on ``/v1/ws`` is 426. So each
path carries a :class:`Miss` rule saying what any method it does not serve
gets, and paths that serve nothing but a miss (the catch-alls) are entries
with ``method=None``.

Matching follows the contract's precedence: every :data:`RAW` path (served
before the body is buffered: artifacts, the SSE stream, the console) is
tried before the body is read, then the :data:`JSON` paths. Within a stage
the most specific path wins (fixed length before a ``{rest...}`` tail, then
more literal segments); two equally specific paths that could match the same
request are refused when the table is built.
"""

from __future__ import annotations

import enum
import operator
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import MethodNotAllowed, NotFound, ParleyError, UpgradeRequired

Handler = Callable[..., Awaitable[Any]]

#: The metric label of a request no operation took (an unknown path, a wrong method, a bad body).
UNMATCHED = "unmatched"


class Serve(enum.Enum):
    """Who answers a route, and when."""

    #: The dispatcher, before the body is buffered (raw bytes or none: artifacts, SSE, the console).
    RAW = "raw"
    #: The dispatcher, after the body is buffered and parsed as JSON (channels.md §4.1).
    JSON = "json"
    #: A Quart WebSocket route; the handler is a view factory ``(backbone, metrics, label) -> view``.
    WEBSOCKET = "websocket"
    #: An ASGI mount in front of Quart (``/mcp``, ADR-0015); no handler here.
    MOUNT = "mount"


RAW, JSON, WEBSOCKET, MOUNT = Serve.RAW, Serve.JSON, Serve.WEBSOCKET, Serve.MOUNT


class Miss(enum.Enum):
    """What a method gets on a path that has no operation for it."""

    METHOD_NOT_ALLOWED = "405"
    #: The method is checked before the action: 405 unless POST, then 404 (``/channels/:c/<action>``).
    POST_OR_405 = "post-or-405"
    NOT_FOUND = "404"
    UPGRADE_REQUIRED = "426"
    #: Every method reaches the path's one handler, which answers it (the console: 404 before 405).
    HANDLER = "handler"

    def error(self, method: str) -> ParleyError:
        if self is Miss.METHOD_NOT_ALLOWED or (self is Miss.POST_OR_405 and method != "POST"):
            return MethodNotAllowed()
        if self is Miss.UPGRADE_REQUIRED:
            return UpgradeRequired("this route needs a WebSocket upgrade")
        return NotFound()


#: ``none`` | ``read`` (bearer only with PARLEY_READ_AUTH=token) | ``write`` | ``admin`` | ``session``
AUTH_RULES = ("none", "read", "write", "admin", "session")


@dataclass(frozen=True)
class Route:
    """One operation of the table (or, with ``method=None``, a path that only answers its miss)."""

    method: str | None
    path: str
    handler: Handler | None
    label: str
    auth: str
    #: The OpenAPI operation (:class:`parley.http.route_docs.Doc`); ``None`` for a catch-all.
    doc: Any = None
    serve: Serve = JSON
    otherwise: Miss = Miss.METHOD_NOT_ALLOWED
    #: Its latency goes to ``parley_write_seconds`` (the write routes).
    timed: bool = False

    def __post_init__(self) -> None:
        assert self.auth in AUTH_RULES, self.auth
        assert (self.method is None) == (self.doc is None), f"{self.path}: a catch-all has no doc, an operation has one"

    @property
    def quart_rule(self) -> str:
        """The path as a Werkzeug rule (``/channels/<channel>/ws``), for the routes Quart serves."""
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)


_PARAM = re.compile(r"^\{(\w+)\}$")
_TAIL = re.compile(r"^\{(\w+)\.\.\.\}$")


@dataclass
class _Path:
    """One path pattern of a stage with its operations, compiled for matching."""

    pattern: str
    stage: Serve
    literals: tuple[tuple[int, str], ...]
    params: tuple[int, ...]
    length: int
    tail: bool
    order: int
    otherwise: Miss = Miss.METHOD_NOT_ALLOWED
    operations: dict[str, Route] = field(default_factory=dict)
    #: Misses are counted under the label of the path's catch-all entry, if it has one.
    miss_label: str = UNMATCHED

    @classmethod
    def compile(cls, pattern: str, stage: Serve, order: int) -> _Path:
        parts = [p for p in pattern.split("/") if p]
        tail = bool(parts) and _TAIL.match(parts[-1]) is not None
        literals, params = [], []
        for i, part in enumerate(parts):
            if _PARAM.match(part) or (tail and i == len(parts) - 1):
                params.append(i)
            else:
                literals.append((i, part))
        return cls(pattern, stage, tuple(literals), tuple(params), len(parts), tail, order)

    def rank(self) -> tuple[bool, int, int]:
        return (self.tail, -len(self.literals), self.order)

    def match(self, segments: list[str]) -> list[str] | None:
        for i, literal in self.literals:
            if segments[i] != literal:
                return None
        if self.tail:
            fixed = [segments[i] for i in self.params[:-1]]
            return [*fixed, "/".join(segments[self.length - 1 :])]
        return [segments[i] for i in self.params]

    def overlaps(self, other: _Path) -> bool:
        """Could one request match both (same length, no literal position that tells them apart)?"""
        if self.tail or other.tail or self.length != other.length:
            return self.tail and other.tail and self.length == other.length and self._literals_agree(other)
        return self._literals_agree(other)

    def _literals_agree(self, other: _Path) -> bool:
        mine = dict(self.literals)
        return all(mine.get(i, lit) == lit for i, lit in other.literals)


def _getter(positions: tuple[int, ...]) -> Callable[[list[str]], Any]:
    """The segments at ``positions`` as a dict key (``itemgetter``: no Python frame per lookup)."""
    if not positions:
        return lambda segments: ()
    return operator.itemgetter(*positions)


def _key(literals: tuple[tuple[int, str], ...]) -> Any:
    """The key :func:`_getter` yields for these literals (a bare string for one position)."""
    values = tuple(value for _, value in literals)
    return values[0] if len(values) == 1 else values


@dataclass(frozen=True, slots=True)
class Found:
    """The outcome of a lookup: the route to run with its path parameters, or the error to answer."""

    route: Route | None
    params: list[str]
    error: ParleyError | None = None
    label: str = ""


class Router:
    """The dispatcher's view of the table: ``find(stage, method, segments)``."""

    def __init__(self, routes: Iterable[Route]) -> None:
        paths: dict[tuple[Serve, str], _Path] = {}
        for order, route in enumerate(routes):
            if route.serve not in (RAW, JSON):
                continue
            path = paths.get((route.serve, route.path))
            if path is None:
                path = paths[(route.serve, route.path)] = _Path.compile(route.path, route.serve, order)
                path.otherwise = route.otherwise
            assert path.otherwise is route.otherwise, f"{route.path}: its routes disagree on the miss rule"
            if route.method is None:
                path.miss_label = route.label
            else:
                assert route.method not in path.operations, f"{route.method} {route.path} is listed twice"
                path.operations[route.method] = route
        self._check_unambiguous(paths.values())
        #: (stage, segment count) → its shapes, most specific first: (a getter of the literal
        #: positions, {their values: path}). Equally specific shapes cannot both match (checked
        #: above), so the first shape whose key is present wins.
        self._shapes: dict[tuple[Serve, int], list[tuple[tuple[int, ...], Callable[[list[str]], Any], dict]]] = {}
        #: stage → paths ending in a ``{rest...}`` tail, most specific first.
        self._tails: dict[Serve, list[_Path]] = {}
        for path in sorted(paths.values(), key=_Path.rank):
            if path.tail:
                self._tails.setdefault(path.stage, []).append(path)
                continue
            shapes = self._shapes.setdefault((path.stage, path.length), [])
            positions = tuple(i for i, _ in path.literals)
            table = next((t for p, _, t in shapes if p == positions), None)
            if table is None:
                table = {}
                shapes.append((positions, _getter(positions), table))
            table[_key(path.literals)] = path

    @staticmethod
    def _check_unambiguous(paths: Iterable[_Path]) -> None:
        listed = list(paths)
        for i, a in enumerate(listed):
            for b in listed[i + 1 :]:
                if a.stage is b.stage and a.rank()[:2] == b.rank()[:2] and a.overlaps(b):
                    raise ValueError(f"ambiguous routes: {a.pattern} and {b.pattern}")

    def find(self, stage: Serve, method: str, segments: list[str]) -> Found | None:
        """The route for a request in ``stage``, the miss error of its path, or ``None`` (no path matches)."""
        n = len(segments)
        for _positions, key_of, table in self._shapes.get((stage, n), ()):
            path = table.get(key_of(segments))
            if path is not None:
                return self._resolve(path, method, [segments[i] for i in path.params])
        for path in self._tails.get(stage, ()):
            if n >= path.length:
                params = path.match(segments)
                if params is not None:
                    return self._resolve(path, method, params)
        return None

    @staticmethod
    def _resolve(path: _Path, method: str, params: list[str]) -> Found:
        route = path.operations.get(method)
        if route is None and path.otherwise is Miss.HANDLER and path.operations:
            route = next(iter(path.operations.values()))
        if route is not None:
            return Found(route, params, label=route.label)
        return Found(None, params, path.otherwise.error(method), path.miss_label)
