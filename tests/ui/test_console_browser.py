"""The web console at /ui in headless Chromium (Debian's ``chromium``, driven by Playwright).

One real ``parley serve`` subprocess on a SQLite file, one browser and one page
for the module; the tests run in file order and build on each other's data.
"Dropping the stream" is real: the server is killed (-9) and a new one starts on
the same port and the same database file. Screenshots go to tests/artifacts/ui/.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.process import start_server

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "ui"
SHOWN_WITHIN_MS = 5000  # the bound for a pushed message to appear
CHANNEL = "war-room"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid() -> str:
    return "".join(CROCKFORD[b % 32] for b in uuid.uuid4().bytes + uuid.uuid4().bytes[:10])


def _playwright():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("PARLEY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing and PARLEY_REQUIRE_BROWSER=1 (apt-get install -y chromium)", pytrace=False)
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from playwright.sync_api import expect, sync_playwright

    return sync_playwright, expect


class Console:
    """The shared server, browser and page, with what the page did recorded."""

    def __init__(self, tmp: Path, pw, browser) -> None:
        self.tmp = tmp
        self.db_url = f"sqlite:///{tmp / 'console.db'}"
        self.server = start_server(self.db_url, tmp)
        self.port = self.server.url.rsplit(":", 1)[1]
        self.pw = pw
        self.browser = browser
        self.page = browser.new_page(viewport={"width": 1280, "height": 800})
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.console_errors.append(f"pageerror: {e}"))

    def http(self, token: str | None = None) -> httpx.Client:
        return self.server.client(token)

    def append(self, body: str, token: str = "tok-a", **extra) -> dict:
        msg = {"type": "note", "body": body, "msg_id": ulid(), **extra}
        with self.http(token) as c:
            r = c.post(f"/channels/{CHANNEL}/append", json=msg)
        assert r.status_code == 201, r.text
        return r.json()

    def all_messages(self) -> list[dict]:
        with self.http() as c:
            return c.post(f"/channels/{CHANNEL}/read", json={"cursor": 0, "limit": 500}).json()["messages"]

    def restart(self) -> None:
        self.server.kill9()
        self.server.close()
        self.server = start_server(self.db_url, self.tmp, PORT=self.port)

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    sync_playwright, _ = _playwright()
    tmp = tmp_path_factory.mktemp("console")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        c = Console(tmp, pw, browser)
        try:
            with c.http("tok-a") as alice:
                assert alice.post("/channels", json={"channel": CHANNEL, "purpose": "incident 42"}).status_code == 201
            c.append("first finding", type="finding")
            with c.http("tok-b") as bob:
                claim = {"type": "claim", "body": "I take the db", "msg_id": ulid(), "target": "db-migration", "lease_ttl": 600}
                assert bob.post(f"/channels/{CHANNEL}/claim", json=claim).json()["outcome"] == "granted"
            with c.http("tok-a") as alice:
                session = {"actions": [{"subscribe": {"channel": CHANNEL, "from": "start"}}]}
                assert alice.post("/v1/session", json=session).status_code == 200
            c.page.goto(f"{c.server.url}/ui#/c/{CHANNEL}")
            yield c
        finally:
            browser.close()
            c.close()


@pytest.fixture(scope="module")
def expect():
    return _playwright()[1]


def log_items(page):
    return page.locator("#log > li.msg")


def test_console_loads_with_no_console_errors(console, expect):
    page = console.page
    expect(page.locator(f'button[data-channel="{CHANNEL}"]')).to_contain_text("incident 42")
    expect(page.locator("#stream-state")).to_have_text("live")
    expect(log_items(page)).to_have_count(2)
    expect(log_items(page).first).to_contain_text("finding")
    expect(page.locator("#peers li", has_text="sess-b")).to_contain_text("active")
    spark = page.locator(f'button[data-channel="{CHANNEL}"] svg')
    expect(spark).to_have_attribute("aria-label", f"2 messages in the last hour in #{CHANNEL}")
    assert console.console_errors == []


def test_a_new_channel_appears_in_the_list_without_a_reload(console, expect):
    with console.http("tok-b") as bob:
        assert bob.post("/channels", json={"channel": "side-quest", "purpose": "later"}).status_code == 201
    expect(console.page.locator('button[data-channel="side-quest"]')).to_contain_text("later")


def test_channels_open_from_the_keyboard(console, expect):
    page = console.page
    page.locator('button[data-channel="side-quest"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator("#log-title")).to_have_text("#side-quest")
    order = page.locator("#channel-list button").evaluate_all("els => els.map(e => e.dataset.channel)")
    # Focus survives the list's redraws; the neighbour is one Tab away.
    page.keyboard.press("Tab" if order.index(CHANNEL) > order.index("side-quest") else "Shift+Tab")
    expect(page.locator(f'button[data-channel="{CHANNEL}"]')).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#log-title")).to_have_text(f"#{CHANNEL}")
    expect(page.locator(f'button[data-channel="{CHANNEL}"]')).to_have_attribute("aria-current", "true")
    expect(log_items(page)).to_have_count(2)


def test_a_message_appended_over_http_appears_without_a_reload(console, expect):
    page = console.page
    sent = console.append("pushed after load", to=["sess-b"], status="needs-response")
    item = page.locator(f'li.msg[data-msg-id="{sent["message"]["msg_id"]}"]')
    expect(item).to_be_visible(timeout=SHOWN_WITHIN_MS)
    expect(item.locator(".meta")).to_contain_text("sess-a")
    expect(item.locator(".meta")).to_contain_text("(alice)")
    expect(item.locator(".meta")).to_contain_text("→ sess-b")
    expect(item.locator(".meta")).to_contain_text("needs-response")


def test_a_claim_and_its_holder_are_visible(console, expect):
    claim = console.page.locator('#claims-live li[data-target="db-migration"]')
    expect(claim).to_contain_text("sess-b")
    expect(claim).to_contain_text("(bob)")
    expect(claim.locator(".lease")).to_have_text(re.compile(r"^\d+m \d\ds left$"))
    expect(console.page.locator("#claims-chart svg")).to_have_attribute("aria-label", "1 open, 0 resolved claims")
    with console.http("tok-b") as bob:
        for op in ("claim", "done"):
            msg = {"type": "claim", "body": f"{op} the cache", "msg_id": ulid(), "target": "cache"}
            assert bob.post(f"/channels/{CHANNEL}/{op}", json=msg).json()["outcome"] == "granted"
    expect(console.page.locator("#claims-resolved li")).to_contain_text(["cache by sess-b"])
    expect(console.page.locator("#claims-chart svg")).to_have_attribute("aria-label", "1 open, 1 resolved claims")


def test_an_artifact_has_a_download_link(console, expect):
    blob = b"trace bytes"
    sha = hashlib.sha256(blob).hexdigest()
    with console.http("tok-a") as alice:
        assert alice.put(f"/channels/{CHANNEL}/artifacts/{sha}", content=blob).status_code == 201
    sent = console.append("trace attached", artifact=f"caucus://artifact/{CHANNEL}/{sha}")
    link = console.page.locator(f'li.msg[data-msg-id="{sent["message"]["msg_id"]}"] a.artifact')
    expect(link).to_have_attribute("href", f"/channels/{CHANNEL}/artifacts/{sha}")
    with console.page.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_bytes() == blob


def test_a_body_with_script_is_shown_as_text(console, expect):
    page = console.page
    body = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b>'
    sent = console.append(body)
    item = page.locator(f'li.msg[data-msg-id="{sent["message"]["msg_id"]}"]')
    expect(item.locator(".body")).to_have_text(body)
    assert item.locator("script, img, b").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_a_steer_posted_through_the_page_reads_back_anchored_to_the_token(console, expect):
    page = console.page
    expect(page.get_by_role("textbox", name="Steer")).to_be_hidden()
    page.get_by_label("Bearer token").fill("tok-a")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text("sess-a")
    expect(page.locator("#sessions li")).to_contain_text([re.compile(rf"inbox · 1 turn · idle.*#{CHANNEL} @\d+")])
    page.get_by_role("textbox", name="Steer").fill("stop the rollout, check the canary first")
    page.get_by_role("button", name="Send steer").click()
    expect(page.locator("#steer-result")).to_contain_text("Posted as #")
    expect(page.locator("#log li.msg").last).to_contain_text("stop the rollout")
    last = console.all_messages()[-1]
    assert (last["type"], last["body"]) == ("steer", "stop the rollout, check the canary first")
    assert (last["agent_id"], last["owner"]) == ("sess-a", "alice")
    assert page.evaluate("sessionStorage.getItem('parley.token')") == "tok-a"
    assert page.evaluate("document.cookie") == ""
    assert all("tok-a" not in url for url in console.requests)


def test_after_the_server_drops_the_stream_the_page_resumes_with_no_gap_and_no_duplicate(console, expect):
    page = console.page
    before = log_items(page).count()
    console.restart()  # kill -9: the page's stream breaks mid-flight
    first = console.append("written while the page was reconnecting")  # the backlog of the resume
    expect(page.locator("#stream-state")).to_have_text("live", timeout=10_000)
    second = console.append("written after the resume")  # live again
    expect(log_items(page)).to_have_count(before + 2, timeout=SHOWN_WITHIN_MS)
    expect(page.locator(f'li.msg[data-msg-id="{second["message"]["msg_id"]}"]')).to_be_visible()
    cursors = [int(c) for c in log_items(page).evaluate_all("els => els.map(e => e.dataset.cursor)")]
    ids = log_items(page).evaluate_all("els => els.map(e => e.dataset.msgId)")
    stored = console.all_messages()
    assert cursors == list(range(1, len(stored) + 1))
    assert ids == [m["msg_id"] for m in stored]
    assert first["message"]["msg_id"] in ids


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_screenshots_and_no_horizontal_overflow(console, expect, width, height):
    page = console.page
    console.append(f"{width}: " + "x" * 3000 + "\n" + "a-very-long-unbroken-token-" * 20)  # long body: collapsed, wrapped
    page.set_viewport_size({"width": width, "height": height})
    expect(page.locator("#log li.msg").last.get_by_role("button", name="Show full message")).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{width}x{height}.png"))
    page.screenshot(path=str(ARTIFACTS / f"console-{width}x{height}-full.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {width}px"


CONTRAST = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((acc, v, i) => acc + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (el) => {
    for (let n = el; n; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const bad = [];
  for (const el of document.querySelectorAll("body *")) {
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const box = el.getBoundingClientRect();
    if (!box.width || !box.height || el.closest("[hidden], button:disabled, svg")) continue;
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) bad.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)}`);
  }
  return bad;
}"""


def test_text_has_readable_contrast(console):
    # WCAG AA for normal text (4.5:1) on every visible text element, against its painted background.
    assert console.page.evaluate(CONTRAST) == []


def test_the_page_makes_no_request_to_another_host(console):
    origin = console.server.url
    assert console.requests, "no request was recorded"
    foreign = [u for u in console.requests if not (u == origin or u.startswith(origin + "/"))]
    assert foreign == []


def test_with_read_auth_the_page_asks_for_a_token_before_it_shows_anything(console, expect):
    server = start_server(f"sqlite:///{console.tmp / 'guarded.db'}", console.tmp, PARLEY_READ_AUTH="token")
    page = console.browser.new_page()
    try:
        with server.client("tok-a") as alice:
            assert alice.post("/channels", json={"channel": "secret-ops"}).status_code == 201
        page.goto(f"{server.url}/ui#/c/secret-ops")
        expect(page.locator("#gate")).to_be_visible()
        expect(page.locator("#app")).to_be_hidden()
        assert page.locator("#channel-list li").count() == 0
        page.get_by_label("Bearer token").fill("tok-a")
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator('button[data-channel="secret-ops"]')).to_be_visible()
        expect(page.locator("#stream-state")).to_have_text("live")
        with server.client("tok-b") as bob:
            msg = {"type": "note", "body": "only for token holders", "msg_id": ulid()}
            assert bob.post("/channels/secret-ops/append", json=msg).status_code == 201
        expect(page.locator("#log li.msg")).to_contain_text(["only for token holders"], timeout=SHOWN_WITHIN_MS)
        page.get_by_role("button", name="Sign out").click()  # signed out, the page shows nothing again
        expect(page.locator("#gate")).to_be_visible()
        expect(page.locator("#log li")).to_have_count(0)
        assert page.evaluate("() => sessionStorage.length") == 0
    finally:
        page.close()
        server.close()
