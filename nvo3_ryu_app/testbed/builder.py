"""Build (and always tear down) a whole NVO3 testbed from a Topology.

    with Testbed("topologies/two-nve.yaml", of_port=6653) as tb:
        assert tb.ping("h1", "192.168.50.3")

What ``start()`` builds, all inside namespaces named ``nvo3-<prefix>-<node>``:

* ``underlay``: Linux bridge br-ul, one veth ``u-<nve>`` per NVE;
* one NVENode per NVE (private OVS, see nve.py), uplink ``ul0``;
* one Mininet host per VM, vNIC i = ``eth<i>`` (VLAN subinterface
  ``eth<i>.<vlan>`` for tagged vNICs), peer = access port ``vnic.port``;
* controller mode (default): br-int fail-mode=secure with flow-based vxlan0 /
  gre0; with ``of_port`` a socat relay per NVE in the root namespace
  (``UNIX-LISTEN:<nve rundir>/controller.sock`` -> ``TCP:127.0.0.1:<of_port>``),
  because a namespace cannot reach the root namespace's loopback and os-ken
  cannot accept OpenFlow on a unix socket;
* OpenFlow over TLS (``pki``, a testbed/pki.py Pki whose CA the app trusts):
  OVS has no TLS over a unix socket, so br-int's controller is
  ``ssl:127.0.0.1:6653`` *inside* the NVE's namespace, where a second socat
  (``TCP-LISTEN:6653,bind=127.0.0.1`` -> ``UNIX-CONNECT:controller.sock``)
  carries the bytes to the root relay unchanged: the TLS session is
  end to end between OVS and the app.  Each NVE presents a certificate the
  CA signed whose CN is its datapath id (``tls_identity`` overrides one);
* standalone mode: the flood-and-learn baseline. br-int fail-mode=standalone
  with a NORMAL flow; per VN a local VLAN; per (VN, remote member NVE) a
  tunnel port with fixed remote_ip and key=vnid, marked ``protected`` so that
  NORMAL never floods tunnel-to-tunnel (split horizon: no loops in a mesh).

The underlay MTU (default 1600) leaves room for the VXLAN/GRE headers so VMs
keep MTU 1500; VM details (tagged vNICs, offloads, ARP sysctls) are in vm.py.

``stop()`` kills only PIDs this run recorded, deletes its namespaces and its
run directory; it runs on exceptions, KeyboardInterrupt, SIGTERM/SIGHUP and
at interpreter exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Union

try:
    import mininet.node  # noqa: F401  (Debian's package; not on PyPI in usable form)
except ImportError as _exc:  # pragma: no cover - depends on the interpreter
    raise ImportError("Mininet is not importable: use the .venv made by tools/install-deps.sh "
                      "(Debian's /usr/bin/python3 with --system-site-packages)") from _exc

from . import procs, rundir
from .capture import Capture, CapturedPacket
from .nve import STANDALONE_TUNNEL_OFPORT_BASE, UNDERLAY_IF, NVENode
from .topology import Topology, load_topology
from .underlay import UnderlayNode, underlay_ifname
from .vm import configure_vm

LOG = logging.getLogger(__name__)
UNDERLAY_NODE = "underlay"


class TestbedError(RuntimeError):
    """The testbed could not be built or used."""


class Testbed:
    """A running testbed; see the module docstring."""

    __test__ = False  # not a pytest test class

    def __init__(self, topology: Union[Topology, str], of_port: Optional[int] = None,
                 run_prefix: Optional[str] = None, standalone: bool = False,
                 keep_rundir: Optional[bool] = None, parallel: int = 4,
                 clean_stale: bool = True, pki=None):
        self.topo = topology if isinstance(topology, Topology) else load_topology(topology)
        self.of_port = of_port
        self.standalone = standalone
        self.prefix = rundir.check_prefix(run_prefix) if run_prefix else None
        self.keep_rundir = (os.environ.get("NVO3_KEEP_RUNDIR") == "1"
                            if keep_rundir is None else keep_rundir)
        self.parallel = max(1, parallel)
        self.clean_stale = clean_stale
        self.net = None
        self.manifest: Optional[rundir.Manifest] = None
        self.underlay: Optional[UnderlayNode] = None
        self.nves: Dict[str, NVENode] = {}
        self.vms: Dict[str, object] = {}
        self.taggers: Dict[str, object] = {}     # VM name -> OvsInstance (tagged vNICs)
        self.relays: Dict[str, subprocess.Popen] = {}
        self.ns_relays: Dict[str, subprocess.Popen] = {}   # TLS: inside the NVE
        self.pki = pki
        self._relay_port: Optional[int] = None     # where the relays go
        self.captures: List[Capture] = []
        self.timings: Dict[str, float] = {}
        self._started = False
        self._stopping = False
        self._old_handlers: Dict[int, object] = {}

    # -- lifecycle ---------------------------------------------------------
    @property
    def rundir(self) -> str:
        return rundir.run_dir(self.prefix)

    def start(self) -> "Testbed":
        if self._started:
            return self
        _require_root_and_tools()
        t0 = time.monotonic()
        if self.clean_stale:   # leftovers of killed runs (owner dead) only
            from .cleanup import cleanup
            cleanup(log=LOG.info)
        self.prefix = self.prefix or rundir.new_prefix()
        self.manifest = rundir.Manifest(self.prefix)
        self._started = True
        atexit.register(self.stop)
        self._install_signal_handlers()
        try:
            self._build()
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Tear down everything this run started. Idempotent."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        t0 = time.monotonic()
        try:
            for cap in self.captures:
                try:
                    cap.stop()
                except Exception:  # noqa: BLE001 - teardown must go on
                    LOG.exception("stopping capture")
            for name, proc in list(self.relays.items()) + list(self.ns_relays.items()):
                procs.kill_pid(proc.pid, group=True)
                try:
                    proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            for node in self.nves.values():
                try:
                    node.stop()
                except Exception:  # noqa: BLE001
                    LOG.exception("stopping %s", node.name)
            for tagger in self.taggers.values():
                try:
                    tagger.stop()
                except Exception:  # noqa: BLE001
                    LOG.exception("stopping VLAN tagger")
            nodes = list(self.vms.values()) + ([self.underlay] if self.underlay else [])
            for node in nodes:
                try:
                    node.terminate()
                except Exception:  # noqa: BLE001
                    LOG.exception("terminating %s", node.name)
            # Whatever still lives in our namespaces was started by this run.
            leftover = [p for ns in self.manifest.data["netns"] for p in procs.netns_pids(ns)]
            recorded = [e["pid"] for e in self.manifest.data["pids"]
                        if procs.proc_starttime(e["pid"]) == e["start"]]
            procs.kill_all(set(leftover) | set(recorded))
            for ns in self.manifest.data["netns"]:
                procs.netns_delete(ns)
            if not self.keep_rundir:
                shutil.rmtree(self.rundir, ignore_errors=True)
        finally:
            self._restore_signal_handlers()
            try:
                atexit.unregister(self.stop)
            except Exception:  # noqa: BLE001
                pass
            self._started = False
            self._stopping = False
            self.timings["stop"] = time.monotonic() - t0

    def __enter__(self) -> "Testbed":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _install_signal_handlers(self) -> None:
        """Turn SIGTERM/SIGHUP into SystemExit so that ``finally`` blocks and
        ``stop()`` run; leave handlers that someone else installed alone."""
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, _frame):
            raise SystemExit(128 + signum)

        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                self._old_handlers[sig] = signal.signal(sig, handler)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()

    # -- building ----------------------------------------------------------
    def _build(self) -> None:
        from mininet.log import setLogLevel
        from mininet.net import Mininet
        setLogLevel(os.environ.get("NVO3_MININET_LOG", "output"))  # "output": the CLI prints at this level
        topo = self.topo
        self.net = Mininet(topo=None, controller=None, build=False)
        mtu = topo.underlay.mtu
        t = time.monotonic()

        self.underlay = UnderlayNode(UNDERLAY_NODE, mtu=mtu)
        self._register(self.underlay)
        plen = topo.underlay.subnet.prefixlen
        for spec in topo.nves:
            node = NVENode(spec.name, rundir=os.path.join(self.rundir, spec.name),
                           dpid=spec.dpid, vtep=f"{spec.vtep_ip}/{plen}", mtu=mtu)
            self.nves[spec.name] = node
            self._register(node)
            uif = underlay_ifname(spec.name)
            self.net.addLink(self.underlay, node, intfName1=uif, intfName2=UNDERLAY_IF)
            self.underlay.attach(uif)
            node.ns_run("ip", "link", "set", UNDERLAY_IF, "mtu", str(mtu), "up")
        for vm in topo.vms:
            host = self.net.addHost(vm.name, ip=None)
            self.vms[vm.name] = host
            self._register(host)
            self._wire_vm(vm, host)
        self.timings["namespaces"] = time.monotonic() - t

        t = time.monotonic()
        with ThreadPoolExecutor(self.parallel) as pool:
            list(pool.map(self._start_nve, topo.nves))
        for spec in topo.nves:         # pre-fill every tunnel neighbour cache
            for peer in topo.nves:
                if peer.name != spec.name:
                    self.nves[spec.name].set_tunnel_neighbor(
                        str(peer.vtep_ip), self.nves[peer.name].phy_mac)
        self.timings["ovs"] = time.monotonic() - t
        if self.of_port is not None and not self.standalone:
            self.connect_controller(self.of_port)

    def _register(self, node) -> None:
        name = rundir.netns_name(self.prefix, node.name)
        procs.netns_attach(name, node.pid)
        self.manifest.add_netns(name)
        self.manifest.add_pid(node.pid, f"shell {node.name}")
        if node.name not in self.net.nameToNode:
            self.net.nameToNode[node.name] = node

    def _wire_vm(self, vm, host) -> None:
        """veths to the NVE (one per distinct access port), then vm.configure_vm."""
        nve = self.nves[vm.nve]
        seen = set()
        for v in vm.vnics:
            if v.intf in seen:
                continue
            seen.add(v.intf)
            # A trunk's VM-side interface takes the MAC of its first vNIC.
            self.net.addLink(host, nve, intfName1=v.intf, intfName2=v.port, addr1=v.mac)
            nve.ns_run("ip", "link", "set", v.port, "up")
        tagger = configure_vm(host, vm, self.topo, self.rundir)
        if tagger is not None:
            self.taggers[vm.name] = tagger
            self.manifest.add_pid(tagger.ovsdb_pid, f"ovsdb-server {vm.name}")
            self.manifest.add_pid(tagger.vswitchd_pid, f"ovs-vswitchd {vm.name}")

    def _start_nve(self, spec) -> None:
        node = self.nves[spec.name]
        node.start_ovs()
        self.manifest.add_pid(node.ovsdb_pid, f"ovsdb-server {spec.name}")
        self.manifest.add_pid(node.vswitchd_pid, f"ovs-vswitchd {spec.name}")
        access = {p: {"ofport": self.topo.ofport(spec.name, p)}
                  for p in self.topo.access_ports(spec.name)}
        extra = []
        if self.standalone:
            extra = self._standalone_config(spec, access)
        node.setup_bridges(access, flow_tunnels=not self.standalone,
                           standalone=self.standalone, extra=extra)

    def _standalone_config(self, spec, access: Dict[str, dict]) -> List[List[str]]:
        """Flood-and-learn: a local VLAN per VN, a keyed tunnel per (VN, peer)."""
        topo = self.topo
        vnics = topo.vnics_on(spec.name)
        local: Dict[int, int] = {}
        for v in vnics:                       # tagged vNICs fix their VN's VLAN
            if v.vlan is not None:
                if local.get(v.vnid, v.vlan) != v.vlan or \
                        any(o != v.vnid and lv == v.vlan for o, lv in local.items()):
                    raise TestbedError(f"standalone mode: {spec.name} cannot map VLAN {v.vlan} "
                                       f"of {v.port} to VN {v.vn} consistently")
                local[v.vnid] = v.vlan
        free = (n for n in range(100, 4095) if n not in local.values())
        for v in vnics:
            if v.vnid not in local:
                local[v.vnid] = next(free)
        for v in vnics:
            if v.vlan is None:
                access[v.port]["tag"] = local[v.vnid]
            else:
                access[v.port].setdefault("trunks", []).append(v.vlan)
        extra, k = [], 0
        for vnid, vlan in sorted(local.items()):
            vn = topo.vn(vnid)
            for peer_idx, peer in enumerate(topo.nves, start=1):
                if peer.name == spec.name or peer not in topo.nves_of(vnid):
                    continue
                k += 1
                name = f"{'vx' if vn.encap == 'vxlan' else 'gr'}{vnid}-{peer_idx}"
                extra += [["--may-exist", "add-port", "br-int", name],
                          ["set", "interface", name, f"type={vn.encap}",
                           f"options:remote_ip={peer.vtep_ip}", f"options:key={vnid}",
                           f"ofport_request={STANDALONE_TUNNEL_OFPORT_BASE + k}"],
                          ["set", "port", name, f"tag={vlan}", "protected=true"]]
        return extra

    # -- controller --------------------------------------------------------
    def connect_controller(self, of_port: int) -> None:
        """Relay every NVE's br-int to the controller at 127.0.0.1:<of_port>.

        Idempotent: an NVE whose relay already goes to ``of_port`` keeps it.
        Replacing a live relay cuts the NVE's OpenFlow connection, which the
        app rightly reports as the NVE going down and coming back (this is
        what made every NVE connect twice while a Lab came up)."""
        same_port = of_port == self._relay_port
        self.of_port = self._relay_port = of_port
        for name, node in self.nves.items():
            old = self.relays.get(name)
            if same_port and old is not None and old.poll() is None:
                continue
            self.relays.pop(name, None)
            if old is not None:
                procs.kill_pid(old.pid, group=True)
                old.wait(timeout=2)
            # nodelay: as OVS's own TCP controller connections do. Without it
            # Nagle holds a packet-in behind an unacknowledged segment until
            # the app's delayed ACK (~40 ms stalls, seen in attach_bench).
            self.relays[name] = self._relay(
                ["socat", f"UNIX-LISTEN:{node.controller_sock},fork,unlink-early",
                 f"TCP:127.0.0.1:{of_port},nodelay"],
                os.path.join(node.rundir, "socat.log"), f"socat {name}",
                lambda _proc: os.path.exists(node.controller_sock))
            if self.pki is not None:
                self._tls_controller(name, node)
            else:
                node.set_controller(f"unix:{node.controller_sock}")

    def _relay(self, argv, log_path: str, label: str, ready) -> subprocess.Popen:
        """Start a socat relay (its own session, in the manifest) and wait,
        5 s at most, until ``ready(proc)``."""
        log = open(log_path, "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
        log.close()
        self.manifest.add_pid(proc.pid, label)
        deadline = time.monotonic() + 5
        while not ready(proc):
            if proc.poll() is not None or time.monotonic() > deadline:
                procs.kill_pid(proc.pid, group=True)
                raise TestbedError(f"{label} relay did not start")
            time.sleep(0.01)
        return proc

    NS_OF_PORT = 6653      # where an NVE finds the app over TLS, in its own namespace

    def _tls_controller(self, name: str, node: NVENode) -> None:
        """OpenFlow over TLS for ``node``: its certificate, the relay in its
        namespace, its ssl: controller (see the module docstring)."""
        if name not in self.ns_relays or self.ns_relays[name].poll() is not None:
            node.ns_run("ip", "link", "set", "lo", "up")
            self.ns_relays[name] = self._relay(
                ["mnexec", "-a", str(node.pid), "socat",
                 f"TCP-LISTEN:{self.NS_OF_PORT},bind=127.0.0.1,reuseaddr,fork,nodelay",
                 f"UNIX-CONNECT:{node.controller_sock}"],
                os.path.join(node.rundir, "socat-ns.log"), f"socat ns {name}",
                lambda proc: _listening(proc.pid, self.NS_OF_PORT))
        self.tls_identity(name, node.dpid)
        node.set_controller(f"ssl:127.0.0.1:{self.NS_OF_PORT}")

    def tls_identity(self, name: str, cn: str, signed: bool = True, dns=()) -> None:
        """Make NVE ``name`` present a certificate whose CN is ``cn`` (signed
        by the testbed's CA, or self-signed: a forgery) from its next
        connection on."""
        node = self.nves[name]
        label = f"{name}-{cn}" + ("" if signed else "-self") + "".join("-" + d for d in dns)
        key, cert = (self.pki.issue(label, cn, dns) if signed
                     else self.pki.self_signed(label, cn))
        node.set_ssl(key, cert, self.pki.ca_cert)

    def reconnect_controllers(self) -> None:
        """Make every NVE try its controller now (see NVENode.reconnect_controller)."""
        for node in self.nves.values():
            node.reconnect_controller()

    def wait_connected(self, timeout: float = 15.0) -> bool:
        """True once every NVE reports its controller connection up."""
        deadline = time.monotonic() + timeout
        return all(n.wait_connected(max(0.1, deadline - time.monotonic()))
                   for n in self.nves.values())

    # -- helpers for tests and demos ---------------------------------------
    def vm(self, name: str):
        return self.vms[name]

    def nve(self, name: str) -> NVENode:
        return self.nves[name]

    def underlay_port(self, nve: str) -> str:
        if nve not in self.nves:
            raise KeyError(f"no NVE named {nve!r}")
        return underlay_ifname(nve)

    def ping(self, src: str, dst_ip: str, count: int = 1, timeout: float = 1,
             interval: float = 0.2) -> bool:
        """True when ``src`` (a VM name) gets at least one echo reply."""
        res = procs.run_in(self.vms[src].pid,
                           ["ping", "-n", "-q", "-c", str(count), "-i", str(interval),
                            "-W", str(timeout), str(dst_ip)],
                           check=False, timeout=count * (interval + timeout) + 10)
        return res.returncode == 0

    def vm_run(self, vm: str, *cmd: str, check: bool = True, timeout: float = 30) -> str:
        return procs.run_in(self.vms[vm].pid, cmd, check=check, timeout=timeout).stdout

    # -- VM mobility (migration.py does the work) ----------------------------
    def move_vnic(self, vm: str, to_nve: str, port: Optional[str] = None, **kwargs) -> str:
        """Re-attach ``vm``'s vNIC to a new access port on ``to_nve`` (the old
        port leaves its br-int; same MAC/IP/routes in the VM); returns the new
        port name. Bind that port to the VN first (migration.migrate does)."""
        from .migration import move_vnic
        return move_vnic(self, vm, to_nve, port=port, **kwargs)

    def gratuitous_arp(self, vm: str, **kwargs) -> None:
        """``vm`` announces its address (or ``ip``/``mac`` given: spoofs one)."""
        from .migration import gratuitous_arp
        gratuitous_arp(self, vm, **kwargs)

    def vnic_location(self, vm: str):
        """(NVE name, access port) of ``vm``'s vNIC now (after moves too)."""
        from .migration import vnic_location
        return vnic_location(self, vm)

    def start_capture(self, nve: str, bpf: str = "") -> Capture:
        """Start tcpdump on ``nve``'s underlay link (inside the underlay namespace)."""
        path = os.path.join(self.rundir, "captures",
                            f"{nve}-{len(self.captures)}-{int(time.time() * 1000)}.pcap")
        cap = Capture(self.underlay.pid, self.underlay_port(nve), path, bpf).start()
        self.captures.append(cap)
        self.manifest.add_pid(cap.proc.pid, f"tcpdump {nve}")
        return cap

    def capture(self, nve: str, bpf: str = "", duration: float = 1.0) -> List[CapturedPacket]:
        """Capture for ``duration`` seconds and return the decoded packets."""
        cap = self.start_capture(nve, bpf)
        time.sleep(duration)
        return cap.stop()

    def summary(self) -> str:
        lines = [f"testbed run prefix {self.prefix} (run dir {self.rundir}), "
                 f"mode {'standalone flood-and-learn' if self.standalone else 'controller'}"
                 + (f", controller 127.0.0.1:{self.of_port}" if self.of_port else "")]
        lines.append(self.topo.summary())
        for name, node in self.nves.items():
            lines.append(f"  {name}: netns {rundir.netns_name(self.prefix, name)}, "
                         f"OVS_RUNDIR={node.rundir}, underlay veth {self.underlay_port(name)}")
        return "\n".join(lines)


def _listening(pid: int, port: int) -> bool:
    """Is a TCP socket LISTENing on ``port`` in the network namespace of ``pid``?"""
    try:
        with open(f"/proc/{pid}/net/tcp", encoding="ascii") as fh:
            next(fh)
            return any(cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port
                       for cols in (line.split() for line in fh))
    except (OSError, StopIteration):
        return False


def _require_root_and_tools() -> None:
    # ip, ovs-vswitchd, ... live in sbin, which a non-login root PATH may lack.
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(path + [d for d in ("/usr/sbin", "/sbin") if d not in path])
    if os.geteuid() != 0:
        raise TestbedError("the testbed needs root (network namespaces, veths, OVS)")
    missing = [t for t in ("ovs-vswitchd", "ovsdb-server", "ovsdb-tool", "ovs-vsctl",
                           "ovs-ofctl", "ovs-appctl", "mnexec", "socat", "tcpdump", "ip", "ping")
               if shutil.which(t) is None]
    if missing:
        raise TestbedError(f"missing programs: {', '.join(missing)} (run tools/install-deps.sh)")
    try:
        import mininet.net  # noqa: F401
    except ImportError as exc:
        raise TestbedError(f"Mininet is not importable ({exc}); use the .venv made by "
                           "tools/install-deps.sh (Debian's python3 with system site packages)")
