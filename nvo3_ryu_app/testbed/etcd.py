"""A small etcd cluster on loopback, for trying the authority cluster out.

    with EtcdCluster(members=3) as etcd:
        print(etcd.endpoints)        # "127.0.0.1:port,127.0.0.1:port,..."
        etcd.kill(2); etcd.restart(2)

Every member is Debian's ``etcd`` (3.4) on 127.0.0.1 only, with free client
and peer ports, its data under the run directory (``/tmp/nvo3-<prefix>/
etcd/m<i>``), its PID in the run's manifest (``nvo3-testbed cleanup`` finds
what a killed run left: the command line names the run directory).  The
flags that matter, and why (see benchmarks/README.md for the figures):

* ``--experimental-watch-progress-notify-interval 1s``: an idle watch gets
  a progress message every second, so a client can tell an idle watch from
  a dead one (the default is ten minutes);
* ``--heartbeat-interval 100 --election-timeout 1000``: etcd's defaults,
  written out: the authority's lease TTL must stay well above the
  election timeout (a leader change stalls writes for about that long);
* ``--auto-compaction-mode revision --auto-compaction-retention 10000``:
  history is bounded; a watch that falls further behind reloads.

``stop`` (and leaving the ``with``) kills only the PIDs this object started
and removes the data unless the run directory is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from typing import Dict, List, Optional

from . import procs, rundir
from .controller import free_port


class EtcdError(RuntimeError):
    """The etcd cluster did not start or did not become healthy."""


class EtcdCluster:
    """``members`` etcd processes forming one cluster (see the module doc)."""

    def __init__(self, members: int = 3, manifest: Optional[rundir.Manifest] = None,
                 extra_args: tuple = ()):
        self.n = members
        self._own_manifest = manifest is None
        self.manifest = manifest or rundir.Manifest(rundir.new_prefix(), kind="etcd")
        self.dir = os.path.join(rundir.run_dir(self.manifest.prefix), "etcd")
        used: List[int] = []
        self.client_ports: List[int] = []
        self.peer_ports: List[int] = []
        for _ in range(members):
            for ports in (self.client_ports, self.peer_ports):
                port = free_port(used)
                used.append(port)
                ports.append(port)
        self.token = "nvo3-%s" % self.manifest.prefix
        self.extra_args = list(extra_args)
        self.procs: Dict[int, subprocess.Popen] = {}
        self.timings: Dict[str, float] = {}

    @property
    def endpoints(self) -> str:
        """``host:port`` of every member's client port, comma-separated."""
        return ",".join("127.0.0.1:%d" % p for p in self.client_ports)

    def endpoint(self, i: int) -> str:
        """Member ``i``'s (1-based) client endpoint."""
        return "127.0.0.1:%d" % self.client_ports[i - 1]

    def _cluster(self) -> str:
        return ",".join("m%d=http://127.0.0.1:%d" % (i + 1, p)
                        for i, p in enumerate(self.peer_ports))

    def command(self, i: int, state: str) -> List[str]:
        """Member ``i``'s command line (``state``: new or existing)."""
        data = os.path.join(self.dir, "m%d" % i)
        client = "http://127.0.0.1:%d" % self.client_ports[i - 1]
        peer = "http://127.0.0.1:%d" % self.peer_ports[i - 1]
        return ["etcd", "--name", "m%d" % i, "--data-dir", data,
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", self._cluster(),
                "--initial-cluster-state", state,
                "--initial-cluster-token", self.token,
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--experimental-watch-progress-notify-interval", "1s",
                "--auto-compaction-mode", "revision",
                "--auto-compaction-retention", "10000",
                "--logger", "zap", "--log-outputs", os.path.join(self.dir, "m%d.log" % i),
                *self.extra_args]

    def _start_member(self, i: int, state: str) -> None:
        os.makedirs(self.dir, exist_ok=True)
        if shutil.which("etcd") is None:
            raise EtcdError("etcd not found (tools/install-deps.sh installs etcd-server)")
        proc = subprocess.Popen(self.command(i, state), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        self.procs[i] = proc
        self.manifest.add_pid(proc.pid, "etcd m%d" % i)

    def start(self, timeout: float = 30.0) -> "EtcdCluster":
        """Start every member and wait until each says it is healthy."""
        t0 = time.monotonic()
        try:
            for i in range(1, self.n + 1):
                self._start_member(i, "new")
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - t0
        return self

    def healthy(self, i: int) -> bool:
        """Whether member ``i`` answers ``/health`` with true."""
        try:
            with urllib.request.urlopen("http://%s/health" % self.endpoint(i),
                                        timeout=1) as resp:
                return json.loads(resp.read()).get("health") in ("true", True)
        except (OSError, ValueError):
            return False

    def wait_healthy(self, timeout: float = 30.0, members=None) -> None:
        """Until the (given) members are healthy."""
        want = list(members or range(1, self.n + 1))
        deadline = time.monotonic() + timeout
        while not all(self.healthy(i) for i in want):
            for i in want:
                proc = self.procs.get(i)
                if proc is not None and proc.poll() is not None:
                    raise EtcdError("etcd m%d exited with %s; see %s" % (
                        i, proc.returncode, os.path.join(self.dir, "m%d.log" % i)))
            if time.monotonic() > deadline:
                raise EtcdError("etcd not healthy after %.0fs" % timeout)
            time.sleep(0.05)

    def pid(self, i: int) -> Optional[int]:
        proc = self.procs.get(i)
        return proc.pid if proc is not None and proc.poll() is None else None

    def kill(self, i: int) -> None:
        """SIGKILL member ``i`` (a crash)."""
        proc = self.procs.get(i)
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def restart(self, i: int, timeout: float = 30.0) -> None:
        """Start member ``i`` again on its data (it rejoins the cluster)."""
        self.kill(i)
        self._start_member(i, "existing")
        self.wait_healthy(timeout, members=[i])

    def pause(self, i: int) -> None:
        """SIGSTOP member ``i`` (cut off: it answers nothing)."""
        os.kill(self.procs[i].pid, signal.SIGSTOP)

    def resume(self, i: int) -> None:
        """SIGCONT member ``i``."""
        os.kill(self.procs[i].pid, signal.SIGCONT)

    def stop(self) -> None:
        """Kill every member this object started; remove the data (and the
        run directory, when this object made it)."""
        for i, proc in list(self.procs.items()):
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                procs.kill_pid(proc.pid, expect=self.dir, timeout=3)
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()
        if os.environ.get("NVO3_KEEP_RUNDIR") != "1" and not self.manifest.data.get("kept"):
            shutil.rmtree(self.dir, ignore_errors=True)
            if self._own_manifest:
                shutil.rmtree(rundir.run_dir(self.manifest.prefix), ignore_errors=True)

    def __enter__(self) -> "EtcdCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
