"""A cluster of authorities and a testbed: N app instances, a 3-member etcd.

    with ClusterLab("topologies/cluster.yaml", instances=3) as lab:
        lab.wait_mastered()
        lab.wait_sync()
        lab.kill("a"); lab.wait_mastered(alive={"b", "c"})

What ``start()`` runs (docs/contracts.md, "Cluster"):

* an etcd cluster on loopback (testbed/etcd.py), ``etcd_members`` members;
* ``instances`` osken-managers running the app, named ``a``, ``b``, ...,
  each with ``cluster_backend = etcd`` and its own REST, RPC and OpenFlow
  ports; each reaches every etcd member through a socat relay of its own
  (``etcd_relays``), so that one instance can be cut off from etcd
  (:meth:`cut_etcd`: its relays are stopped) while its OpenFlow channels
  stay up;
* the topology's testbed, every NVE pointed at every instance (a relay per
  NVE and instance, testbed/builder.py ``connect_cluster``), with
  OpenFlow message logging on (``vconn:dbg``) so that what each switch
  received from each instance can be counted on the switch's side
  (:meth:`flow_mods_received`).

Waits are on acknowledged state: every NVE has a master that the switch
confirmed (``GET /v1/cluster`` of the instances: ``roles``), and each NVE's
master reports it in sync (``GET /v1/sync``).  Everything is torn down by
``stop()``, killing only the PIDs this run started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import string
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterable, List, Optional, Tuple

from . import procs, rundir
from .builder import Testbed
from .controller import ControllerProcess, free_port, problem_report
from .etcd import EtcdCluster
from .lab import wait_until

# What changes a switch: flow and meter changes, frames sent out.
WRITE_RE = re.compile(r"vconn\|DBG\|unix:(\S+?)/ctl-(\d+)\.sock: received: "
                      r"OFPT_(FLOW_MOD|METER_MOD|GROUP_MOD|PACKET_OUT)")


class ClusterError(AssertionError):
    pass


class ClusterLab:
    """etcd, N app instances and a testbed (see the module doc)."""

    def __init__(self, topology: str, instances: int = 3, etcd_members: int = 3,
                 lease_ttl: int = 3, extra_ini: str = "", config: bool = True,
                 etcd_relays: bool = True, log_openflow: bool = True):
        self.topology_path = os.path.abspath(topology)
        self.names = list(string.ascii_lowercase[:instances])
        self.etcd = EtcdCluster(etcd_members)
        self.lease_ttl = lease_ttl
        self.extra_ini = extra_ini
        self.config = config
        self.use_etcd_relays = etcd_relays
        self.log_openflow = log_openflow
        self.ctls: Dict[str, ControllerProcess] = {}
        self.etcd_relays: Dict[str, List[subprocess.Popen]] = {}
        self.tb: Optional[Testbed] = None
        self.kept: List[str] = []
        self.stopped: set = set()       # instances SIGSTOPped now

    # -- life cycle --

    def start(self) -> "ClusterLab":
        try:
            self.etcd.start()
            for name in self.names:
                endpoints = self._etcd_endpoints(name)
                ini = "\n".join([
                    "cluster_backend = etcd", f"etcd_endpoints = {endpoints}",
                    f"instance_name = {name}", f"cluster_lease_ttl = {self.lease_ttl}",
                    self.extra_ini])
                self.ctls[name] = ControllerProcess(
                    config_file=self.topology_path if self.config else None,
                    extra_ini=ini)
            # One after the other: each reads the configuration file at
            # start, and the first one writes it.
            for name in self.names:
                self.ctls[name].start(timeout=60, wait_for=("of", "rest", "rpc"))
            self.tb = Testbed(self.topology_path)
            self.tb.start()
            if self.log_openflow:
                for node in self.tb.nves.values():
                    node.appctl("vlog/set", "vconn:file:dbg")
            self.tb.connect_cluster([self.ctls[n].of_port for n in self.names])
        except BaseException:
            self.stop()
            raise
        return self

    def _etcd_endpoints(self, name: str) -> str:
        if not self.use_etcd_relays:
            return self.etcd.endpoints
        relays, eps = [], []
        for i in range(1, self.etcd.n + 1):
            port = free_port()
            proc = subprocess.Popen(
                ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
                 f"TCP:{self.etcd.endpoint(i)}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            self.etcd.manifest.add_pid(proc.pid, f"socat etcd relay {name}{i}")
            relays.append(proc)
            eps.append(f"127.0.0.1:{port}")
        self.etcd_relays[name] = relays
        for port in eps:
            _wait_port(int(port.rsplit(":", 1)[1]))
        return ",".join(eps)

    def stop(self, report: bool = True) -> List[str]:
        """Tear everything down; returns the instances' logged problems."""
        for name in list(self.stopped):
            self.cont(name)
        problems: List[str] = []
        try:
            if self.tb is not None:
                self.tb.keep_rundir = True
                self.tb.stop()
        finally:
            for name, ctl in self.ctls.items():
                found = ctl.close(report=False)
                problems += [f"[{name}] {p}" for p in found]
                if found:
                    self.kept.append(ctl.rundir)
            for relays in self.etcd_relays.values():
                for proc in relays:
                    procs.kill_pid(proc.pid, group=True)
                    proc.wait(timeout=3)
            self.etcd_relays.clear()
            if problems:
                self.etcd.manifest.keep("app problems")
                self.kept.append(rundir.run_dir(self.etcd.manifest.prefix))
            self.etcd.stop()
            if self.tb is not None:
                if problems:
                    self.tb.manifest.keep("app problems")
                    self.kept.append(self.tb.rundir)
                elif os.environ.get("NVO3_KEEP_RUNDIR") != "1":
                    import shutil
                    shutil.rmtree(self.tb.rundir, ignore_errors=True)
            if problems and report:
                import sys
                sys.stderr.write(problem_report(problems, self.kept))
        return problems

    def __enter__(self) -> "ClusterLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- instances --

    def kill(self, name: str) -> None:
        """SIGKILL instance ``name`` (a crash: its lease simply expires)."""
        self.ctls[name].kill()

    def restart(self, name: str) -> None:
        """Start a killed instance again, and have every NVE reconnect to it
        now rather than after OVS's backoff."""
        self.ctls[name].start(timeout=60, wait_for=("of", "rest", "rpc"))
        self.tb.reconnect_instance(self.names.index(name) + 1)

    def freeze(self, name: str) -> None:
        """SIGSTOP instance ``name``."""
        os.killpg(self.ctls[name].pid, signal.SIGSTOP)
        self.stopped.add(name)

    def cont(self, name: str) -> None:
        """SIGCONT instance ``name``."""
        os.killpg(self.ctls[name].pid, signal.SIGCONT)
        self.stopped.discard(name)

    def cut_etcd(self, name: str, cut: bool = True) -> None:
        """Cut instance ``name`` off from etcd (its relays and their open
        connections stop: a network partition), or heal it."""
        for proc in self.etcd_relays[name]:
            os.killpg(proc.pid, signal.SIGSTOP if cut else signal.SIGCONT)

    # -- REST --

    def url(self, name: str, path: str) -> str:
        return "http://127.0.0.1:%d%s" % (self.ctls[name].rest_port, path)

    def request(self, name: str, method: str, path: str, body=None,
                timeout: float = 30) -> Tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url(name, path), data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        return status, (json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode())

    def get(self, name: str, path: str):
        status, body = self.request(name, "GET", path)
        if status != 200:
            raise ClusterError("GET %s on %s -> %d %s" % (path, name, status, body))
        return body

    def metrics(self, name: str) -> Dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families
        out = {}
        for family in text_string_to_metric_families(self.get(name, "/metrics")):
            for sample in family.samples:
                labels = ",".join("%s=%s" % kv for kv in sorted(sample.labels.items()))
                out["%s{%s}" % (sample.name, labels)] = sample.value
        return out

    def counter(self, name: str, counter: str) -> float:
        key = "nvo3_%s_total{}" % counter
        metrics = self.metrics(name)
        if key not in metrics:
            raise ClusterError("%s has no metric %s" % (name, key))
        return metrics[key]

    # -- acknowledged state --

    def dpids(self) -> List[str]:
        return [n.dpid for n in self.tb.topo.nves]

    def masters(self, alive: Optional[Iterable[str]] = None) -> Dict[str, Optional[str]]:
        """``{dpid: instance}`` of the NVEs whose master, among ``alive``,
        says the switch confirmed it (its /v1/cluster ``roles``); None where
        none does (yet)."""
        alive = set(alive if alive is not None else self.names) - self.stopped
        out: Dict[str, Optional[str]] = {d: None for d in self.dpids()}
        for name in sorted(alive):
            try:
                status = self.get(name, "/v1/cluster")
            except (OSError, ClusterError):
                continue
            for dpid, role in status.get("roles", {}).items():
                if role == "master" and dpid in out:
                    if out[dpid] not in (None, name):
                        raise ClusterError("two masters of %s: %s and %s" % (
                            dpid, out[dpid], name))
                    out[dpid] = name
        return out

    def wait_mastered(self, alive: Optional[Iterable[str]] = None,
                      timeout: float = 30.0) -> Tuple[float, Dict[str, str]]:
        """Until every NVE has a confirmed master among ``alive``; returns
        (seconds, masters)."""
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < timeout:
            last = self.masters(alive)
            if all(last.values()):
                return time.monotonic() - t0, last
            time.sleep(0.05)
        raise ClusterError("not every NVE mastered after %.0fs: %s" % (timeout, last))

    def wait_balanced(self, alive: Optional[Iterable[str]] = None,
                      timeout: float = 30.0) -> Dict[str, str]:
        """Until every NVE is mastered and the masters' loads differ by one
        at most (the cluster's hold-down lets a newcomer take NVEs only
        after two lease TTLs)."""
        names = set(alive if alive is not None else self.names) - self.stopped

        def balanced():
            masters = self.masters(names)
            if not all(masters.values()):
                return None
            load = {n: 0 for n in names}
            for name in masters.values():
                load[name] += 1
            return masters if max(load.values()) - min(load.values()) <= 1 else None
        return self.wait_for(balanced, timeout, "mastership shared out")

    def wait_sync(self, timeout: float = 30.0) -> float:
        """Until each NVE's master says it acknowledged every change."""
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < timeout:
            masters = self.masters()
            ok = all(masters.values())
            for dpid, name in masters.items():
                if not ok:
                    break
                last = self.get(name, "/v1/sync")["nves"].get(dpid, {})
                ok = bool(last.get("connected") and last.get("in_sync"))
            if ok:
                return time.monotonic() - t0
            time.sleep(0.05)
        raise ClusterError("NVEs not in sync after %.0fs: %s" % (timeout, last))

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "condition",
                 interval: float = 0.05):
        """Until ``predicate`` returns something true (returned)."""
        return wait_until(predicate, timeout, what, interval, ClusterError)

    # -- the switches' side --

    def writes_received(self) -> Dict[str, int]:
        """``{instance: n}``: the flow-mods, meter-mods and packet-outs
        every NVE's ovs-vswitchd logged receiving from each instance's
        connection so far (vconn:dbg: counted on the switches' side)."""
        out = {name: 0 for name in self.names}
        for node in self.tb.nves.values():
            try:
                with open(os.path.join(node.rundir, "ovs-vswitchd.log"),
                          encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        m = WRITE_RE.search(line)
                        if m:
                            out[self.names[int(m.group(2)) - 1]] += 1
            except FileNotFoundError:
                continue
        return out

    def dump_flows(self, nve: str) -> List[str]:
        text = self.tb.nve(nve).ofctl("dump-flows")
        return [line.strip() for line in text.splitlines() if "cookie=" in line]

    def parallel(self, func, items, workers: int = 6) -> list:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(func, items))


def _wait_port(port: int, timeout: float = 5.0) -> None:
    from .controller import listening_ports
    deadline = time.monotonic() + timeout
    while port not in listening_ports():
        if time.monotonic() > deadline:
            raise ClusterError("relay port %d not listening" % port)
        time.sleep(0.02)
