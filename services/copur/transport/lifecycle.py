"""Running a role's process until it is told to stop: SIGINT or SIGTERM (what ``docker stop``,
Kubernetes and the launcher send). One helper for blocking roles (:func:`run_until_signal`), one for
asyncio roles (:func:`stop_on_signals`); both take the signals only while they run and give the
previous handlers back.

Signals can be taken only on the main thread (Python's rule): called from another thread, both
helpers leave the handlers alone, and the role then runs until the process ends."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Final, Protocol

__all__ = ["SIGNALS", "Service", "run_until_signal", "stop_on_signals"]

log = logging.getLogger("copur.transport.lifecycle")

SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


class Service(Protocol):
    """What :func:`run_until_signal` runs: ``start`` serves (it may raise), ``stop(grace)`` stops
    serving, giving calls in flight ``grace`` seconds; it must be safe after a failed or partial
    ``start``."""

    def start(self) -> object:
        """Serve; may raise, leaving :meth:`stop` to release what was taken."""
        ...

    def stop(self, grace: float = ...) -> None:
        """Stop serving, giving calls in flight ``grace`` seconds; idempotent."""
        ...


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _log_signal(signum: int, frame: object) -> None:
    log.info("event=signal signal=%s", signal.Signals(signum).name)


@contextmanager
def _wakeup() -> Iterator[socket.socket]:
    """A socket that receives a byte for every SIGINT / SIGTERM while inside (the interpreter writes
    it from its C-level handler, so nothing here takes a lock inside a signal handler); the previous
    handlers and wakeup fd are restored on exit."""
    receiver, sender = socket.socketpair()
    sender.setblocking(False)
    previous_fd = signal.set_wakeup_fd(sender.fileno(), warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, _log_signal) for sig in SIGNALS}
    try:
        yield receiver
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_fd)
        receiver.close()
        sender.close()


def _block_until_signal(wakeup: socket.socket | None) -> None:
    if wakeup is None:  # off the main thread: nothing can tell it to stop
        threading.Event().wait()
        return
    while wakeup.recv(1)[0] not in SIGNALS:  # another signal with a Python handler: not ours
        pass


def run_until_signal(service: Service, *, grace: float = 1.0) -> None:
    """Start ``service``, block until SIGINT or SIGTERM, then ``service.stop(grace)``.

    Guarantees: the signals are taken before ``start``, so one arriving while it starts stops the
    service once it is up, never kills it half-way; ``stop`` runs however this ends (``start``
    raising included); the previous handlers are back when it returns. Once started, the process's
    objects are frozen out of the garbage collector's reach (:func:`gc.freeze`): they live as long
    as the process, and full collections then scan only request garbage."""
    with _wakeup() if _on_main_thread() else nullcontext() as wakeup:
        try:
            service.start()
            gc.freeze()
            _block_until_signal(wakeup)
        finally:
            service.stop(grace)


@contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """Within the running event loop: an :class:`asyncio.Event` set by SIGINT or SIGTERM while
    inside (the loop's own signal handling, no lock taken in a handler); the handlers are removed on
    exit."""
    stop = asyncio.Event()
    if not _on_main_thread():
        yield stop
        return
    loop = asyncio.get_running_loop()

    def _signalled(sig: signal.Signals) -> None:
        log.info("event=signal signal=%s", sig.name)
        stop.set()

    for sig in SIGNALS:
        loop.add_signal_handler(sig, _signalled, sig)
    try:
        yield stop
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
