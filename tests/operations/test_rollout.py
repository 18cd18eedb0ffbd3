"""The rolling upgrade's walk (:mod:`copur.operations.rollout`) against an in-memory fusion center
that keeps its state honestly: the parties' held bundles (two at most, current first), the fusion
center's held (two at most, active first), active and history, and a switch refused while fewer
than the quorum of parties serve the bundle. And ``copur rollout``'s command line.

A real cluster walks it end to end elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clusterkit import free_ports
from copur.cli import app
from copur.errors import ConfigError
from copur.operations.rollout import BundleAdmin, RolloutConfig, RolloutError, rollback, rollout
from copur_client.errors import BadRequest, CopurClientError, NotFound, Unavailable
from copur_client.wire import BundleRef, BundlesStatus, PartyBundles

OLD, NEW, OTHER = "eca5b1c2d3e4f506", "3fa2c1d0b9e8f7a6", "77aa88bb99cc00dd"
OLD_PATH, NEW_PATH, OTHER_PATH = "/bundle/mfeat", "/bundle/mfeat-next", "/bundle/other"
CATALOG = {OLD_PATH: OLD, NEW_PATH: NEW, OTHER_PATH: OTHER}
MAX_HELD = 2


def _conflict(detail: str) -> BadRequest:
    return BadRequest("fake", detail, 409)


@dataclass
class FakeAdmin:
    """A fusion center and its parties, in memory. ``calls`` records every call in order;
    ``party_load_fails`` / ``party_drop_fails`` make a party's relayed call fail with the given
    error; ``eject_after_load`` parties are ejected once they loaded a bundle (the fusion center
    then does not count them as serving it); ``lose_activate_answer`` switches but answers with a
    lost connection."""

    parties: list[list[str]]
    held: dict[str, str] = field(default_factory=lambda: {OLD: OLD_PATH})
    active: str = OLD
    history: list[BundleRef] = field(default_factory=list)
    states: dict[int, str] = field(default_factory=dict)
    calls: list[tuple[object, ...]] = field(default_factory=list)
    party_load_fails: dict[int, CopurClientError] = field(default_factory=dict)
    party_drop_fails: dict[int, CopurClientError] = field(default_factory=dict)
    eject_after_load: set[int] = field(default_factory=set)
    lose_activate_answer: bool = False

    def status(self) -> BundlesStatus:
        held = [self.active, *(b for b in self.held if b != self.active)]
        return BundlesStatus(
            active=self.active,
            held=[BundleRef(b, self.held[b]) for b in held],
            history=list(self.history),
            parties=[
                PartyBundles(i, list(b), self.states.get(i, "up"))
                for i, b in enumerate(self.parties)
            ],
        )

    def _id(self, path: str) -> str:
        if path not in CATALOG:
            raise BadRequest("fake", f"no bundle at {path}", 400)
        return CATALOG[path]

    def _party(self, party: int) -> list[str]:
        if not 0 <= party < len(self.parties):
            raise NotFound("fake", f"no party {party}", 404)
        return self.parties[party]

    def bundles(self) -> BundlesStatus:
        self.calls.append(("bundles",))
        return self.status()

    def load_bundle(self, path: str) -> BundlesStatus:
        self.calls.append(("load_bundle", path))
        bundle = self._id(path)
        if bundle not in self.held:
            if len(self.held) >= MAX_HELD:
                raise _conflict(f"the fusion center holds {', '.join(self.held)} already")
            self.held[bundle] = path
        return self.status()

    def activate_bundle(
        self, bundle_id: str, *, quorum: int = 0, wait_s: float = 10.0
    ) -> BundlesStatus:
        self.calls.append(("activate_bundle", bundle_id, quorum, wait_s))
        if bundle_id not in self.held:
            raise _conflict(f"{bundle_id} is not held")
        serving = sum(
            bundle_id in b and self.states.get(i, "up") == "up" for i, b in enumerate(self.parties)
        )
        need = quorum or len(self.parties)
        if serving < need:
            raise _conflict(f"only {serving} of {len(self.parties)} parties serve it (need {need})")
        if bundle_id != self.active:
            self.history.insert(0, BundleRef(self.active, self.held[self.active]))
            self.active = bundle_id
        if self.lose_activate_answer:
            raise Unavailable("fake", "connection lost: Server disconnected")
        return self.status()

    def drop_bundle(self, bundle_id: str) -> BundlesStatus:
        self.calls.append(("drop_bundle", bundle_id))
        if bundle_id not in self.held:
            raise _conflict(f"{bundle_id} is not held")
        if bundle_id == self.active:
            raise _conflict(f"{bundle_id} is active: it cannot be dropped")
        del self.held[bundle_id]
        return self.status()

    def load_party_bundle(self, party: int, path: str) -> BundlesStatus:
        self.calls.append(("load_party_bundle", party, path))
        held = self._party(party)
        if party in self.party_load_fails:
            raise self.party_load_fails[party]
        bundle = self._id(path)
        if bundle not in held:
            if len(held) >= MAX_HELD:
                raise _conflict(f"party {party} holds bundle(s) {', '.join(held)}")
            held.append(bundle)
        if party in self.eject_after_load:
            self.states[party] = "ejected"
        return self.status()

    def drop_party_bundle(self, party: int, bundle_id: str) -> BundlesStatus:
        self.calls.append(("drop_party_bundle", party, bundle_id))
        held = self._party(party)
        if party in self.party_drop_fails:
            raise self.party_drop_fails[party]
        if bundle_id not in held:
            raise _conflict(f"party {party} holds bundle(s) {', '.join(held)}, not {bundle_id}")
        if len(held) == 1:
            raise _conflict(f"party {party} would hold no bundle")
        held.remove(bundle_id)
        return self.status()


def _fake(parties: int = 3) -> FakeAdmin:
    return FakeAdmin(parties=[[OLD] for _ in range(parties)])


def _walk(
    admin: BundleAdmin, path: str = NEW_PATH, *, quorum: int = 0, wait_s: float = 30.0
) -> tuple[BundlesStatus, list[str]]:
    lines: list[str] = []
    status = rollout(
        admin, path, config=RolloutConfig(quorum=quorum, wait_s=wait_s), say=lines.append
    )
    return status, lines


def _holders(admin: FakeAdmin, bundle: str) -> list[int]:
    return [i for i, held in enumerate(admin.parties) if bundle in held]


# --- rollout -------------------------------------------------------------------------------------


def test_a_rollout_switches_and_leaves_only_the_new_bundle_everywhere() -> None:
    # Prepare
    admin = _fake(3)
    # Execute
    status, lines = _walk(admin, wait_s=5.0)
    # Assert: the state
    assert admin.parties == [[NEW], [NEW], [NEW]]
    assert (admin.active, list(admin.held)) == (NEW, [NEW])
    assert admin.history == [BundleRef(OLD, OLD_PATH)]
    assert status == admin.status()
    # Assert: the documented order of calls
    assert admin.calls == [
        ("bundles",),
        ("load_bundle", NEW_PATH),
        *[("load_party_bundle", i, NEW_PATH) for i in range(3)],
        ("activate_bundle", NEW, 0, 5.0),
        *[("drop_party_bundle", i, OLD) for i in range(3)],
        ("drop_bundle", OLD),
    ]
    # Assert: what the operator reads
    assert lines[0] == f"[1/5] fusion center: loaded {NEW} ({NEW_PATH}) beside {OLD}"
    assert lines[1] == f"[2/5] party 0: loaded {NEW} beside {OLD}"
    assert f"[3/5] fusion center: switched from {OLD} to {NEW}" in lines
    assert f"[4/5] party 2: dropped {OLD}" in lines
    assert f"[5/5] fusion center: dropped {OLD}" in lines
    assert lines[-1] == (
        f"rolled out {NEW} ({NEW_PATH}); every restart must load it too: set bundle: {NEW_PATH} "
        "in the topology"
    )
    assert not any("warning" in line for line in lines)


def test_a_party_that_cannot_load_undoes_everything_and_is_named() -> None:
    # Prepare: party 1 holds two bundles already
    admin = _fake(3)
    admin.parties[1].append(OTHER)
    # Execute
    with pytest.raises(RolloutError) as info:
        _walk(admin)
    # Assert
    message = str(info.value)
    assert _holders(admin, NEW) == []
    assert (admin.active, list(admin.held), admin.history) == (OLD, [OLD], [])
    assert message.startswith(f"party 1 cannot load {NEW_PATH}: party 1 holds bundle(s)")
    assert f"undone: {OLD} stays active" in message
    assert "\n" not in message
    assert not any(c[0] == "activate_bundle" for c in admin.calls)
    assert ("load_party_bundle", 2, NEW_PATH) not in admin.calls  # stopped at the failure


def test_an_unreachable_party_undoes_everything() -> None:
    # Prepare
    admin = _fake(3)
    admin.party_load_fails[2] = Unavailable("fake", "party 2 cannot be reached", 503)
    # Execute
    with pytest.raises(RolloutError, match="party 2 cannot load .*party 2 cannot be reached"):
        _walk(admin)
    # Assert
    assert _holders(admin, NEW) == []
    assert (admin.active, list(admin.held)) == (OLD, [OLD])


def test_a_refused_switch_undoes_everything() -> None:
    # Prepare: party 2 loads, then the fusion center ejects it: it does not serve NEW
    admin = _fake(3)
    admin.eject_after_load = {2}
    # Execute
    with pytest.raises(RolloutError) as info:
        _walk(admin)
    # Assert
    message = str(info.value)
    assert message.startswith(f"the fusion center refused to switch to {NEW}: only 2 of 3")
    assert f"undone: {OLD} stays active" in message
    assert _holders(admin, NEW) == []
    assert (admin.active, list(admin.held), admin.history) == (OLD, [OLD], [])


def test_with_a_quorum_a_party_that_cannot_load_is_a_warning() -> None:
    # Prepare
    admin = _fake(3)
    admin.party_load_fails[2] = Unavailable("fake", "party 2 cannot be reached", 503)
    # Execute
    status, lines = _walk(admin, quorum=2)
    # Assert: party 2 keeps the old bundle (nothing asks it for more than it holds)
    assert admin.parties == [[NEW], [NEW], [OLD]]
    assert (status.active, list(admin.held)) == (NEW, [NEW])
    assert any(
        line.startswith("[2/5] warning: party 2 cannot load") and "cannot be reached" in line
        for line in lines
    )
    assert f"warning: party 2 does not hold {NEW} (see above)" in lines


def test_a_quorum_out_of_reach_undoes_everything() -> None:
    # Prepare
    admin = _fake(3)
    for party in (1, 2):
        admin.party_load_fails[party] = Unavailable("fake", f"party {party} is down", 503)
    # Execute
    with pytest.raises(RolloutError) as info:
        _walk(admin, quorum=2)
    # Assert
    assert str(info.value).startswith(f"only 1 of 3 parties loaded {NEW} (quorum 2)")
    assert "party 1 is down" in str(info.value) and "party 2 is down" in str(info.value)
    assert _holders(admin, NEW) == []
    assert (admin.active, list(admin.held)) == (OLD, [OLD])


def test_drops_that_fail_after_the_switch_are_warnings() -> None:
    # Prepare
    admin = _fake(3)
    admin.party_drop_fails[1] = Unavailable("fake", "party 1 cannot be reached", 503)
    # Execute
    status, lines = _walk(admin)
    # Assert: every party serves NEW; party 1 keeps OLD beside it
    assert status.active == NEW
    assert admin.parties == [[NEW], [OLD, NEW], [NEW]]
    assert list(admin.held) == [NEW]
    assert any(line.startswith(f"[4/5] warning: party 1 keeps {OLD}") for line in lines)
    assert "warning: old bundles linger on party 1 (see above)" in lines
    assert lines[-1].startswith(f"rolled out {NEW}")


def test_a_lost_answer_to_a_switch_that_happened_goes_on() -> None:
    # Prepare
    admin = _fake(2)
    admin.lose_activate_answer = True
    # Execute
    status, lines = _walk(admin)
    # Assert
    assert (status.active, admin.parties, list(admin.held)) == (NEW, [[NEW], [NEW]], [NEW])
    assert any("its answer was lost" in line for line in lines)


def test_rolling_out_the_active_bundle_changes_nothing() -> None:
    # Prepare
    admin = _fake(2)
    # Execute
    status, lines = _walk(admin, OLD_PATH)
    # Assert
    assert status.active == OLD and admin.parties == [[OLD], [OLD]]
    assert [c[0] for c in admin.calls] == ["bundles", "load_bundle"]
    assert lines == [f"[1/5] fusion center: {OLD_PATH} is {OLD}, active already: nothing to do"]


def test_a_fusion_center_holding_two_bundles_refuses_and_hints_at_rollback() -> None:
    # Prepare: an unfinished rollout of OTHER
    admin = _fake(2)
    admin.held[OTHER] = OTHER_PATH
    # Execute
    with pytest.raises(RolloutError) as info:
        _walk(admin)
    # Assert
    assert str(info.value).startswith(f"the fusion center cannot load {NEW_PATH}:")
    assert "--rollback" in str(info.value)
    assert _holders(admin, NEW) == [] and list(admin.held) == [OLD, OTHER]


def test_a_quorum_above_the_parties_is_refused_before_any_change() -> None:
    # Prepare
    admin = _fake(2)
    # Execute
    with pytest.raises(RolloutError, match="quorum 3 exceeds the 2 parties"):
        _walk(admin, quorum=3)
    # Assert
    assert admin.calls == [("bundles",)]


@pytest.mark.parametrize(("quorum", "wait_s"), [(-1, 1.0), (0, -0.5), (0, float("nan"))])
def test_a_bad_configuration_is_a_config_error(quorum: int, wait_s: float) -> None:
    # Prepare, Execute, Assert
    with pytest.raises(ConfigError):
        RolloutConfig(quorum=quorum, wait_s=wait_s)


# --- rollback ------------------------------------------------------------------------------------


def test_a_rollback_after_a_rollout_goes_back_to_the_old_bundle() -> None:
    # Prepare
    admin = _fake(3)
    _walk(admin)
    admin.calls.clear()
    lines: list[str] = []
    # Execute
    status = rollback(admin, config=RolloutConfig(), say=lines.append)
    # Assert
    assert (status.active, list(admin.held)) == (OLD, [OLD])
    assert admin.parties == [[OLD], [OLD], [OLD]]
    assert admin.history[0] == BundleRef(NEW, NEW_PATH)
    assert lines[0] == f"rolling back from {NEW} to {OLD} ({OLD_PATH})"
    assert ("activate_bundle", OLD, 0, 30.0) in admin.calls


def test_a_rollback_midway_drops_the_unfinished_bundle() -> None:
    # Prepare: a rollout that stopped after parties 0 and 1 loaded NEW
    admin = _fake(3)
    admin.held[NEW] = NEW_PATH
    admin.parties[0].append(NEW)
    admin.parties[1].append(NEW)
    lines: list[str] = []
    # Execute
    status = rollback(admin, say=lines.append)
    # Assert
    assert _holders(admin, NEW) == []
    assert (status.active, list(admin.held), admin.history) == (OLD, [OLD], [])
    assert not any(c[0] in ("activate_bundle", "load_bundle") for c in admin.calls)
    assert f"[2/2] fusion center: dropped {NEW}" in lines
    assert lines[-1].startswith(f"rolled back the unfinished {NEW}; {OLD} stays active")


def test_a_rollback_drops_a_bundle_only_parties_still_hold() -> None:
    # Prepare: an undo that could not reach party 2
    admin = _fake(3)
    admin.parties[2].append(NEW)
    # Execute
    rollback(admin, say=lambda _line: None)
    # Assert
    assert admin.parties == [[OLD], [OLD], [OLD]]
    assert admin.calls[1:] == [("drop_party_bundle", 2, NEW)]


def test_a_rollback_with_no_history_is_an_error() -> None:
    # Prepare
    admin = _fake(2)
    # Execute
    with pytest.raises(RolloutError) as info:
        rollback(admin, say=lambda _line: None)
    # Assert
    assert str(info.value) == f"nothing to roll back to: the fusion center has served only {OLD}"
    assert admin.calls == [("bundles",)]


# --- the command line ----------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("copur_client.retry.time.sleep", lambda _s: None)
    yield


def test_the_help_explains_the_walk() -> None:
    # Execute
    shown = runner.invoke(app, ["rollout", "--help"], env={"COLUMNS": "200"})
    # Assert
    text = " ".join(shown.output.split())
    assert shown.exit_code == 0
    for phrase in (
        "every party loads it beside its current one",
        "the fusion center switches once enough parties serve it",
        "drop the old bundle",
        "the path must be valid on each of them",
        "/bundle folder",
        "topology's `bundle:`",
        "--rollback",
        "--quorum",
        "--wait",
        "--admin-key",
    ):
        assert phrase in text, phrase
    rollout_listed = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "rollout" in rollout_listed.output


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        ([], "NEW_BUNDLE is missing"),
        ([NEW_PATH, "--rollback"], "not both"),
    ],
)
def test_a_wrong_command_line_is_one_line_and_exit_2(args: list[str], shown: str) -> None:
    # Execute
    result = runner.invoke(app, ["rollout", *args])
    # Assert
    assert result.exit_code == 2
    assert shown in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_an_unreachable_fusion_center_is_one_line_and_exit_2(no_sleep: None) -> None:
    # Prepare: a port nothing listens on
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    # Execute
    result = runner.invoke(app, ["rollout", NEW_PATH, "--url", url, "--admin-key", "k"])
    # Assert
    assert result.exit_code == 2
    assert "cannot read the fusion center's bundles" in result.output
    assert "cannot connect" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_unusable_ca_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # Prepare
    ca = str(tmp_path / "missing-ca.pem")
    # Execute
    result = runner.invoke(app, ["rollout", "--rollback", "--ca-file", ca])
    # Assert
    assert result.exit_code == 2
    assert "missing-ca.pem" in result.output
    assert len(result.output.strip().splitlines()) == 1
