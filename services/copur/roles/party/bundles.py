"""The bundles a party holds while it serves (a rolling upgrade): the current one and at most
``max_held - 1`` others, each a :class:`PartyCore` of its own (extractor and columns), loaded and
dropped while calls run. No gRPC here: the adapter is :mod:`.server`."""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

from copur.errors import BundleError, DataError
from copur.roles.party.core import PartyCore
from copur.science.bundle import read_manifest
from copur.transport.grpcutil import Conflict, InvalidRequest
from copur_client.wire import BundleRef, PartyInfo

__all__ = ["HeldBundles"]

log = logging.getLogger("copur.roles.party")


def _one_line(text: str) -> str:
    return " ".join(text.split())


class HeldBundles:
    """Party ``index``'s bundles by id, the current one first; never empty, never more than
    ``max_held``.

    Thread-safe: a lock guards the held set, and the slow part of :meth:`load` (reading the data
    set and the extractor) runs outside it, so Embed calls on the held bundles go on meanwhile.
    Guarantees: a refused :meth:`load` or :meth:`drop` changes nothing; loading a bundle already
    held changes nothing; a loaded bundle is never made current by loading (only dropping the
    current one makes another current); a core handed out by :meth:`get` stays usable after its
    bundle is dropped (the call in flight finishes with it)."""

    def __init__(
        self,
        *,
        core: PartyCore,
        index: int,
        data_dir: str | None,
        max_ids: int,
        max_held: int = 2,
    ) -> None:
        if core.info.index != index:
            raise ValueError(f"the initial bundle serves party {core.info.index}, not {index}")
        if max_held < 1:
            raise ValueError(f"max_held must be at least 1, not {max_held}")
        self.index = index
        self.data_dir = data_dir
        self.max_ids = max_ids
        self.max_held = max_held
        self._lock = threading.Lock()
        self._held: dict[str, PartyCore] = {core.bundle_id: core}  # insertion order; current first
        self._current = core.bundle_id
        log.info(
            "event=bundle_loaded party=%d bundle=%s path=%s current=%s",
            index,
            core.bundle_id,
            core.path,
            core.bundle_id,
        )

    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        index: int,
        *,
        data_dir: str | None = None,
        max_ids: int = 65536,
        max_held: int = 2,
    ) -> HeldBundles:
        """Party ``index`` holding the bundle at ``path`` alone (BundleError / DataError when it
        cannot be loaded)."""
        core = PartyCore.from_bundle(path, index, data_dir=data_dir, max_ids=max_ids)
        return cls(core=core, index=index, data_dir=data_dir, max_ids=max_ids, max_held=max_held)

    # ---------------------------------------------------------------- reading

    def _ordered(self) -> list[PartyCore]:
        """The held cores, current first (call under the lock)."""
        current = self._held[self._current]
        return [current, *(c for i, c in self._held.items() if i != self._current)]

    def _refs_locked(self) -> list[BundleRef]:
        """The held bundles by id and path, current first (call under the lock)."""
        return [BundleRef(bundle_id=c.bundle_id, path=c.path) for c in self._ordered()]

    def _held_names(self) -> str:
        """``a, b``: the held ids, current first (call under the lock)."""
        return ", ".join(c.bundle_id for c in self._ordered())

    @property
    def current(self) -> PartyCore:
        """The current bundle's core: the one that answers calls naming no bundle."""
        with self._lock:
            return self._held[self._current]

    def get(self, bundle_id: str) -> PartyCore:
        """The core of bundle ``bundle_id`` (empty: the current one); Conflict naming the held ids
        when it is not held."""
        with self._lock:
            if not bundle_id:
                return self._held[self._current]
            core = self._held.get(bundle_id)
            if core is None:
                raise Conflict(
                    f"party {self.index} holds bundle(s) {self._held_names()}, "
                    f"not {_one_line(bundle_id)[:64]}"
                )
            return core

    def refs(self) -> list[BundleRef]:
        """Every held bundle by id and path, current first."""
        with self._lock:
            return self._refs_locked()

    def info(self) -> PartyInfo:
        """The current core's description, with its ``bundle_id`` and every held id (current
        first) as ``bundles``."""
        with self._lock:
            cores = self._ordered()
        return dataclasses.replace(
            cores[0].info,
            bundle_id=cores[0].bundle_id,
            bundles=tuple(c.bundle_id for c in cores),
        )

    # ---------------------------------------------------------------- changing

    def _room_for(self, bundle_id: str) -> bool:
        """False when ``bundle_id`` is held already; Conflict when no other fits (under the
        lock)."""
        if bundle_id in self._held:
            return False
        if len(self._held) >= self.max_held:
            raise Conflict(
                f"party {self.index} holds {len(self._held)} bundles already "
                f"({self._held_names()}): drop one first"
            )
        return True

    def _read(self, path: str | Path) -> PartyCore:
        """Load party ``index`` of the bundle at ``path`` (slow; no lock held). BundleError /
        DataError, one line naming ``path``, when it cannot be loaded or is of another number of
        parties than the held ones (each bundle keeps its own columns and feature width)."""
        where = str(path)
        try:
            core = PartyCore.from_bundle(
                path, self.index, data_dir=self.data_dir, max_ids=self.max_ids
            )
        except (BundleError, DataError) as exc:
            text = _one_line(str(exc))
            raise type(exc)(text if where in text else f"bundle {where}: {text}") from None
        except (OSError, ValueError, RuntimeError) as exc:  # a file unreadable past the checks
            raise BundleError(f"bundle {where} cannot be loaded: {_one_line(str(exc))}") from None
        first = self.current.info
        if core.info.num_parties != first.num_parties:
            raise BundleError(
                f"bundle {where} has {core.info.num_parties} parties; party {self.index} serves "
                f"bundles of {first.num_parties}"
            )
        return core

    def load(self, path: str | Path) -> list[BundleRef]:
        """Hold the bundle at ``path`` (a path on this host) beside the current one, which stays
        current; the held bundles after it, current first. A bundle already held (same id)
        changes nothing. Conflict when ``max_held`` are held; BundleError / DataError (one line
        naming ``path``) when it cannot be loaded or does not fit this party."""
        if not str(path).strip():
            raise InvalidRequest("LoadBundle needs the path of a bundle on the party's host")
        try:
            wanted = read_manifest(path).bundle_id  # cheap: refuse before the slow load
        except BundleError as exc:
            raise BundleError(_one_line(str(exc))) from None
        except (OSError, ValueError) as exc:  # a name too long, a NUL byte, no permission
            raise BundleError(_one_line(f"bundle {str(path)[:200]}: {exc}")) from None
        with self._lock:
            if not self._room_for(wanted):
                return self._refs_locked()
        core = self._read(path)
        with self._lock:
            if not self._room_for(core.bundle_id):  # loaded meanwhile by another call
                return self._refs_locked()
            self._held[core.bundle_id] = core
            refs = self._refs_locked()
        log.info(
            "event=bundle_loaded party=%d bundle=%s path=%s current=%s",
            self.index,
            core.bundle_id,
            core.path,
            refs[0].bundle_id,
        )
        return refs

    def drop(self, bundle_id: str) -> list[BundleRef]:
        """Stop holding bundle ``bundle_id``; when it was the current one, the one loaded
        earliest of the others becomes current. The held bundles after it, current first.
        Conflict when it is not held, or is the last one held."""
        if not bundle_id:
            raise InvalidRequest("DropBundle needs the id of a held bundle")
        with self._lock:
            if bundle_id not in self._held:
                raise Conflict(
                    f"party {self.index} holds bundle(s) {self._held_names()}, "
                    f"not {_one_line(bundle_id)[:64]}"
                )
            if len(self._held) == 1:
                raise Conflict(
                    f"party {self.index} would hold no bundle: {bundle_id} is the only one it "
                    "holds (load another first)"
                )
            dropped = self._held.pop(bundle_id)
            if bundle_id == self._current:
                self._current = next(iter(self._held))
            refs = self._refs_locked()
        log.info(
            "event=bundle_dropped party=%d bundle=%s path=%s current=%s",
            self.index,
            bundle_id,
            dropped.path,
            refs[0].bundle_id,
        )
        return refs
