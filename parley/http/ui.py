"""``GET /ui`` and ``GET /ui/<asset>``: the web console's static files (ADR-0017).

The assets are read once from the installed package (``parley.ui/static``)
and answered from memory with their content type, an ``ETag`` (so a browser
revalidates instead of refetching, and an upgrade is seen at once) and a
strict Content-Security-Policy: the page may talk to its own origin only,
runs no inline script and cannot be framed. The console speaks the public
HTTP API like any other client; nothing here reads a channel.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from quart import Response

from ..errors import MethodNotAllowed, NotFound

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
INDEX = "index.html"


class Asset:
    __slots__ = ("data", "content_type", "etag")

    def __init__(self, name: str, data: bytes) -> None:
        self.data = data
        self.content_type = CONTENT_TYPES[name[name.rindex(".") :]]
        self.etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def load_assets() -> dict[str, Asset]:
    """Every file of ``parley.ui/static`` with a known type, by file name."""
    folder = resources.files("parley.ui").joinpath("static")
    assets = {}
    for entry in folder.iterdir():
        suffix = entry.name[entry.name.rfind(".") :] if "." in entry.name else ""
        if entry.is_file() and suffix in CONTENT_TYPES:
            assets[entry.name] = Asset(entry.name, entry.read_bytes())
    return assets


_assets: dict[str, Asset] | None = None


def assets() -> dict[str, Asset]:
    global _assets
    if _assets is None:
        _assets = load_assets()
    return _assets


async def serve(ctx, name: str = INDEX) -> Response:
    """``GET /ui`` (the page) or ``GET /ui/<name>``; every method comes here, so an
    unknown file is 404 before a wrong method is 405."""
    request = ctx.request
    asset = assets().get(name)
    if asset is None:
        raise NotFound()
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed()
    fresh = request.headers.get("if-none-match") == asset.etag
    response = Response(b"" if fresh else asset.data, status=304 if fresh else 200, content_type=asset.content_type)
    response.headers["etag"] = asset.etag
    response.headers["cache-control"] = "no-cache"
    response.headers["content-security-policy"] = CSP
    response.headers["x-content-type-options"] = "nosniff"
    response.headers["referrer-policy"] = "no-referrer"
    response.headers["x-frame-options"] = "DENY"
    return response
