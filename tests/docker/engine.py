"""The Docker engine `make test-docker` runs on, and what it leaves behind.

A daemon that already answers on the default socket is used as it is and left running.
Otherwise a `dockerd` of the test's own is started: its data (images, BuildKit's cache, so a
second run does not compile llama.cpp again) under ``DOCKER_DATA_ROOT``, its socket, pid file and
runtime state in a fresh temporary directory. Stopping it also deletes the iptables rules and
chains, and the bridge, that it added: whatever was there before it started stays.
"""

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_DATA_ROOT = Path("/var/tmp/reasoner-docker")
"""Where the test's own daemon keeps images and build cache between runs (``DOCKER_DATA_ROOT``)."""

BRIDGE = "docker0"
FIREWALLS = ("iptables", "ip6tables")
TABLES = ("filter", "nat")
Firewall = dict[str, tuple[dict[str, str], list[str]]]
"""Per table: its chains with their policies (``-`` for a chain of its own), and its rules as
``-A CHAIN …`` lines."""
BUILT_IN = frozenset({"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"})


class EngineError(RuntimeError):
    """The engine cannot run here; the message says why."""


def docker_client() -> str:
    """Debian's client (``docker.io``) where it is installed: it has BuildKit. Another client may be
    first on the PATH (a legacy builder cannot use the Dockerfile's cache mount)."""
    found = os.environ.get("DOCKER") or ("/usr/bin/docker" if Path("/usr/bin/docker").exists() else None)
    found = found or shutil.which("docker")
    if not found:
        raise EngineError("no docker client: `make install-docker` installs Debian's docker.io")
    return found


class Engine:
    """A Docker daemon and a client bound to it."""

    def __init__(self, host: str | None, daemon: subprocess.Popen[bytes] | None = None) -> None:
        self.env = {**os.environ, "DOCKER_BUILDKIT": "1", "COMPOSE_DOCKER_CLI_BUILD": "1"}
        if host:
            self.env["DOCKER_HOST"] = host
        self.daemon = daemon
        self.client = docker_client()

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker args…``; a failure raises with what it printed."""
        return self.call([self.client, *args], timeout=timeout, check=check)

    def compose(
        self, *args: str, timeout: float = 600, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``docker-compose args…`` (Debian's compose v1), with ``env`` for the compose file."""
        return self.call(["docker-compose", *args], timeout=timeout, check=True, env=env)

    def call(
        self, argv: list[str], *, timeout: float, check: bool, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        merged = {**self.env, **(env or {})}
        done = subprocess.run(argv, env=merged, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise EngineError(f"`{shlex.join(argv)}` exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done

    def answers(self) -> bool:
        return self.run("info", "--format", "{{.ServerVersion}}", timeout=10, check=False).returncode == 0

    def has_image(self, name: str) -> bool:
        return self.run("image", "inspect", name, check=False, timeout=30).returncode == 0


@contextmanager
def engine() -> Iterator[Engine]:
    """The running daemon, or one started for the duration (and cleaned up after)."""
    existing = Engine(None)
    if existing.answers():
        yield existing
        return
    if os.geteuid() != 0:
        raise EngineError("no Docker daemon answers, and starting one needs root")
    if not shutil.which("dockerd"):
        raise EngineError("no dockerd: `make install-docker` installs Debian's docker.io")
    data_root = Path(os.environ.get("DOCKER_DATA_ROOT", DEFAULT_DATA_ROOT))
    with tempfile.TemporaryDirectory(prefix="reasoner-dockerd-") as run_dir, _leaving_no_network():
        started = _start_daemon(data_root, Path(run_dir))
        try:
            yield started
        finally:
            _stop_daemon(started)


def _start_daemon(data_root: Path, run_dir: Path) -> Engine:
    argv = [
        "dockerd",
        "--data-root", str(data_root),
        "--exec-root", str(run_dir / "exec"),
        "--pidfile", str(run_dir / "dockerd.pid"),
        "--host", f"unix://{run_dir / 'docker.sock'}",
    ]  # fmt: skip
    with (run_dir / "dockerd.log").open("wb") as log:
        daemon = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started = Engine(f"unix://{run_dir / 'docker.sock'}", daemon)
    deadline = time.monotonic() + 60
    while not started.answers():
        if daemon.poll() is not None or time.monotonic() > deadline:
            _stop_daemon(started)
            tail = (run_dir / "dockerd.log").read_text(errors="replace")[-2000:]
            raise EngineError(f"dockerd did not start (exit {daemon.returncode}):\n{tail}")
        time.sleep(0.2)
    return started


def _stop_daemon(started: Engine) -> None:
    """SIGTERM, as `docker stop` would be: the daemon stops its containers and its containerd."""
    daemon = started.daemon
    if daemon is None or daemon.poll() is not None:
        return
    daemon.terminate()
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


@contextmanager
def _leaving_no_network() -> Iterator[None]:
    """Deletes, on the way out, the firewall rules and chains and the bridge made meanwhile, and
    fails if any is still there."""
    before = {tool: _firewall(tool) for tool in FIREWALLS}
    had_bridge = Path(f"/sys/class/net/{BRIDGE}").exists()
    try:
        yield
    finally:
        for tool in FIREWALLS:
            _undo_firewall(tool, before[tool])
        if not had_bridge and Path(f"/sys/class/net/{BRIDGE}").exists():
            subprocess.run(["ip", "link", "delete", BRIDGE], check=False)
        left = {tool: _added(before[tool], _firewall(tool)) for tool in FIREWALLS}
        if any(left.values()) or (not had_bridge and Path(f"/sys/class/net/{BRIDGE}").exists()):
            raise EngineError(f"the engine left network state behind: {left}, bridge {BRIDGE}")


def _firewall(tool: str) -> Firewall:
    """Per table: its chains with their policies, and its rules, as ``TOOL-save`` prints them."""
    tables: Firewall = {}
    if not shutil.which(f"{tool}-save"):
        return tables
    for table in TABLES:
        saved = subprocess.run([f"{tool}-save", "-t", table], capture_output=True, text=True, check=False)
        lines = saved.stdout.splitlines()
        chains = dict(line[1:].split()[:2] for line in lines if line.startswith(":"))
        tables[table] = (chains, [line for line in lines if line.startswith("-A ")])
    return tables


def _added(before: Firewall, after: Firewall) -> list[str]:
    """What ``after`` has that ``before`` did not: chains, policies, rules, as ``table: …``."""
    added = []
    for table, (chains, rules) in after.items():
        old_chains, old_rules = before.get(table, ({}, []))
        added += [f"{table}: -N {c}" for c in chains if c not in old_chains and c not in BUILT_IN]
        changed = [(c, p) for c, p in chains.items() if c in BUILT_IN and p != _policy(old_chains, c)]
        added += [f"{table}: -P {c} {p}" for c, p in changed]
        added += [f"{table}: {r}" for r in rules if r not in old_rules]
    return added


def _undo_firewall(tool: str, before: Firewall) -> None:
    for table, (chains, rules) in _firewall(tool).items():
        old_chains, old_rules = before.get(table, ({}, []))
        for rule in reversed([r for r in rules if r not in old_rules]):
            subprocess.run([tool, "-t", table, "-D", *shlex.split(rule)[1:]], check=False)
        new_chains = [c for c in chains if c not in old_chains and c not in BUILT_IN]
        for flag in ("-F", "-X"):  # emptied first: a chain is deleted only once nothing jumps to it
            for chain in new_chains:
                subprocess.run([tool, "-t", table, flag, chain], check=False)
        for chain, policy in chains.items():  # docker sets FORWARD's to DROP
            if chain in BUILT_IN and policy != _policy(old_chains, chain):
                subprocess.run([tool, "-t", table, "-P", chain, _policy(old_chains, chain)], check=False)


def _policy(chains: dict[str, str], chain: str) -> str:
    """A built-in chain's policy; ACCEPT where the table was not there."""
    return chains.get(chain, "ACCEPT")
