"""A page loaded in a real headless Chromium, seen through the Chrome DevTools Protocol: what the
console, the log and the network reported while it loaded, and whether its images rendered.

:func:`load_page` starts ``chromium --headless`` with a throw-away profile and
``--remote-debugging-port=0``, reads the port from the profile's ``DevToolsActivePort``, connects
to the page target with websocket-client, enables Runtime, Log, Network and Page, navigates, waits
for the load event (and a short quiet spell for late requests such as a favicon) and inspects
every ``<img>``, ``<object>``, ``<embed>`` and inline ``<svg>``. Everything is bounded by one
timeout; Chromium's process group is killed and its profile removed however the call ends.
:func:`serve_directory` serves a folder over HTTP on loopback, for pages that are also viewed
through a web server."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import websocket

__all__ = ["BrowserError", "Image", "PageLoad", "chromium", "load_page", "serve_directory"]

TIMEOUT_S: Final = 30.0
"""The default bound on a whole :func:`load_page`: start, load, inspection."""
QUIET_S: Final = 0.5
"""How long after the load event events are still collected (a favicon is requested after it)."""
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--remote-debugging-port=0",
)

# Every element that shows a picture, as plain data (returnByValue).
_INSPECT: Final = """(() => ({
  images: Array.from(document.images, (img) => ({
    alt: img.alt,
    src: img.currentSrc.slice(0, 64),
    complete: img.complete,
    width: img.naturalWidth,
    height: img.naturalHeight,
  })),
  objects: document.querySelectorAll("object, embed").length,
  svgs: document.querySelectorAll("svg").length,
}))()"""


class BrowserError(RuntimeError):
    """Chromium did not start, its DevTools did not answer, or the timeout ran out."""


@dataclass(frozen=True)
class Image:
    """One ``<img>`` after the load: ``src`` is cut to 64 characters."""

    alt: str
    src: str
    complete: bool
    width: int
    height: int

    @property
    def loaded(self) -> bool:
        return self.complete and self.width > 0 and self.height > 0


@dataclass
class PageLoad:
    """What one page load showed: console calls of type error / warning (``"type: text"``),
    uncaught exceptions, log entries of level error (``"source: text url"``), failed requests
    (``"url: errorText"``), the images, and the count of ``<object>``/``<embed>`` and ``<svg>``."""

    console_errors: list[str] = field(default_factory=list)
    console_warnings: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    objects: int = 0
    svgs: int = 0
    _urls: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def problems(self) -> list[str]:
        """Every console error, exception, error log entry, failed load and unloaded image."""
        unloaded = [f"image not loaded: {i.alt!r} {i.src}" for i in self.images if not i.loaded]
        return [
            *self.console_errors,
            *self.exceptions,
            *self.log_errors,
            *self.failed_loads,
            *unloaded,
        ]

    def record(self, method: str, params: dict[str, Any]) -> None:
        """Keep what a DevTools event says about the page's health; ignore the rest."""
        if method == "Runtime.consoleAPICalled":
            kind = params["type"]
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            if kind == "warning":
                self.console_warnings.append(f"{kind}: {text}")
            elif kind in ("error", "assert"):
                self.console_errors.append(f"{kind}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            description = details.get("exception", {}).get("description", "")
            self.exceptions.append(f"{details['text']} {description}".strip())
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.log_errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}")
        elif method == "Network.requestWillBeSent":
            self._urls[params["requestId"]] = params["request"]["url"][:120]
        elif method == "Network.loadingFailed":
            url = self._urls.get(params["requestId"], params["requestId"])
            self.failed_loads.append(f"{url}: {params['errorText']}")


def chromium() -> str | None:
    """The Chromium executable on PATH (Debian's ``chromium`` first), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


class _Session:
    """One DevTools websocket: commands answered by id, every event handed to ``on_event``."""

    def __init__(self, url: str, deadline: float, on_event: Any) -> None:
        self._deadline = deadline
        self._on_event = on_event
        self._next = 0
        self.seen: set[str] = set()
        """The events received (their methods): cleared by whoever waits for one."""
        # No Origin header: Chromium refuses DevTools connections from origins it was not told of.
        self._ws = websocket.create_connection(
            url, timeout=self._left(), suppress_origin=True, enable_multithread=False
        )

    def _left(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise BrowserError("timed out waiting for the browser")
        return left

    def _receive(self, until: float | None = None) -> dict[str, Any] | None:
        """The next message, or None when ``until`` (a monotonic time) passed first."""
        end = self._deadline if until is None else min(until, self._deadline)
        left = end - time.monotonic()
        if left <= 0:
            if until is not None and until < self._deadline:
                return None
            raise BrowserError("timed out waiting for the browser")
        self._ws.settimeout(left)
        try:
            message: dict[str, Any] = json.loads(self._ws.recv())
        except websocket.WebSocketTimeoutException:
            if until is not None and until < self._deadline:
                return None
            raise BrowserError("timed out waiting for the browser") from None
        if "method" in message:
            self.seen.add(message["method"])
            self._on_event(message["method"], message.get("params", {}))
        return message

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command and return its result; events that arrive meanwhile are recorded."""
        self._next += 1
        self._ws.settimeout(self._left())
        self._ws.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:
            message = self._receive()
            if message is not None and message.get("id") == self._next:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def wait_for(self, event: str) -> None:
        """Record events until ``event`` has arrived (since :attr:`seen` was last cleared)."""
        while event not in self.seen:
            self._receive()

    def drain(self, seconds: float) -> None:
        """Record events for ``seconds``."""
        until = time.monotonic() + seconds
        while self._receive(until) is not None:
            pass

    def close(self) -> None:
        self._ws.close()


def _devtools_port(
    profile: Path, process: subprocess.Popen[bytes], log: Path, deadline: float
) -> int:
    """The port Chromium wrote to ``profile``/DevToolsActivePort (first line)."""
    active = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrowserError(f"chromium exited with {process.returncode}: {_tail(log)}")
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            return int(active.read_text().splitlines()[0])
        time.sleep(0.05)
    raise BrowserError(f"chromium wrote no DevToolsActivePort: {_tail(log)}")


def _page_target(port: int, deadline: float) -> str:
    """The websocket URL of the first page target (the ``about:blank`` Chromium opened)."""
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            url = f"http://127.0.0.1:{port}/json/list"
            with urllib.request.urlopen(url, timeout=max(0.1, deadline - time.monotonic())) as r:
                targets = json.load(r)
            pages = [t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"]
            if pages:
                return str(pages[0])
        time.sleep(0.05)
    raise BrowserError("chromium listed no page target")


def _tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(log.read_text(errors="replace").splitlines()[-8:])
    return ""


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Kill Chromium's whole process group (browser, zygote, renderers, GPU and utility
    processes) and reap the browser."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            # The browser is gone; whatever of its group is left goes now.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        return


def load_page(page: Path | str, *, timeout: float = TIMEOUT_S) -> PageLoad:
    """Open ``page`` (a file or a URL) in a fresh headless Chromium and report what its load
    showed. Raises :class:`BrowserError` when Chromium cannot be started or driven, or when the
    whole call takes longer than ``timeout`` seconds; a page that fails to navigate or to load
    is not an error of this function but is reported in :attr:`PageLoad.failed_loads`."""
    binary = chromium()
    if binary is None:
        raise BrowserError("no chromium on PATH")
    url = page.resolve().as_uri() if isinstance(page, Path) else page
    deadline = time.monotonic() + timeout
    result = PageLoad()
    with tempfile.TemporaryDirectory(prefix="copur-chromium-", ignore_cleanup_errors=True) as tmp:
        profile, log = Path(tmp) / "profile", Path(tmp) / "chromium.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole below
            )
        try:
            port = _devtools_port(profile, process, log, deadline)
            session = _Session(_page_target(port, deadline), deadline, result.record)
            try:
                for domain in ("Runtime", "Log", "Network", "Page"):
                    session.call(f"{domain}.enable")
                session.seen.clear()
                navigated = session.call("Page.navigate", url=url)
                if "errorText" in navigated:
                    result.failed_loads.append(f"{url}: {navigated['errorText']}")
                    return result
                session.wait_for("Page.loadEventFired")
                session.drain(QUIET_S)
                seen = session.call("Runtime.evaluate", expression=_INSPECT, returnByValue=True)
                if "exceptionDetails" in seen:
                    raise BrowserError(f"inspecting the page failed: {seen['exceptionDetails']}")
                value = seen["result"]["value"]
                result.images = [Image(**i) for i in value["images"]]
                result.objects, result.svgs = value["objects"], value["svgs"]
            finally:
                session.close()
        finally:
            _stop(process)
    return result


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """``root`` served over HTTP on 127.0.0.1 (a free port) in a thread; yields the base URL
    (with a trailing slash); stopped on exit."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, name="serve-directory", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            thread.join(timeout=5)
