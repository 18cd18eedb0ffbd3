"""A rolling upgrade of the model bundle, walked through the fusion center's admin API (``copur
rollout``): pure orchestration over :class:`BundleAdmin` (what :class:`copur_client.FusionClient`
offers), with progress lines through ``say``.

The walk of :func:`rollout`, every step a line ``[k/5] ...``:

1. the fusion center loads the new bundle beside the active one (nothing to do when it is active
   already);
2. every party loads it beside its current one (the fusion center relays the call);
3. the fusion center switches to it once enough parties serve it (``quorum``; 0: all), and
   answers once the batches still on the old one have finished;
4. every party that serves the new bundle drops the others;
5. the fusion center drops the old one.

Until the switch every failure is undone: the new bundle is dropped from every party that holds
it and from the fusion center, the old one stays active, and :class:`RolloutError` names what
failed. After the switch nothing is undone: a party or the fusion center that cannot drop the old
bundle is a warning (it serves the new one; the old one lingers until dropped or restarted).

:func:`rollback` goes back to the bundle served before (``history[0]``) by the same walk, or,
when a rollout stopped midway, drops the unfinished bundle instead.

A restart loads the topology's ``bundle:``, not what was rolled out: the last line says so."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from copur.errors import ConfigError, CopurError
from copur_client.errors import CopurClientError
from copur_client.wire import BundlesStatus, PartyBundles

__all__ = ["BundleAdmin", "RolloutConfig", "RolloutError", "Say", "rollback", "rollout"]

Say = Callable[[str], None]
"""Where progress lines go (one line each, no trailing newline)."""

STEPS = 5
"""The steps of a rollout (the ``[k/5]`` of its lines)."""


class RolloutError(CopurError):
    """A rollout or rollback stopped; the message (one line) names the step, the party when one
    failed, the server's detail, and what the undo left behind."""


class BundleAdmin(Protocol):
    """The fusion center's bundle administration, each call answering the bundles status after
    it (what :class:`copur_client.FusionClient` offers over HTTP). Failures are
    :class:`copur_client.CopurClientError`."""

    def bundles(self) -> BundlesStatus: ...

    def load_bundle(self, path: str) -> BundlesStatus: ...

    def activate_bundle(
        self, bundle_id: str, *, quorum: int = 0, wait_s: float = 10.0
    ) -> BundlesStatus: ...

    def drop_bundle(self, bundle_id: str) -> BundlesStatus: ...

    def load_party_bundle(self, party: int, path: str) -> BundlesStatus: ...

    def drop_party_bundle(self, party: int, bundle_id: str) -> BundlesStatus: ...


@dataclass(frozen=True, kw_only=True)
class RolloutConfig:
    """``quorum``: how many parties must serve the new bundle for the fusion center to switch (0:
    every party; with a quorum, a party that cannot load it is a warning as long as the others
    make the quorum). ``wait_s``: how long the fusion center waits for them to show it before it
    refuses to switch."""

    quorum: int = 0
    wait_s: float = 30.0

    def __post_init__(self) -> None:
        if self.quorum < 0:
            raise ConfigError(f"quorum must be >= 0 (0: every party), got {self.quorum}")
        if not self.wait_s >= 0:
            raise ConfigError(f"wait_s must be >= 0 seconds, got {self.wait_s}")


def rollout(
    admin: BundleAdmin, path: str | Path, *, config: RolloutConfig | None = None, say: Say
) -> BundlesStatus:
    """Roll the bundle at ``path`` (a path valid on the fusion center's and every party's host)
    out to the cluster (the walk of the module docstring); the status after the last step.

    Guarantees: on return the fusion center's active bundle is the new one, and every party that
    loaded it holds it (the others, and the old bundle where a drop failed, are warning lines).
    On :class:`RolloutError` before the switch, the old bundle is still active and the new one was
    dropped wherever the undo could (what it could not is in the message). When the switch
    cannot be told to have happened or not, the error says so and nothing is undone."""
    return _Walk(admin, config or RolloutConfig(), say).rollout(str(path))


def rollback(admin: BundleAdmin, *, config: RolloutConfig | None = None, say: Say) -> BundlesStatus:
    """Undo the last rollout; the status after it.

    When a rollout stopped midway (the fusion center holds a bundle beside the active one, or a
    party that serves the active one holds another), that unfinished bundle is dropped from every
    party and from the fusion center, and the active one stays (run it again to go back further).
    Otherwise the bundle served before (``history[0]``) is rolled out again by :func:`rollout`.
    :class:`RolloutError` when there is nothing to go back to."""
    return _Walk(admin, config or RolloutConfig(), say).rollback()


def _party(status: BundlesStatus, index: int) -> PartyBundles | None:
    return next((p for p in status.parties if p.party == index), None)


def _ids(ids: Iterable[str]) -> str:
    listed = list(ids)
    return ", ".join(listed) if listed else "nothing"


def _why(exc: CopurClientError) -> str:
    """The server's one-line detail, or that no answer came."""
    if exc.status is None:
        return f"the fusion center did not answer ({exc.detail})"
    return f"{exc.detail} ({exc.status})"


class _Walk:
    """One rollout or rollback: the admin API, the configuration, where progress lines go."""

    def __init__(self, admin: BundleAdmin, config: RolloutConfig, say: Say) -> None:
        self.admin, self.config, self.say = admin, config, say

    def _read(self) -> BundlesStatus:
        try:
            return self.admin.bundles()
        except CopurClientError as exc:
            raise RolloutError(f"cannot read the fusion center's bundles: {exc}") from None

    # --- rollout -------------------------------------------------------------------------------

    def rollout(self, path: str) -> BundlesStatus:
        status = self._read()
        old, parties = status.active, [p.party for p in status.parties]
        quorum = self.config.quorum
        if quorum > len(parties):
            raise RolloutError(
                f"quorum {quorum} exceeds the {len(parties)} parties of the fusion center"
            )
        before = status
        status = self._load_at_fusion(path, old)
        new = self._new_id(before, status, path)
        if new == old:
            others = [h.bundle_id for h in status.held if h.bundle_id != old]
            left = (
                f"; {_ids(others)} is held beside it (`copur rollout --rollback` drops it)"
                if others
                else ""
            )
            self.say(
                f"[1/{STEPS}] fusion center: {path} is {old}, active already: nothing to do{left}"
            )
            return status
        self.say(f"[1/{STEPS}] fusion center: loaded {new} ({path}) beside {old}")
        status, loaded = self._load_at_parties(path, new, old, parties, status)
        status = self._switch(new, old, loaded)
        self.say(f"[3/{STEPS}] fusion center: switched from {old} to {new}")
        status, lingering = self._drop_old(new, loaded, status)
        status = self._drop_old_at_fusion(new, status, lingering)
        skipped = [str(i) for i in parties if i not in loaded]
        notes = [f"old bundles linger on {', '.join(lingering)}"] if lingering else []
        if skipped:
            many = len(skipped) > 1
            notes.append(
                f"{'parties' if many else 'party'} {', '.join(skipped)} "
                f"{'do' if many else 'does'} not hold {new}"
            )
        if notes:
            self.say(f"warning: {'; '.join(notes)} (see above)")
        self.say(
            f"rolled out {new} ({path}); every restart must load it too: set bundle: {path} in "
            "the topology"
        )
        return status

    def _load_at_fusion(self, path: str, old: str) -> BundlesStatus:
        try:
            return self.admin.load_bundle(path)
        except CopurClientError as exc:
            hint = (
                " (a rollout stopped midway? `copur rollout --rollback` drops its bundle)"
                if exc.status == 409
                else ""
            )
            raise RolloutError(
                f"the fusion center cannot load {path}: {_why(exc)}; {old} stays active{hint}"
            ) from None

    @staticmethod
    def _new_id(before: BundlesStatus, after: BundlesStatus, path: str) -> str:
        """The id of the bundle at ``path`` after the fusion center loaded it: the held one
        loaded from ``path``, else the one held now and not before, else the active one when it
        is the only one held (found held under another path). RolloutError when it cannot be
        told."""
        by_path = [
            h.bundle_id for h in after.held if os.path.normpath(h.path) == os.path.normpath(path)
        ]
        if by_path:
            return by_path[0]
        held_before = {h.bundle_id for h in before.held}
        added = [h.bundle_id for h in after.held if h.bundle_id not in held_before]
        if len(added) == 1:
            return added[0]
        if [h.bundle_id for h in after.held] == [after.active]:
            return after.active
        held = ", ".join(f"{h.bundle_id} ({h.path})" for h in after.held)
        raise RolloutError(
            f"cannot tell which held bundle is {path}: the fusion center holds {held}"
        )

    def _load_at_parties(
        self, path: str, new: str, old: str, parties: list[int], status: BundlesStatus
    ) -> tuple[BundlesStatus, list[int]]:
        """Every party loads ``path``; the status after it and the parties that hold ``new``. Any
        failure without a quorum, or too many with one, is undone and raised."""
        quorum = self.config.quorum
        needed = quorum or len(parties)
        loaded: list[int] = []
        failed: list[str] = []
        for index in parties:
            why = ""
            try:
                status = self.admin.load_party_bundle(index, path)
            except CopurClientError as exc:
                why = _why(exc)
            else:
                party = _party(status, index)
                held = party.bundles if party is not None else []
                if new in held:
                    loaded.append(index)
                    beside = _ids(b for b in held if b != new)
                    self.say(f"[2/{STEPS}] party {index}: loaded {new} beside {beside}")
                    continue
                why = f"it holds {_ids(held)} after loading, not {new}"
            failure = f"party {index} cannot load {path}: {why}"
            if not quorum:
                raise RolloutError(f"{failure}; {self._undo(new, old, loaded)}")
            failed.append(failure)
            self.say(f"[2/{STEPS}] warning: {failure}")
        if len(loaded) < needed:
            raise RolloutError(
                f"only {len(loaded)} of {len(parties)} parties loaded {new} (quorum {needed}): "
                f"{'; '.join(failed)}; {self._undo(new, old, loaded)}"
            )
        return status, loaded

    def _switch(self, new: str, old: str, loaded: list[int]) -> BundlesStatus:
        try:
            return self.admin.activate_bundle(
                new, quorum=self.config.quorum, wait_s=self.config.wait_s
            )
        except CopurClientError as exc:
            why = _why(exc)
        try:  # did it switch before the answer was lost?
            active = self.admin.bundles().active
        except CopurClientError as exc:
            raise RolloutError(
                f"the switch to {new} got no answer ({why}), and whether it happened cannot be "
                f"read: {exc}; nothing undone: run the rollout again, or `copur rollout --rollback`"
            ) from None
        if active == new:
            self.say(f"[3/{STEPS}] fusion center: its answer was lost ({why}), but it switched")
            return self._read()
        raise RolloutError(
            f"the fusion center refused to switch to {new}: {why}; {self._undo(new, old, loaded)}"
        )

    def _undo(self, new: str, old: str, loaded: list[int]) -> str:
        """Drop ``new`` from every party that holds it (read afresh; else those of ``loaded``)
        and from the fusion center; a line saying what was undone and what lingers."""
        try:
            status: BundlesStatus | None = self.admin.bundles()
        except CopurClientError:
            status = None
        holders = (
            [p.party for p in status.parties if new in p.bundles] if status is not None else loaded
        )
        lingering: list[str] = []
        for index in holders:
            try:
                self.admin.drop_party_bundle(index, new)
            except CopurClientError as exc:
                lingering.append(f"party {index}")
                self.say(f"undo: warning: party {index} keeps {new}: {_why(exc)}")
            else:
                self.say(f"undo: party {index}: dropped {new}")
        if status is None or any(h.bundle_id == new for h in status.held):
            try:
                self.admin.drop_bundle(new)
            except CopurClientError as exc:
                lingering.append("the fusion center")
                self.say(f"undo: warning: the fusion center keeps {new}: {_why(exc)}")
            else:
                self.say(f"undo: fusion center: dropped {new}")
        if lingering:
            return (
                f"undone partly: {old} stays active, {new} lingers on {', '.join(lingering)} "
                "(`copur rollout --rollback` drops it)"
            )
        return f"undone: {old} stays active"

    def _drop_old(
        self, new: str, loaded: list[int], status: BundlesStatus
    ) -> tuple[BundlesStatus, list[str]]:
        """Every party of ``loaded`` drops every bundle but ``new``; failures are warnings. The
        status after it and where old bundles linger."""
        lingering: list[str] = []
        for index in loaded:
            party = _party(status, index)
            for stale in [b for b in (party.bundles if party else []) if b != new]:
                try:
                    status = self.admin.drop_party_bundle(index, stale)
                except CopurClientError as exc:
                    lingering.append(f"party {index}")
                    self.say(
                        f"[4/{STEPS}] warning: party {index} keeps {stale} (it serves {new}): "
                        f"{_why(exc)}"
                    )
                else:
                    self.say(f"[4/{STEPS}] party {index}: dropped {stale}")
        return status, lingering

    def _drop_old_at_fusion(
        self, new: str, status: BundlesStatus, lingering: list[str]
    ) -> BundlesStatus:
        """The fusion center drops every bundle but ``new``; a failure is a warning (appended to
        ``lingering``)."""
        stale = [h.bundle_id for h in status.held if h.bundle_id != new]
        return self._drop_at_fusion(stale, status, lingering, step=f"[5/{STEPS}]")

    def _drop_at_fusion(
        self, ids: list[str], status: BundlesStatus, lingering: list[str], *, step: str
    ) -> BundlesStatus:
        """The fusion center drops each of ``ids``; a failure is a warning (appended to
        ``lingering``); the last status read."""
        for bundle_id in ids:
            try:
                status = self.admin.drop_bundle(bundle_id)
            except CopurClientError as exc:
                lingering.append("the fusion center")
                self.say(f"{step} warning: the fusion center keeps {bundle_id}: {_why(exc)}")
            else:
                self.say(f"{step} fusion center: dropped {bundle_id}")
        return status

    # --- rollback ------------------------------------------------------------------------------

    def rollback(self) -> BundlesStatus:
        status = self._read()
        active = status.active
        at_fusion = [h.bundle_id for h in status.held if h.bundle_id != active]
        at_parties = {
            p.party: [b for b in p.bundles if b != active]
            for p in status.parties
            if active in p.bundles and any(b != active for b in p.bundles)
        }
        if at_fusion or at_parties:
            return self._drop_unfinished(status, at_fusion, at_parties)
        previous = next((h for h in status.history if h.bundle_id != active), None)
        if previous is None:
            raise RolloutError(
                f"nothing to roll back to: the fusion center has served only {active}"
            )
        self.say(f"rolling back from {active} to {previous.bundle_id} ({previous.path})")
        return self.rollout(previous.path)

    def _drop_unfinished(
        self, status: BundlesStatus, at_fusion: list[str], at_parties: dict[int, list[str]]
    ) -> BundlesStatus:
        """Drop the bundles of a rollout stopped midway (every one but the active one) from the
        parties, then the fusion center."""
        active = status.active
        unfinished = sorted(set(at_fusion).union(*at_parties.values()))
        self.say(f"a rollout stopped midway: dropping {_ids(unfinished)}; {active} stays active")
        lingering: list[str] = []
        for index, stale in at_parties.items():
            for bundle_id in stale:
                try:
                    status = self.admin.drop_party_bundle(index, bundle_id)
                except CopurClientError as exc:
                    lingering.append(f"party {index}")
                    self.say(f"[1/2] warning: party {index} keeps {bundle_id}: {_why(exc)}")
                else:
                    self.say(f"[1/2] party {index}: dropped {bundle_id}")
        status = self._drop_at_fusion(at_fusion, status, lingering, step="[2/2]")
        if lingering:
            raise RolloutError(
                f"rollback stopped: {_ids(unfinished)} lingers on {', '.join(lingering)} "
                f"({active} stays active)"
            )
        previous = next((h for h in status.history if h.bundle_id != active), None)
        further = (
            f" (roll back again to go back to {previous.bundle_id}, served before it)"
            if previous is not None
            else ""
        )
        self.say(f"rolled back the unfinished {_ids(unfinished)}; {active} stays active{further}")
        return status
