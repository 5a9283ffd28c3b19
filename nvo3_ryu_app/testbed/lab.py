"""The app and a testbed together: what tests, the demo and benchmarks run.

    with Lab("topologies/figure1.yaml") as lab:
        lab.wait_sync()
        assert lab.ping("vm1", "192.168.1.4")

Waiting is always on acknowledged state: ``wait_sync`` returns when every
NVE is connected and the app reports its flows barrier-acknowledged
(``GET /v1/sync``), never after a fixed sleep.

``Lab(..., auth=True)`` gives the app a generated auth file: an ``admin``
token named ``ops`` (what ``request`` sends unless told otherwise), a
``reader`` token named ``viewer``, and one hypervisor per NVE (``hv-<nve
name>``, allowed on that NVE only); ``tokens`` and ``hypervisors`` hold
them.  ``tls=True`` makes every NVE speak OpenFlow over TLS (a per-run CA,
testbed/pki.py).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterable, List, Optional, Tuple

from .builder import Testbed
from .controller import ControllerProcess, problem_report
from .topology import load_topology


def auth_document(topology) -> dict:
    """A fresh auth document for ``topology`` (see the module docstring)."""
    return {
        "tokens": [{"name": "ops", "role": "admin", "token": secrets.token_hex(16)},
                   {"name": "viewer", "role": "reader", "token": secrets.token_hex(16)}],
        "hypervisors": [{"name": "hv-" + nve.name, "secret": secrets.token_hex(16),
                         "nves": [nve.dpid]} for nve in topology.nves]}


class LabError(AssertionError):
    pass


class Lab:
    """osken-manager running the app, plus a testbed connected to it."""

    def __init__(self, topology: str, extra_ini: str = "", config: bool = True,
                 state_dir: Optional[str] = None, auth: bool = False, tls: bool = False):
        self.topology_path = os.path.abspath(topology)
        self.auth = auth_document(load_topology(self.topology_path)) if auth else None
        self.tokens = {t["name"]: t["token"] for t in (self.auth or {}).get("tokens", [])}
        self.hypervisors = {h["name"]: h for h in (self.auth or {}).get("hypervisors", [])}
        self.token = self.tokens.get("ops")          # what request() sends
        self.ctl = ControllerProcess(
            config_file=self.topology_path if config else None,
            extra_ini=extra_ini, state_dir=state_dir, auth=self.auth)
        self.pki = None
        if tls:
            from .pki import Pki
            self.pki = self.ctl.pki = Pki(os.path.join(self.ctl.rundir, "pki"))
        self.tb: Optional[Testbed] = None
        self.kept: List[str] = []        # run directories kept for problems
        self._reported = False

    # -- life cycle --

    def start(self) -> "Lab":
        try:
            self.ctl.start(timeout=60, wait_for=("of", "rest", "rpc"))
            # The testbed relays every NVE to the controller as it is built:
            # each NVE connects once.
            self.tb = Testbed(self.topology_path, of_port=self.ctl.of_port, pki=self.pki)
            self.tb.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, report: bool = True) -> List[str]:
        """Tear everything down; returns the app's logged problems, each a
        whole log record (traceback included).

        When there are any, the run directories of the app (its log) and of
        the testbed (OVS logs, captures) are kept and marked kept (``kept``
        lists them), and with ``report`` the problems are printed to stderr
        with where the directories are."""
        tb = self.tb
        started = tb is not None and tb._started
        keep_tb = tb.keep_rundir if tb is not None else False
        try:
            if started:
                tb.keep_rundir = True    # decided once the app's log is read
                tb.stop()
        finally:
            problems = self.ctl.close(report=False)
            if started:
                tb.keep_rundir = keep_tb
            if problems:
                kept = [self.ctl.rundir]
                if started:
                    tb.manifest.keep("app problems")
                    kept.append(tb.rundir)
                self.kept += [d for d in kept if d not in self.kept]
                if report and not self._reported:
                    self._reported = True
                    sys.stderr.write(problem_report(problems, self.kept))
                    sys.stderr.flush()
            elif started and not keep_tb:
                shutil.rmtree(tb.rundir, ignore_errors=True)
        return problems

    def __enter__(self) -> "Lab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- REST --

    def url(self, path: str) -> str:
        return "http://127.0.0.1:%d%s" % (self.ctl.rest_port, path)

    def request(self, method: str, path: str, body=None, token: Optional[str] = "default"
                ) -> Tuple[int, object]:
        """One REST request; ``token``: the bearer token to send (by
        default the lab's admin token when auth is on; None sends none)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        token = self.token if token == "default" else token
        if token:
            headers["Authorization"] = "Bearer " + token
        req = urllib.request.Request(self.url(path), data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        ctype_json = raw[:1] in (b"{", b"[")
        return status, (json.loads(raw) if ctype_json else raw.decode())

    def get(self, path: str):
        status, body = self.request("GET", path)
        if status != 200:
            raise LabError("GET %s -> %d %s" % (path, status, body))
        return body

    def metrics(self) -> Dict[str, float]:
        """Every sample of /metrics as {'name{labels}': value}."""
        from prometheus_client.parser import text_string_to_metric_families
        out = {}
        for family in text_string_to_metric_families(self.get("/metrics")):
            for sample in family.samples:
                labels = ",".join("%s=%s" % kv for kv in sorted(sample.labels.items()))
                out["%s{%s}" % (sample.name, labels)] = sample.value
        return out

    def metric_sum(self, prefix: str) -> float:
        return sum(v for k, v in self.metrics().items() if k.startswith(prefix + "{"))

    # -- acknowledged state --

    def wait_sync(self, timeout: float = 30.0, nves: Optional[Iterable[str]] = None) -> float:
        """Until every (given) NVE is connected and in sync; returns seconds."""
        want = set(nves) if nves is not None else {
            n.dpid for n in self.tb.topo.nves}
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < timeout:
            last = self.get("/v1/sync")
            status = last.get("nves", {})
            if all(status.get(d, {}).get("connected") and status[d].get("in_sync")
                   for d in want):
                return time.monotonic() - t0
            time.sleep(0.02)
        raise LabError("NVEs not in sync after %.0fs: %s" % (timeout, last))

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "condition",
                 interval: float = 0.02):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise LabError("timed out after %.1fs waiting for %s" % (timeout, what))

    # -- data plane --

    def ping(self, src: str, dst_ip: str, count: int = 1, timeout: float = 1) -> bool:
        return self.tb.ping(src, dst_ip, count=count, timeout=timeout, interval=0.2)

    def reach(self, src: str, targets: List[str], timeout: float = 1) -> Dict[str, bool]:
        """One ping from ``src`` to every target at once: {ip: replied}."""
        script = " ".join(
            "(ping -n -q -c 1 -W %s %s >/dev/null 2>&1 && echo OK %s || echo NO %s) &"
            % (timeout, ip, ip, ip) for ip in targets) + " wait"
        out = self.tb.vm_run(src, "sh", "-c", script, check=False, timeout=30)
        res = {}
        for line in out.splitlines():
            word, _, ip = line.partition(" ")
            res[ip.strip()] = word == "OK"
        return res

    def dump_flows(self, nve: str) -> List[str]:
        text = self.tb.nve(nve).ofctl("dump-flows")
        return [line.strip() for line in text.splitlines() if "cookie=" in line]

    def parallel(self, func, items, workers: int = 6) -> list:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(func, items))
