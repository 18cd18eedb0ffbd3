"""An ASGI app (FastAPI) served by uvicorn in a background thread of a blocking process, beside its
gRPC server: :class:`BackgroundHttpServer`.

It binds its socket itself, before uvicorn starts, so a port that cannot be bound is a one-line
CopurError naming it (not uvicorn's ``sys.exit`` in another thread), and port 0 tells its free port
at once. It learns that uvicorn is up (or gave up) from uvicorn's own startup, never by polling, and
stops it with uvicorn's ``should_exit``."""

from __future__ import annotations

import socket
import threading
from typing import Any, Final

import uvicorn

from copur.errors import CopurError
from copur.transport.grpc_server import host_port
from copur.transport.tls.credentials import HttpsFiles

__all__ = ["BackgroundHttpServer"]

STARTUP_TIMEOUT_S: Final = 10.0


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, setting ``startup_over`` once its startup has ended, served or failed."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_over = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.startup_over.set()


class BackgroundHttpServer:
    """``app`` on ``host:port`` (port 0 picks a free one, see ``.port`` after :meth:`start`) under
    uvicorn, in a daemon thread named ``name``: HTTPS with ``https``'s key pair, plain HTTP with
    None. No access log, no lifespan, uvicorn logs warnings only.

    Guarantees: :meth:`start` returns once uvicorn accepts connections, or raises a one-line
    CopurError (the port cannot be bound, or uvicorn did not start within ``startup_timeout_s``)
    having released the port; :meth:`stop` is idempotent and returns once the thread has ended (or
    ``timeout`` passed)."""

    def __init__(
        self,
        app: Any,
        *,
        host: str,
        port: int = 0,
        name: str,
        https: HttpsFiles | None = None,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.https = https
        self.host = host
        self.name = name
        self.startup_timeout_s = startup_timeout_s
        self._requested_port = port
        self._port: int | None = None
        self._socket: socket.socket | None = None
        self._server: _Uvicorn | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port bound by :meth:`start`."""
        if self._port is None:
            raise CopurError(f"{self.name}: not started")
        return self._port

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError as exc:
            sock.close()
            address = host_port(self.host, self._requested_port)
            why = f"{self.name}: cannot bind HTTP on {address}: {exc.strerror}"
            raise CopurError(why) from None
        return sock

    def start(self) -> int:
        """Bind, serve in the background, return the bound port once uvicorn is up."""
        if self._thread is not None:
            raise CopurError(f"{self.name}: already started")
        self._socket = self._bind()
        self._port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            log_level="warning",
            **(self.https.uvicorn_options() if self.https is not None else {}),
        )
        self._server = _Uvicorn(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=self.name, daemon=True
        )
        self._thread.start()
        if not self._server.startup_over.wait(self.startup_timeout_s) or not self._server.started:
            address = host_port(self.host, self._port)
            self.stop()
            raise CopurError(f"{self.name}: HTTP did not start on {address}")
        return self._port

    def stop(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Ask uvicorn to exit (it closes the socket, lets requests in flight finish) and join its
        thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
