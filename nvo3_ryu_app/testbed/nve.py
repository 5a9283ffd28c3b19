"""An NVE = one hypervisor's Open vSwitch, in its own network namespace.

Why not a Mininet Switch: a real NVO3 deployment runs one ovsdb-server and one
ovs-vswitchd per hypervisor, each with its own VTEP address, and the tunnels
cross an IP underlay. Mininet's OVSSwitch shares the machine's single OVS.
So an NVE here is a plain Mininet ``Node`` (its own netns) running private
OVS daemons (``OVS_RUNDIR``/``OVS_DBDIR``/``OVS_LOGDIR`` = a per-run directory)
on the userspace datapath (this machine has no OVS kernel module).

Layout (docs/contracts.md, NVE preparation)::

    br-int (netdev, fail-mode=secure, OpenFlow13, datapath-id=<dpid>)
      <vm>-<i>  access ports (veths to the VMs), ofport 1, 2, ...
      vxlan0    type=vxlan remote_ip=flow key=flow   ofport 60001
      gre0      type=gre   remote_ip=flow key=flow   ofport 60002
    br-phy (netdev, standalone NORMAL)
      ul0       veth to the underlay; VTEP IP on br-phy's internal port

OVS userspace tunnelling looks up the route to a remote VTEP in its own
routing table (learnt from this namespace's kernel routes once the VTEP IP
is on br-phy) and the remote VTEP's MAC in its own neighbour cache, which is
filled by ARP snooping on br-phy. A cache miss drops the packet that caused
it, so the builder pre-fills the cache (``set_tunnel_neighbor``; br-phy
MACs are deterministic) and ``arp_ignore=1`` stops the kernel from answering
ARP for the VTEP with ul0's MAC (which OVS would otherwise learn as well).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from mininet.node import Node

from . import procs
from .ovs import OvsInstance

VXLAN_PORT, VXLAN_OFPORT = "vxlan0", 60001
GRE_PORT, GRE_OFPORT = "gre0", 60002
STANDALONE_TUNNEL_OFPORT_BASE = 61000
UNDERLAY_IF = "ul0"
NS_SYSCTLS = ("net.ipv4.conf.all.arp_ignore=1", "net.ipv6.conf.all.disable_ipv6=1",
              "net.ipv6.conf.default.disable_ipv6=1")


@dataclass
class Flow:
    """One ``ovs-ofctl dump-flows`` line, parsed."""
    table: int
    priority: int
    match: Dict[str, str]
    actions: str
    cookie: int = 0
    n_packets: int = 0
    n_bytes: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    raw: str = field(default="", repr=False)


_STAT_KEYS = {"cookie", "duration", "table", "n_packets", "n_bytes", "idle_timeout",
              "hard_timeout", "idle_age", "hard_age", "priority", "reset_counts",
              "send_flow_rem", "check_overlap", "importance"}


def parse_flow_line(line: str) -> Optional[Flow]:
    """Parse a dump-flows line; None for headers ("OFPST_FLOW reply ...")."""
    line = line.strip()
    if " actions=" not in f" {line}" or line.startswith(("OFPST", "NXST")):
        return None
    head, actions = re.split(r"(?:^|[ ,])actions=", line, maxsplit=1)
    fields: Dict[str, str] = {}
    match: Dict[str, str] = {}
    for tok in re.split(r",\s*|\s+", head.strip()):
        if not tok:
            continue
        key, _, value = tok.partition("=")
        (fields if key in _STAT_KEYS else match)[key] = value
    num = lambda k, base=10: int(fields[k].rstrip("s"), base) if k in fields else 0
    return Flow(table=num("table"), priority=int(fields.get("priority", 32768)), match=match,
                actions=actions.strip(), cookie=int(fields.get("cookie", "0"), 0),
                n_packets=num("n_packets"), n_bytes=num("n_bytes"),
                idle_timeout=num("idle_timeout"), hard_timeout=num("hard_timeout"), raw=line)


def phy_mac_for(vtep_ip) -> str:
    """Deterministic br-phy MAC from the VTEP address (survives vswitchd restarts)."""
    b = [int(x) for x in str(vtep_ip).split(".")]
    return "02:99:%02x:%02x:%02x:%02x" % tuple(b)


class NVENode(Node):
    """A network namespace running a private ovsdb-server + ovs-vswitchd."""

    def __init__(self, name: str, rundir: str = None, dpid: str = None, vtep: str = None,
                 mtu: int = 1600, **params):
        # vtep is "a.b.c.d/len"
        super().__init__(name, inNamespace=True, **params)
        self.ovs = OvsInstance(self.pid, rundir, name)
        self.rundir = self.ovs.rundir
        self.dpid = dpid
        self.vtep = vtep
        self.vtep_ip = vtep.split("/")[0]
        self.mtu = mtu
        self.phy_mac = phy_mac_for(self.vtep_ip)
        self.controller_sock = os.path.join(self.rundir, "controller.sock")
        # What br-int's rconn log lines name: the unix socket, or the ssl
        # target inside the namespace (OpenFlow over TLS).
        self.controller_hint = "controller.sock"
        self.neighbors: Dict[str, str] = {}    # remote VTEP IP -> its br-phy MAC
        self.bridges_ready = False
        self.standalone = False
        procs.run_in(self.pid, ["sysctl", "-q", "-w", *NS_SYSCTLS])
        # Make "edge1 ovs-vsctl show" etc. work in the Mininet CLI.
        self.cmd(f"export OVS_RUNDIR={self.rundir} OVS_DBDIR={self.rundir} "
                 f"OVS_LOGDIR={self.rundir}")

    # -- daemons -----------------------------------------------------------
    @property
    def ovsdb_pid(self) -> Optional[int]:
        return self.ovs.ovsdb_pid

    @property
    def vswitchd_pid(self) -> Optional[int]:
        return self.ovs.vswitchd_pid

    def start_ovs(self) -> None:
        """Create the database and start both daemons (bridges come later)."""
        self.ovs.start()

    def start_vswitchd(self) -> None:
        self.ovs.start_vswitchd()
        if self.bridges_ready:
            self._configure_phy()
            if self.standalone:
                self._normal_flow()

    def stop_vswitchd(self) -> None:
        self.ovs.stop_vswitchd()

    def restart_vswitchd(self) -> None:
        """Kill ovs-vswitchd and start it on the same database: every flow is gone,
        bridges, ports and the controller setting come back from the database.
        (Standalone mode puts its NORMAL flow back, as its operator would.)"""
        self.stop_vswitchd()
        self.start_vswitchd()

    def stop(self, deleteIntfs: bool = False) -> None:  # noqa: N803 (Mininet's name)
        self.ovs.stop()
        self.terminate()

    # -- bridges -----------------------------------------------------------
    def setup_bridges(self, access_ports: Dict[str, dict], flow_tunnels: bool = True,
                      standalone: bool = False, extra: Sequence[Sequence[str]] = ()) -> None:
        """Create br-phy and br-int in one OVSDB transaction.

        ``access_ports``: {port name: {"ofport": n, optional "tag": vlan,
        optional "trunks": [vlans]}}; ``extra``: further ovs-vsctl commands
        (lists of words) run in the same transaction (standalone tunnels).
        """
        self.standalone = standalone
        fail_mode = "standalone" if standalone else "secure"
        cmds: List[List[str]] = [
            ["--may-exist", "add-br", "br-phy"],
            ["set", "bridge", "br-phy", "datapath_type=netdev",
             f"other-config:hwaddr={self.phy_mac}", "fail-mode=standalone"],
            ["set", "interface", "br-phy", f"mtu_request={self.mtu}"],
            ["--may-exist", "add-port", "br-phy", UNDERLAY_IF],
            ["--may-exist", "add-br", "br-int"],
            ["set", "bridge", "br-int", "datapath_type=netdev", f"fail-mode={fail_mode}",
             "protocols=OpenFlow13", f"other-config:datapath-id={self.dpid}",
             "other-config:disable-in-band=true"],
        ]
        for name, spec in access_ports.items():
            cmds.append(["--may-exist", "add-port", "br-int", name])
            cmds.append(["set", "interface", name, f"ofport_request={spec['ofport']}"])
            if spec.get("tag") is not None:
                cmds.append(["set", "port", name, f"tag={spec['tag']}"])
            if spec.get("trunks"):
                cmds.append(["set", "port", name, "trunks=" + ",".join(map(str, spec["trunks"]))])
        if flow_tunnels:
            for name, kind, ofport in ((VXLAN_PORT, "vxlan", VXLAN_OFPORT),
                                       (GRE_PORT, "gre", GRE_OFPORT)):
                cmds.append(["--may-exist", "add-port", "br-int", name])
                cmds.append(["set", "interface", name, f"type={kind}", "options:remote_ip=flow",
                             "options:key=flow", f"ofport_request={ofport}"])
        cmds.extend(list(c) for c in extra)
        self.ovs.vsctl_batch(cmds)
        self.bridges_ready = True
        self._configure_phy()
        if standalone:
            self._normal_flow()

    def _normal_flow(self) -> None:
        self.ofctl("del-flows")
        self.ofctl("add-flow", "priority=0,actions=NORMAL")

    def _configure_phy(self) -> None:
        """Put the VTEP address on br-phy's internal port and prime the tunnel
        neighbour cache. Needed again after every vswitchd start, because the
        userspace datapath's internal tap device disappears with the daemon."""
        deadline = time.monotonic() + 10
        while True:
            res = procs.run_in(self.pid, ["ip", "link", "show", "br-phy"], check=False)
            if res.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise procs.CommandError(f"{self.name}: br-phy did not appear: {res.stderr}")
            time.sleep(0.05)
        procs.run_in(self.pid, ["ip", "addr", "replace", self.vtep, "dev", "br-phy"])
        procs.run_in(self.pid, ["ip", "link", "set", "br-phy", "mtu", str(self.mtu), "up"])
        for ip, mac in self.neighbors.items():
            self.appctl("tnl/neigh/set", "br-phy", ip, mac)

    def set_tunnel_neighbor(self, ip: str, mac: str) -> None:
        self.neighbors[str(ip)] = mac
        self.appctl("tnl/neigh/set", "br-phy", str(ip), mac)

    def set_controller(self, target: str, max_backoff_ms: int = 1000) -> None:
        """Point br-int at ``target`` (e.g. unix:<rundir>/controller.sock, or
        ssl:127.0.0.1:<port> with set_ssl)."""
        self.controller_hint = "ssl:127.0.0.1" if target.startswith("ssl:") \
            else "controller.sock"
        self.vsctl("set-controller", "br-int", target, "--", "set", "controller", "br-int",
                   f"max_backoff={max_backoff_ms}")

    def set_ssl(self, key: str, cert: str, ca_cert: str) -> None:
        """The key and certificate OVS presents to an ssl: controller, and
        the CA it checks the controller's certificate against."""
        self.vsctl("set-ssl", key, cert, ca_cert)

    def reconnect_controller(self) -> None:
        """Drop and re-add the controller record: a fresh connection attempt now.

        Why: OVS 3.1 applies ``max_backoff`` only to a live connection; once
        disconnected it backs off 1, 2, 4, 8 s, so after a controller restart
        an NVE may take up to ~8 s to come back. Tests that restart the
        controller and do not want to wait for that can call this.

        How: one ``set-controller`` to another spelling of the same socket
        (``<rundir>/controller.sock`` <-> ``<rundir>/./controller.sock``).
        OVS takes it for a new controller and connects at once, and the
        bridge is never without a controller.  Deleting the controller
        first would not do: ovs-vswitchd flushes every flow of a bridge
        whose primary controllers go from some to none (or back), whatever
        its fail-mode, which is the very outage a restart test looks for.
        """
        target = self.vsctl("get-controller", "br-int").strip()
        if not target:
            return
        if target.startswith("unix:"):
            path = target[len("unix:"):]
            if "/./" in path:
                other = path.replace("/./", "/", 1)
            else:
                head, _, name = path.rpartition("/")
                other = f"{head}/./{name}"
            self.set_controller(f"unix:{other}")
        elif target.startswith("ssl:"):
            # The same trick: ssl:127.0.0.1:6653 <-> ssl:127.0.0.1:06653.
            head, _, port = target.rpartition(":")
            port = port[1:] if port.startswith("0") else "0" + port
            self.set_controller(f"{head}:{port}")
        else:       # not used by the testbed: this one flushes the flows
            self.vsctl("del-controller", "br-int")
            self.set_controller(target)

    def controller_connected(self) -> bool:
        """Is br-int's OpenFlow connection up right now?

        Read from ovs-vswitchd's log (the last rconn line about the
        controller), not from the database: OVS refreshes Controller
        ``is_connected`` only every ~5 s, in both directions.
        """
        last = ""
        try:
            with open(os.path.join(self.rundir, "ovs-vswitchd.log"), encoding="utf-8",
                      errors="replace") as fh:
                for line in fh:
                    if "|rconn|" in line and self.controller_hint in line:
                        last = line
        except FileNotFoundError:
            return False
        return last.rstrip().endswith(": connected")

    def wait_connected(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.controller_connected():
                return True
            time.sleep(0.05)
        return False

    # -- OVS command wrappers ----------------------------------------------
    def vsctl(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        return self.ovs.vsctl(*args, check=check, timeout=timeout)

    def ofctl(self, command: str, *args: str, bridge: str = "br-int",
              check: bool = True) -> str:
        """``ovs-ofctl -O OpenFlow13 <command> unix:<rundir>/<bridge>.mgmt <args>``."""
        return self.ovs.ofctl(command, *args, bridge=bridge, check=check)

    def appctl(self, *args: str, check: bool = True) -> str:
        return self.ovs.appctl(*args, check=check)

    def dump_flows(self, bridge: str = "br-int", table: Optional[int] = None) -> List[Flow]:
        args = [f"table={table}"] if table is not None else []
        out = self.ofctl("dump-flows", *args, bridge=bridge)
        return [f for f in map(parse_flow_line, out.splitlines()) if f is not None]

    def ofport(self, port: str) -> int:
        return int(self.vsctl("get", "interface", port, "ofport").strip())

    def pids(self) -> List[int]:
        return self.ovs.pids()

    def ns_run(self, *cmd: str, check: bool = True, timeout: float = 30) -> str:
        return procs.run_in(self.pid, cmd, check=check, timeout=timeout).stdout
