"""Leader election settings (reconciler.config: settings.LeaderSettings, env), pure.

Cases:
- parse_duration: Go durations the chart writes (s, ms, m, h, compound, fractions, "0").
- parse_duration refuses bad text (no unit, unknown unit, negative, empty, junk) with a
  ConfigError naming the variable.
- leader_settings: defaults when nothing is set; every chart variable read; booleans.
- leader_settings: the namespace comes from POD_NAMESPACE, else the service account file.
- leader_settings: identity is POD_NAME (else the hostname) plus a random suffix.
- bad combinations (renew deadline >= lease duration, retry >= renew deadline, bad boolean,
  bad duration, bad lease name or namespace) are ConfigErrors that name the variable; the
  checks also run after dataclasses.replace (flags overriding the environment).
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest

from reconciler.config import env, settings
from reconciler.domain import errors


@pytest.mark.parametrize(("text", "seconds"), [
    ("15s", 15.0),
    ("10s", 10.0),
    ("2s", 2.0),
    ("500ms", 0.5),
    ("1m30s", 90.0),
    ("1h", 3600.0),
    ("1h2m3s", 3723.0),
    ("1.5s", 1.5),
    (".5s", 0.5),
    ("2.s", 2.0),
    ("250us", 0.00025),
    ("250µs", 0.00025),
    ("1000000ns", 0.001),
    ("0", 0.0),
    ("+3s", 3.0),
    (" 15s ", 15.0),
    ("1m0.5s", 60.5),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert env.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "hint"), [
    ("15", "missing unit"),
    ("1.5", "missing unit"),
    ("15sec", "not a duration"),
    ("15d", "not a duration"),
    ("-5s", "negative"),
    ("", "empty"),
    ("s", "not a duration"),
    ("1m 30s", "not a duration"),
    ("fifteen", "not a duration"),
])
def test_parse_duration_refuses(text: str, hint: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        env.parse_duration(text, "DAKR_LEADER_ELECTION_RETRY_PERIOD")
    assert "DAKR_LEADER_ELECTION_RETRY_PERIOD" in str(info.value)
    assert hint in str(info.value)


def test_defaults_without_environment(tmp_path: Path) -> None:
    s = env.leader_settings({}, namespace_file=str(tmp_path / "absent"))
    assert (s.enabled, s.lease_name, s.namespace) == (False, "dakr-reconciler-leader", "")
    assert (s.lease_duration, s.renew_deadline, s.retry_period) == (15.0, 10.0, 2.0)


def test_chart_environment() -> None:
    variables = {"DAKR_LEADER_ELECTION": "true", "DAKR_LEADER_ELECTION_LEASE": "my-rel-leader",
                 "DAKR_LEADER_ELECTION_LEASE_DURATION": "1m30s",
                 "DAKR_LEADER_ELECTION_RENEW_DEADLINE": "1m",
                 "DAKR_LEADER_ELECTION_RETRY_PERIOD": "500ms",
                 "POD_NAMESPACE": "dakr-operator", "POD_NAME": "dakr-reconciler-7d9f-abcde"}
    s = env.leader_settings(variables)
    assert s.enabled is True
    assert (s.lease_name, s.namespace) == ("my-rel-leader", "dakr-operator")
    assert (s.lease_duration, s.renew_deadline, s.retry_period) == (90.0, 60.0, 0.5)
    base, _, suffix = s.identity.rpartition("_")
    assert base == "dakr-reconciler-7d9f-abcde"
    assert len(suffix) == 8 and int(suffix, 16) >= 0


@pytest.mark.parametrize(("text", "enabled"), [
    ("true", True), ("True", True), ("1", True), ("yes", True),
    ("false", False), ("FALSE", False), ("0", False), ("", False),
])
def test_enabled_values(text: str, enabled: bool) -> None:
    s = env.leader_settings({"DAKR_LEADER_ELECTION": text, "POD_NAMESPACE": "ns"})
    assert s.enabled is enabled


def test_namespace_from_service_account_file(tmp_path: Path) -> None:
    f = tmp_path / "namespace"
    f.write_text("from-file\n")
    assert env.leader_settings({}, namespace_file=str(f)).namespace == "from-file"
    assert env.leader_settings({"POD_NAMESPACE": "from-env"},
                                    namespace_file=str(f)).namespace == "from-env"


def test_identity_falls_back_to_hostname_and_is_unique() -> None:
    a = env.leader_settings({"POD_NAMESPACE": "ns"}).identity
    b = env.leader_settings({"POD_NAMESPACE": "ns"}).identity
    assert a.rpartition("_")[0] == socket.gethostname()
    assert a != b  # a restarted process is a new candidate


@pytest.mark.parametrize(("variables", "names"), [
    ({"DAKR_LEADER_ELECTION": "maybe"}, ["DAKR_LEADER_ELECTION"]),
    ({"DAKR_LEADER_ELECTION_LEASE_DURATION": "15"}, ["DAKR_LEADER_ELECTION_LEASE_DURATION"]),
    ({"DAKR_LEADER_ELECTION_RENEW_DEADLINE": "10x"}, ["DAKR_LEADER_ELECTION_RENEW_DEADLINE"]),
    ({"DAKR_LEADER_ELECTION_RENEW_DEADLINE": "15s"},
     ["DAKR_LEADER_ELECTION_RENEW_DEADLINE", "DAKR_LEADER_ELECTION_LEASE_DURATION"]),
    ({"DAKR_LEADER_ELECTION_RETRY_PERIOD": "10s"},
     ["DAKR_LEADER_ELECTION_RETRY_PERIOD", "DAKR_LEADER_ELECTION_RENEW_DEADLINE"]),
    ({"DAKR_LEADER_ELECTION_RETRY_PERIOD": "0"}, ["DAKR_LEADER_ELECTION_RETRY_PERIOD"]),
    ({"DAKR_LEADER_ELECTION_LEASE": "Not_A_Name"}, ["DAKR_LEADER_ELECTION_LEASE"]),
    ({"POD_NAMESPACE": "bad/ns"}, ["POD_NAMESPACE"]),
])
def test_bad_settings_name_the_variable(variables: dict[str, str], names: list[str]) -> None:
    with pytest.raises(errors.ConfigError) as info:
        env.leader_settings(variables, namespace_file="")
    for name in names:
        assert name in str(info.value)


def test_checks_run_again_after_replace() -> None:
    s = settings.LeaderSettings(enabled=True, namespace="ns")
    assert dataclasses.replace(s, lease_name="other-lease").lease_name == "other-lease"
    with pytest.raises(errors.ConfigError, match="renew deadline"):
        dataclasses.replace(s, lease_duration=5.0)
    with pytest.raises(errors.ConfigError, match="namespace"):
        dataclasses.replace(s, namespace="Upper")
