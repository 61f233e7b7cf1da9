"""The demo's outside world besides the providers, on one loopback server.

- ``POST /hooks/{name}``: webhook destinations that keep what they receive (the gateway's
  resources and the watch user's webhook). A destination can be taken down (503s) and back.
- ``GET /files/{name}``: the files the rescue nodes download (``Range`` supported).
- ``GET /images/{name}``: a placeholder picture for each product picture the stand-ins name.
- ``GET /``: the demo console: what the service sent (webhooks and e-mail, newest first) and
  buttons to take a destination down or put sneakers on sale at the GOAT stand-in.
- ``GET /api/hooks``, ``/api/mail``; ``POST /api/hooks/{name}/down|up``, ``/api/sale``,
  ``/api/restock``: the same as JSON, for scripts and the demo's test.
"""

from __future__ import annotations

import hashlib
import html
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from dispatch.demo.mail import Mailbox
from dispatch.demo.serving import ThreadedServer

SHOWN = 50  # webhooks and messages on the console page
KEPT = 5000  # the newest webhooks kept


@dataclass
class Hook:
    """One request a destination received, and what it answered."""

    at: float
    destination: str
    headers: dict[str, str]
    body: Any
    status: int

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "destination": self.destination,
            "headers": self.headers,
            "body": self.body,
            "status": self.status,
        }


@dataclass
class DemoFile:
    """A file a rescue node can download: deterministic bytes, so checksums are known."""

    name: str
    size: int
    data: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        seed = hashlib.sha256(self.name.encode()).digest()
        blocks = (self.size + 31) // 32
        stream = b"".join(
            hashlib.sha256(seed + n.to_bytes(8, "big")).digest() for n in range(blocks)
        )
        self.data = stream[: self.size]

    @property
    def checksum(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


Action = Callable[[], Awaitable[str]]


class Receivers(ThreadedServer):
    def __init__(self, mailbox: Mailbox, files: list[DemoFile], port: int | None = None) -> None:
        self.mailbox = mailbox
        self.files = {item.name: item for item in files}
        self.hooks: deque[Hook] = deque(maxlen=KEPT)
        self.down: set[str] = set()
        self.actions: dict[str, tuple[str, Action]] = {}  # name -> (button label, action)
        self.notices: list[str] = []
        self._lock = threading.Lock()
        routes = [
            Route("/", self.console),
            Route("/hooks/{name}", self.receive, methods=["POST", "PUT", "PATCH"]),
            Route("/files/{name}", self.file),
            Route("/images/{name}", self.image),
            Route("/api/hooks", self.hooks_json),
            Route("/api/mail", self.mail_json),
            Route("/api/hooks/{name}/{state:str}", self.set_state, methods=["POST"]),
            Route("/api/{action:str}", self.act, methods=["POST"]),
        ]
        super().__init__(Starlette(routes=routes), port)

    def hook_url(self, name: str) -> str:
        return f"{self.url}/hooks/{name}"

    def file_url(self, name: str) -> str:
        return f"{self.url}/files/{name}"

    def received(self, destination: str | None = None) -> list[Hook]:
        with self._lock:
            return [h for h in self.hooks if destination in (None, h.destination)]

    # Destinations --------------------------------------------------------------------------

    async def receive(self, request: Request) -> Response:
        name = request.path_params["name"]
        raw = await request.body()
        try:
            body: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw.decode(errors="replace")
        status = 503 if name in self.down else 200
        hook = Hook(time.time(), name, dict(request.headers.items()), body, status)
        with self._lock:
            self.hooks.append(hook)
        if status != 200:
            return JSONResponse({"error": f"{name} is down (demo console)"}, status_code=status)
        return JSONResponse({"received": True})

    async def set_state(self, request: Request) -> Response:
        name, state = request.path_params["name"], request.path_params["state"]
        if state not in {"down", "up"}:
            return JSONResponse({"error": "down or up"}, status_code=404)
        with self._lock:
            (self.down.add if state == "down" else self.down.discard)(name)
        return self._answer(request, {"destination": name, "down": name in self.down})

    async def act(self, request: Request) -> Response:
        chosen = self.actions.get(request.path_params["action"])
        if chosen is None:
            return JSONResponse({"error": "no such action"}, status_code=404)
        said = await chosen[1]()
        with self._lock:
            self.notices.append(said)
        return self._answer(request, {"done": said})

    def _answer(self, request: Request, payload: dict[str, Any]) -> Response:
        """JSON for scripts; back to the console for its forms."""
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/", status_code=303)
        return JSONResponse(payload)

    # Files ---------------------------------------------------------------------------------

    async def file(self, request: Request) -> Response:
        item = self.files.get(request.path_params["name"])
        if item is None:
            return Response("no such file", status_code=404)
        start, header = 0, request.headers.get("range", "")
        if header.startswith("bytes="):
            first = header.removeprefix("bytes=").split("-")[0]
            start = int(first) if first.isdigit() else 0
            if start >= item.size:
                return Response(status_code=416)
        headers = {"accept-ranges": "bytes"}
        if start:
            headers["content-range"] = f"bytes {start}-{item.size - 1}/{item.size}"
            return Response(item.data[start:], status_code=206, headers=headers)
        return Response(item.data, headers=headers, media_type="application/octet-stream")

    async def image(self, request: Request) -> Response:
        """A tile in a colour of the name's own, standing in for a provider's product picture."""
        name = request.path_params["name"]
        hue = int(hashlib.sha256(name.encode()).hexdigest()[:4], 16) % 360
        svg = (
            '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="300" '
            'viewBox="0 0 300 300">'
            f'<rect width="300" height="300" fill="hsl({hue},45%,82%)"/>'
            f'<circle cx="150" cy="130" r="60" fill="hsl({hue},45%,62%)"/>'
            '<text x="150" y="250" font-family="sans-serif" font-size="22" text-anchor="middle"'
            ' fill="#33404f">demo picture</text></svg>'
        )
        headers = {"cache-control": "public, max-age=3600"}
        return Response(svg, media_type="image/svg+xml", headers=headers)

    # What was received -----------------------------------------------------------------------

    async def hooks_json(self, request: Request) -> Response:
        destination = request.query_params.get("destination")
        return JSONResponse([h.as_json() for h in self.received(destination)])

    async def mail_json(self, request: Request) -> Response:
        return JSONResponse(self.mailbox.summaries())

    async def console(self, request: Request) -> Response:
        return HTMLResponse(self._render())

    def _render(self) -> str:
        esc = html.escape
        with self._lock:
            hooks = list(reversed(self.hooks))[:SHOWN]
            down = set(self.down)
            notices = list(reversed(self.notices[-5:]))
        destinations = sorted({h.destination for h in hooks} | {"primary", "backup"})
        toggles = "".join(_toggle(name, name in down) for name in destinations)
        buttons = "".join(
            f'<form method="post" action="/api/{esc(key)}"><button>{esc(label)}</button></form>'
            for key, (label, _action) in self.actions.items()
        )
        hook_rows = (
            "".join(
                f"<tr><td>{time.strftime('%H:%M:%S', time.localtime(h.at))}</td>"
                f"<td>{esc(h.destination)}</td><td>{h.status}</td>"
                f"<td>{esc(h.headers.get('webhook-id', ''))}</td>"
                f"<td>{_body_cell(h.body)}</td></tr>"
                for h in hooks
            )
            or '<tr><td colspan="5">Nothing yet.</td></tr>'
        )
        mails = list(reversed(self.mailbox.summaries()[-SHOWN:]))
        mail_rows = (
            "".join(
                f"<tr><td>{esc(m['to'])}</td><td>{esc(m['subject'])}</td>"
                f"<td><pre>{esc(m['body'][:800])}</pre></td></tr>"
                for m in mails
            )
            or '<tr><td colspan="3">Nothing yet.</td></tr>'
        )
        said = "".join(f"<li>{esc(n)}</li>" for n in notices)
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dispatch demo console</title>
<meta http-equiv="refresh" content="3">
<style>
body{{font:14px system-ui,sans-serif;margin:1.5rem;color:#1d2530}}
h1{{font-size:1.3rem}} h2{{font-size:1.05rem;margin-top:1.5rem}}
form{{display:inline-block;margin:0 .4rem .4rem 0}}
button{{padding:.35rem .7rem;border:1px solid #8895a7;border-radius:4px;background:#f3f5f8;
cursor:pointer}} table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #dde2e8;padding:.3rem .5rem;text-align:left;vertical-align:top}}
pre{{margin:0;white-space:pre-wrap;font-size:12px}}
.muted{{color:#5b6676}}
</style></head><body>
<h1>Dispatch demo console</h1>
<p class="muted">What Dispatch sent to the outside world, which the demo plays on 127.0.0.1.
This page refreshes every 3 seconds.</p>
<div>{toggles}</div><div>{buttons}</div>
<ul class="muted">{said}</ul>
<h2>Webhooks received ({len(self.hooks)})</h2>
<table><tr><th>Time</th><th>Destination</th><th>Answered</th><th>webhook-id</th><th>Body</th></tr>
{hook_rows}</table>
<h2>E-mail received ({len(self.mailbox.messages)})</h2>
<table><tr><th>To</th><th>Subject</th><th>Body</th></tr>{mail_rows}</table>
</body></html>"""


def _toggle(name: str, down: bool) -> str:
    """The console button that takes a destination down, or brings it back up."""
    state, label = ("up", "back up") if down else ("down", "down")
    verb = "Bring" if down else "Take"
    return (
        f'<form method="post" action="/api/hooks/{html.escape(name)}/{state}">'
        f"<button>{verb} <b>{html.escape(name)}</b> {label}</button></form>"
    )


def _body_cell(body: Any) -> str:
    """A watch alert in one line (its type, listing and price) above its whole body; else
    the start of the body."""
    listing: dict[str, Any] = {}
    if isinstance(body, dict) and isinstance(body.get("event"), dict):
        listing = body["event"].get("payload", {}).get("listing") or {}
    if not listing:
        return f"<pre>{html.escape(orjson.dumps(body).decode()[:300])}</pre>"
    price = listing.get("price_minor")
    said = f"{body.get('type', '')} {listing.get('title', '')}"
    if price:
        said += f" at {price / 100:,.2f} {listing.get('currency', '')}"
    full = orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()[:4000]
    return (
        f'<span class="said">{html.escape(said)}</span><details><summary>body</summary>'
        f"<pre>{html.escape(full)}</pre></details>"
    )
