"""Fixtures for tests against real local servers (loopback only, bounded in time).

* ``fault_server(host="127.0.0.1", port=0, **kw)`` starts a ``FaultServer``; all are
  stopped at teardown.
* ``dnsmasq(records, ttl=1, srv=())`` starts a real dnsmasq on 127.0.0.1 and a free high
  port, answering only from ``records`` (``{"api.svc.test": ["127.0.0.2", "::1"]}``) for
  names under ``.test``; anything else under ``.test`` is NXDOMAIN.  The handle can change
  the records (hosts file rewritten, SIGHUP: dnsmasq re-reads ``--addn-hosts`` on SIGHUP;
  the fixture waits until the new generation answers), stop answering (SIGSTOP/SIGCONT)
  and serve SRV records (a restart on the same port).  Skips when dnsmasq is missing.
* ``no_fd_leak()`` is a context manager failing the test when ``/proc/self/fd`` grows.
"""

from __future__ import annotations

import contextlib
import gc
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import dns.exception
import dns.nameserver
import dns.resolver
import pytest

from svcclient.testing._faultserver import FaultServer

DNSMASQ_MISSING = "dnsmasq not installed: apt-get install dnsmasq-base"

# (name, target, port[, priority[, weight]])
SrvSpec = tuple[str, str, int] | tuple[str, str, int, int] | tuple[str, str, int, int, int]
Records = Mapping[str, Sequence[str]]


def find_dnsmasq() -> str | None:
    """Path of the dnsmasq binary: ``$SVCCLIENT_DNSMASQ`` if set, else PATH, else
    /usr/sbin (often not on a user's PATH)."""
    override = os.environ.get("SVCCLIENT_DNSMASQ")
    if override is not None:
        return override if os.access(override, os.X_OK) else None
    found = shutil.which("dnsmasq")
    if found:
        return found
    return "/usr/sbin/dnsmasq" if os.access("/usr/sbin/dnsmasq", os.X_OK) else None


def _free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free UDP+TCP port on 127.0.0.1")


class Dnsmasq:
    """A running dnsmasq serving ``records`` (see the module docstring)."""

    def __init__(
        self, binary: str, workdir: Path, records: Records, *, ttl: int, srv: Sequence[SrvSpec]
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.ttl = ttl
        self.srv: tuple[SrvSpec, ...] = tuple(srv)
        self.records: dict[str, list[str]] = {k: list(v) for k, v in records.items()}
        self.hosts_file = workdir / "hosts"
        self.conf_file = workdir / "dnsmasq.conf"
        self.log_file = workdir / "dnsmasq.log"
        self.port = 0
        self.generation = 0
        self.paused = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._probe = dns.resolver.Resolver(configure=False)
        self._probe.cache = None

    @property
    def nameserver(self) -> str:
        """``"127.0.0.1:<port>"``, ready for ``DnsResolver([...])``."""
        return f"127.0.0.1:{self.port}"

    # -- files ------------------------------------------------------------------------

    def _write_hosts(self) -> None:
        self.generation += 1
        lines = [f"127.0.0.1 ready-{self.generation}.fixture.test"]
        for name, addrs in self.records.items():
            if not name.endswith(".test"):
                raise ValueError(f"fixture names must end in .test: {name!r}")
            lines.extend(f"{addr} {name}" for addr in addrs)
        tmp = self.hosts_file.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.hosts_file)  # atomic: dnsmasq never reads half a file

    def _write_conf(self) -> None:
        user = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        lines = [
            "no-resolv",
            "no-hosts",
            "bind-interfaces",
            "listen-address=127.0.0.1",
            f"port={self.port}",
            f"addn-hosts={self.hosts_file}",
            f"local-ttl={self.ttl}",
            "local=/test/",  # never forward: unknown .test names get NXDOMAIN
            "pid-file=",
            # As root dnsmasq drops to "nobody", who cannot read pytest's 0700 tmp dirs.
            f"user={user}",
            f"group={group}",
            "log-facility=-",
        ]
        for spec in self.srv:
            name, target, port, *rest = spec
            fields = [name, target, str(port), *(str(x) for x in rest)]
            lines.append("srv-host=" + ",".join(fields))
        self.conf_file.write_text("\n".join(lines) + "\n")

    # -- process ----------------------------------------------------------------------

    def start(self) -> Dnsmasq:
        """Start on a fresh free port (or the current one on restart); wait until it answers."""
        self._write_hosts()
        last = ""
        for _ in range(3):
            if not self.port:
                self.port = _free_udp_tcp_port()
            self._write_conf()
            with self.log_file.open("ab") as log:
                self._proc = subprocess.Popen(
                    [self.binary, "--no-daemon", f"--conf-file={self.conf_file}"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            if self._wait_ready(5.0):
                return self
            last = self.log_file.read_text(errors="replace")[-2000:]
            self._kill()
            self.port = 0  # probably lost a port race: pick another one
        raise RuntimeError(f"dnsmasq did not start:\n{last}")

    def _query(self, name: str, timeout: float) -> list[str]:
        self._probe.nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", self.port)]
        ans = self._probe.resolve(name, "A", lifetime=timeout, raise_on_no_answer=False)
        return [r.address for r in ans.rrset] if ans.rrset is not None else []

    def _wait_ready(self, timeout: float) -> bool:
        """Poll until this hosts-file generation answers (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        sentinel = f"ready-{self.generation}.fixture.test"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            with contextlib.suppress(dns.exception.DNSException):
                if self._query(sentinel, 0.2):
                    return True
            time.sleep(0.02)
        return False

    def set_records(self, records: Records) -> None:
        """Replace every A/AAAA record; returns once dnsmasq answers with the new set."""
        if self.paused:
            raise RuntimeError("dnsmasq is paused; unpause() before changing records")
        assert self._proc is not None
        self.records = {k: list(v) for k, v in records.items()}
        self._write_hosts()
        self._proc.send_signal(signal.SIGHUP)  # dnsmasq clears its cache, re-reads hosts
        if not self._wait_ready(5.0):
            raise RuntimeError("dnsmasq did not reload its hosts file within 5 s")

    def set_srv(self, srv: Sequence[SrvSpec]) -> None:
        """Replace the SRV records (dnsmasq reads --srv-host only at start: restart)."""
        self.srv = tuple(srv)
        self.restart()

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self._kill()
        self.start()

    def pause(self) -> None:
        """Stop answering (SIGSTOP): queries time out until ``unpause``."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def unpause(self) -> None:
        """Answer again (SIGCONT)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)
        self.paused = False

    @contextlib.contextmanager
    def stopped_answering(self) -> Iterator[None]:
        """``with dns.stopped_answering(): ...`` pauses and always resumes."""
        self.pause()
        try:
            yield
        finally:
            self.unpause()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self.paused:
            proc.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.paused = False
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)

    def stop(self) -> None:
        """Terminate dnsmasq (SIGTERM, then SIGKILL after 5 s)."""
        self._kill()


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[Callable[..., Dnsmasq]]:
    """Factory: ``dnsmasq({"api.svc.test": ["127.0.0.2"]}, ttl=1, srv=[...]) -> Dnsmasq``."""
    binary = find_dnsmasq()
    if binary is None:
        pytest.skip(DNSMASQ_MISSING)
    started: list[Dnsmasq] = []

    def make(records: Records, *, ttl: int = 1, srv: Sequence[SrvSpec] = ()) -> Dnsmasq:
        workdir = tmp_path / f"dnsmasq{len(started)}"
        workdir.mkdir()
        server = Dnsmasq(binary, workdir, records, ttl=ttl, srv=srv)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def fault_server() -> Iterator[Callable[..., FaultServer]]:
    """Factory: ``fault_server("127.0.0.2", name="a") -> FaultServer`` (started)."""
    servers: list[FaultServer] = []

    def make(host: str = "127.0.0.1", port: int = 0, **kwargs: object) -> FaultServer:
        server = FaultServer(host, port, **kwargs)  # type: ignore[arg-type]
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def open_fds() -> int:
    """Number of open file descriptors of this process (Linux /proc)."""
    return len(os.listdir("/proc/self/fd"))


def _fd_targets() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out.append(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
    return out


@contextlib.contextmanager
def _no_fd_leak(slack: int = 0, settle: float = 2.0) -> Iterator[None]:
    gc.collect()
    before = open_fds()
    before_targets = set(_fd_targets())
    yield
    # Closing is sometimes finished by another thread or the GC: wait a bounded while.
    deadline = time.monotonic() + settle
    while True:
        gc.collect()
        after = open_fds()
        if after <= before + slack or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    new = sorted(set(_fd_targets()) - before_targets)
    assert after <= before + slack, f"file descriptors leaked: {before} -> {after}: {new}"


@pytest.fixture
def no_fd_leak() -> Callable[..., contextlib.AbstractContextManager[None]]:
    """``with no_fd_leak(): ...`` fails if open fds grow (``slack`` extra allowed)."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("fd counting needs /proc (Linux)")
    return _no_fd_leak
