"""The CLI: doctor against live local servers, config check, and the demo."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from svcclient import Endpoint
from svcclient.__main__ import main
from svcclient._cli.config_check import check_file
from svcclient._cli.config_check import run as config_run
from svcclient._cli.doctor import REFUSED_HINT, TIMEOUT_HINT, http_check, tcp_connect
from svcclient.testing._faultserver import Fault, FaultServer
from svcclient.testing._localdns import LocalDns

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer("127.0.0.2", name="pod-a") as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith(("SVCCLIENT_", "USERS_", "USER_SERVICE_")) or var == "POD_NAMESPACE":
            monkeypatch.delenv(var)


def _doctor(*args: str) -> tuple[int, str]:
    """Run `svcclient doctor ARGS --timeout 1` through main(); return (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["doctor", *args, "--timeout", "1"])
    return code, out.getvalue()


# -- doctor: the network steps ----------------------------------------------------------------


def _settle(server: FaultServer) -> None:
    """Wait (bounded) until the server has handled the probe connection.

    FaultServer.stop() right after a bare connect can cancel the not-yet-started handler
    and leak its socket (a ResourceWarning, an error under filterwarnings=error).
    """
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and (server.accepted < 1 or server.open_connections):
        time.sleep(0.005)


def test_tcp_connect_to_a_listening_server(server: FaultServer) -> None:
    """A listening endpoint connects, with a measured connect time."""
    result = tcp_connect(server.host, server.port, timeout=1.0)
    _settle(server)
    assert result.ok and result.kind == "ok" and result.seconds > 0


def test_tcp_connect_refused_says_nothing_listens(server: FaultServer) -> None:
    """A port with no listener is 'refused' with the wrong-port / pod-not-ready hint."""
    server.refuse()
    result = tcp_connect(server.host, server.port, timeout=1.0)
    assert (result.ok, result.kind, result.detail) == (False, "refused", REFUSED_HINT)


def test_tcp_connect_timeout_says_packets_dropped() -> None:
    """A handshake nobody answers is 'timeout' (dropped packets), not 'refused'."""
    listener = socket.socket()
    listener.bind(("127.0.0.9", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue: Linux then drops further SYNs
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.9", port))
            except BlockingIOError:
                pass
            fillers.append(s)
        result = tcp_connect("127.0.0.9", port, timeout=0.3)
        if result.ok:
            pytest.skip("this kernel accepts beyond the backlog; cannot provoke a timeout")
        assert (result.kind, result.detail) == ("timeout", TIMEOUT_HINT)
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_http_check_keeps_the_host_header(server: FaultServer) -> None:
    """The GET goes to the endpoint's address with the service's name as Host."""
    server.set_fault(Fault.ok(echo_headers=True))
    result = http_check(
        f"http://users.demo.svc.cluster.local:{server.port}",
        Endpoint(server.host, server.port),
        "/healthz",
    )
    assert result.ok and result.status == 200
    assert server.requests[-1].headers["host"] == f"users.demo.svc.cluster.local:{server.port}"
    assert server.requests[-1].path == "/healthz"


def test_http_check_reports_a_5xx_as_failing(server: FaultServer) -> None:
    """A 503 on the health path makes the endpoint fail with its status."""
    server.set_fault(Fault.status(503))
    result = http_check(server.url, Endpoint(server.host, server.port))
    assert (result.ok, result.status) == (False, 503)


# -- doctor: whole runs ------------------------------------------------------------------------


def test_doctor_healthy_endpoint_exits_zero(server: FaultServer) -> None:
    """A reachable service answering its health path: exit 0 and a 'healthy' verdict."""
    code, out = _doctor(server.url, "--health-path", "/healthz")
    assert code == 0
    assert "healthy: 1/1" in out.splitlines()[-1]


def test_doctor_refused_port_exits_non_zero_with_reason(server: FaultServer) -> None:
    """A refused port: non-zero exit and a last line naming 'nothing listening'."""
    server.refuse()
    code, out = _doctor(server.url)
    assert code == 1
    last = out.strip().splitlines()[-1]
    assert "refused" in last and "nothing listening" in last


def test_doctor_resolves_a_service_name_through_dns(server: FaultServer) -> None:
    """A cluster-DNS name served by a local nameserver: every A record is checked."""
    with FaultServer("127.0.0.3", server.port) as second, LocalDns() as dns:
        dns.set_records("users.demo.svc.cluster.local", ["127.0.0.2", "127.0.0.3"], ttl=20)
        code, out = _doctor(
            "users",
            "--namespace",
            "demo",
            "--port",
            str(server.port),
            "--dns-nameserver",
            dns.nameserver,
            "--json",
        )
        assert second.count() == 1
    doc = json.loads(out)
    assert code == 0 and doc["healthy"] is True
    assert doc["source"] == "cluster_dns"
    assert doc["dns"]["ttl"] == 20.0
    assert [e["http"]["status"] for e in doc["endpoints"]] == [200, 200]


def test_doctor_degraded_when_one_endpoint_fails(server: FaultServer) -> None:
    """One of two endpoints refusing: exit 1, reason 'degraded: 1 of 2'."""
    with LocalDns() as dns:
        dns.set_records("users.demo.svc.cluster.local", ["127.0.0.2", "127.0.0.3"])
        code, out = _doctor(
            "users",
            "--namespace",
            "demo",
            "--port",
            str(server.port),
            "--dns-nameserver",
            dns.nameserver,
            "--json",
        )
    doc = json.loads(out)
    assert code == 1
    assert doc["reason"].startswith("degraded: 1 of 2")
    assert doc["endpoints"][1]["tcp"]["kind"] == "refused"


def test_doctor_nxdomain_names_the_cause() -> None:
    """A name DNS does not know: exit 1 with 'does not exist' in the reason."""
    with LocalDns() as dns:
        code, out = _doctor("nothere", "--namespace", "demo", "--dns-nameserver", dns.nameserver)
    assert code == 1
    assert "does not exist" in out.strip().splitlines()[-1]


def test_doctor_json_is_machine_readable(server: FaultServer) -> None:
    """--json prints one JSON document with discovery, endpoints, policy and verdict."""
    code, out = _doctor(server.url, "--json")
    doc = json.loads(out)
    assert code == doc["exit_code"] == 0
    assert doc["discovery"][0]["used"] is True
    assert doc["policy"]["timeout"] == 2.0
    assert doc["endpoints"][0]["tcp"]["ok"] is True


def test_doctor_reads_a_config_file(server: FaultServer, tmp_path: Path) -> None:
    """--config FILE supplies the service's default URL and policy."""
    path = tmp_path / "svc.toml"
    path.write_text(f'[services.users]\nurl = "{server.url}"\ntimeout = 0.5\n')
    code, out = _doctor("users", "--config", str(path), "--json")
    doc = json.loads(out)
    assert code == 0
    assert (doc["source"], doc["policy"]["timeout"]) == ("default", 0.5)


def test_doctor_config_error_exits_two(tmp_path: Path) -> None:
    """An invalid config file is a configuration error (exit 2), not a network verdict."""
    path = tmp_path / "bad.toml"
    path.write_text("[services.users]\ntimeout = -1\n")
    code, out = _doctor("users", "--config", str(path))
    assert code == 2
    assert "timeout" in out


def test_main_dispatches_doctor(server: FaultServer, capsys: pytest.CaptureFixture[str]) -> None:
    """`svcclient doctor URL --json` through main() returns the doctor's exit code."""
    assert main(["doctor", server.url, "--json", "--timeout", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["healthy"] is True


def test_main_without_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """No subcommand: usage on stdout and exit code 2."""
    assert main([]) == 2
    assert "doctor" in capsys.readouterr().out


# -- config check ---------------------------------------------------------------------------

GOOD = """
[defaults]
timeout = 1.0

[services.user-service]
url = "http://user-service:3000"
[services.user-service.retry]
attempts = 4

[services.payment-gateway]
url = "https://api.stripe.com"
"""

BAD = """
[services.user-service]
url = "ftp://nope"
timeout = -2
[services.user-service.retry]
attempts = 0

[services.task-service]
colour = "blue"
"""


def test_config_check_good_file(tmp_path: Path) -> None:
    """A valid file exits 0 and shows each service's effective values and their origin."""
    path = tmp_path / "ok.toml"
    path.write_text(GOOD)
    out = io.StringIO()
    assert config_run(str(path), out=out) == 0
    text = out.getvalue()
    assert "[services.user-service]" in text and "[services.payment-gateway]" in text
    assert any(line.split()[:3] == ["retry.attempts", "4", "file"] for line in text.splitlines())


def test_config_check_applies_env_overrides(tmp_path: Path) -> None:
    """SVCCLIENT_<NAME>__<KEY> overrides the file and is marked as coming from env."""
    path = tmp_path / "ok.toml"
    path.write_text(GOOD)
    reports, problems = check_file(path, {"SVCCLIENT_USER_SERVICE__TIMEOUT": "0.25"})
    assert problems == []
    users = next(r for r in reports if r.name == "user-service")
    assert (users.settings["timeout"], users.origins["timeout"]) == (0.25, "env")


def test_config_check_lists_every_error(tmp_path: Path) -> None:
    """A bad file exits 1 and lists each error with service, key and value."""
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    _, problems = check_file(path, {})
    found = {(p.service, p.key, p.value) for p in problems}
    assert ("user-service", "url", "ftp://nope") in found
    assert ("user-service", "timeout", -2) in found
    assert ("user-service", "retry.attempts", 0) in found
    assert ("task-service", "colour", "blue") in found
    out = io.StringIO()
    assert config_run(str(path), out=out) == 1
    assert "4 error(s)" in out.getvalue()


def test_config_check_reports_bad_env_values(tmp_path: Path) -> None:
    """An invalid environment override is reported with the variable's name."""
    path = tmp_path / "ok.toml"
    path.write_text(GOOD)
    _, problems = check_file(path, {"SVCCLIENT_USER_SERVICE__TIMEOUT": "soon"})
    assert [(p.source, p.key, p.value) for p in problems] == [
        ("env", "SVCCLIENT_USER_SERVICE__TIMEOUT", "soon")
    ]


def test_config_check_invalid_toml_and_json(tmp_path: Path) -> None:
    """Unparsable TOML exits 1; --json output parses and says ok=false."""
    path = tmp_path / "broken.toml"
    path.write_text("[services.x\n")
    out = io.StringIO()
    assert config_run(str(path), as_json=True, out=out) == 1
    doc = json.loads(out.getvalue())
    assert doc["ok"] is False and "invalid TOML" in doc["errors"][0]["reason"]


# -- demo -----------------------------------------------------------------------------------


def test_demo_quick_runs_the_whole_story() -> None:
    """`python -m svcclient demo --quick` exits 0 within 30 s and prints every section."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USER_SERVICE", "SVCCLIENT"))}
    env["NO_COLOR"] = "1"
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "svcclient", "demo", "--quick"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - start < 30
    out = proc.stdout
    for heading in (
        "1. Discovery",
        "2. Load balancing",
        "3. One pod dies",
        "4. Every pod fails",
        "5. Recovery",
        "6. Metrics",
    ):
        assert heading in out
    assert "cluster_dns" in out and "<- used" in out
    assert "Unknown User" in out
    assert "breaker closed -> open" in out and "breaker half_open -> closed" in out
    assert "svcclient_circuit_breaker_transitions_total" in out
    assert "\x1b[" not in out  # no colour when not a terminal


def test_config_values_are_shown_compactly() -> None:
    """Long status-code sets print as ranges, as a user would write them."""
    from svcclient._cli.config_check import show

    assert show(frozenset({429, *range(500, 600)})) == "[429, 500-599]"
    assert show(None) == "none" and show(True) == "true" and show(1.5) == "1.5"
