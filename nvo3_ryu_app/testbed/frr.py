"""An FRR EVPN VTEP beside a running testbed, and the BGP relays to the app.

    vtep = FrrVtep(lab.tb, asn=65002, app_as=65001, ...)   # after Lab.start()
    vtep.start(); ...; vtep.stop()

What ``start()`` builds (namespaces ``nvo3-<prefix>-<name>`` and
``nvo3-<prefix>-<host>``, so ``nvo3-testbed cleanup`` finds them):

* the VTEP namespace: uplink ``ul0`` (``vtep_ip``) on the testbed's
  underlay bridge; a Linux bridge ``br<vni>`` with a kernel VXLAN device
  ``vx<vni>`` (``nolearning noudpcsum``: with the kernel's default UDP
  checksum offload the outer checksum arrives unfinished and OVS's
  userspace datapath drops the packet) and ``neigh_suppress`` (the bridge
  answers ARP for EVPN-learnt hosts); ``arp_accept=1`` on the bridge, since
  zebra learns a host's IP (type-2 MAC/IP route) only from the kernel's
  neighbour table, which takes gratuitous ARPs only then;
* one namespace per host behind the bridge (``eth0``, TX offload off so
  inner checksums are finished before VXLAN);
* zebra and bgpd (``-N <namespace>``: config in ``/etc/frr/<namespace>``,
  PID files in ``/var/run/frr/<namespace>``), ``advertise-all-vni``, iBGP
  or eBGP to the app (see :meth:`FrrVtep.config` on eBGP);
* the BGP relays (the app listens on loopback in the root namespace, FRR
  cannot reach it, and FRR refuses a neighbour address of its own
  namespace): socat in the underlay namespace listens on
  ``relay_ip``:179 (FRR's neighbour) and hands each connection through a
  unix socket to socat in the root namespace, which connects to the app's
  BGP port *from* ``alias`` (a 127.0.0.0/8 address: all loopback, nothing
  added); the other way, socat listens on ``alias``:179 (os-ken connects
  out only to port 179 and calls only that connection "proactive") and
  hands it to the underlay namespace, which connects to FRR from
  ``relay_ip``.  So the app knows FRR as ``alias`` (its ``bgp_neighbors``
  entry) and FRR knows the app as ``relay_ip``, both ways.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from . import procs, rundir
from .underlay import BRIDGE

FRR_BIN = "/usr/lib/frr"


class FrrError(RuntimeError):
    """The FRR VTEP could not be built or did not answer."""


@dataclass
class FrrHost:
    """A host behind the FRR VTEP's bridge."""
    name: str
    mac: str
    ip: str                       # with prefix length, e.g. 192.168.50.9/24
    netns: str = ""


def pick_alias() -> str:
    """A loopback address whose port 179 is free: the app's name for one
    FRR peer (one per peer and run, so runs side by side never meet)."""
    for _ in range(100):
        alias = "127.%d.%d.%d" % (random.randint(1, 254), random.randint(0, 255),
                                  random.randint(1, 254))
        with socket.socket() as s:
            try:
                s.bind((alias, 179))
            except OSError:
                continue
        return alias
    raise FrrError("no loopback alias with a free port 179")


def ns_exec(ns: str, *cmd: str, check: bool = True, timeout: float = 30,
            input: Optional[str] = None) -> str:
    """Run ``cmd`` in network namespace ``ns``; its stdout."""
    return procs.run(["ip", "netns", "exec", ns, *cmd], check=check, timeout=timeout,
                     input=input).stdout


@dataclass
class FrrVtep:
    """An FRR EVPN VTEP in the testbed's underlay (see the module doc)."""
    tb: object
    name: str
    vtep_ip: str                  # on the underlay subnet
    relay_ip: str                 # the app as FRR sees it (on br-ul)
    asn: int
    app_as: int
    app_port: int                 # the app's bgp_listen_port on 127.0.0.1
    alias: str                    # the app's bgp_neighbors address for FRR
    vni: int
    hosts: List[FrrHost] = field(default_factory=list)
    prefix_len: int = 24
    mtu: int = 1600
    evpn_extra: List[str] = field(default_factory=list)   # l2vpn evpn lines
    # eBGP: an outbound route-map keeping the app's own routes from going
    # back to it.  Off by default: see config().
    reflect_filter: bool = False
    netns: str = ""
    relays: List[subprocess.Popen] = field(default_factory=list)
    _started: bool = False

    # -- life cycle --

    @property
    def bridge(self) -> str:
        return f"br{self.vni}"

    @property
    def vxlan(self) -> str:
        return f"vx{self.vni}"

    @property
    def confdir(self) -> str:
        return f"/etc/frr/{self.netns}"

    @property
    def piddir(self) -> str:
        return f"/var/run/frr/{self.netns}"

    def start(self) -> "FrrVtep":
        tb = self.tb
        self.netns = rundir.netns_name(tb.prefix, self.name)
        self._started = True
        try:
            self._build()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Relays, daemons, namespaces and FRR's directories of this VTEP."""
        if not self._started:
            return
        for proc in self.relays:
            # socat ...,fork leaves a child per live connection in its group.
            procs.kill_pid(proc.pid, group=True)
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        self.relays = []
        for daemon in ("bgpd", "zebra"):
            pid = procs.read_pidfile(os.path.join(self.piddir, f"{daemon}.pid"))
            if pid and self.netns and pid in procs.netns_pids(self.netns):
                procs.kill_all([pid])
        for ns in [self.netns] + [h.netns for h in self.hosts]:
            if ns:
                procs.kill_all(procs.netns_pids(ns))
                procs.netns_delete(ns)
        shutil.rmtree(self.confdir, ignore_errors=True)
        shutil.rmtree(self.piddir, ignore_errors=True)
        self._started = False

    # -- building --

    def _underlay_ns(self) -> str:
        return rundir.netns_name(self.tb.prefix, "underlay")

    def _add_netns(self, name: str) -> str:
        ns = rundir.netns_name(self.tb.prefix, name)
        procs.run(["ip", "netns", "add", ns])
        self.tb.manifest.add_netns(ns)
        ns_exec(ns, "ip", "link", "set", "lo", "up")
        return ns

    def _build(self) -> None:
        tb, ns, ul = self.tb, None, self._underlay_ns()
        ns = self.netns = self._add_netns(self.name)
        uif = f"u-{self.name}"[:15]
        procs.run(["ip", "link", "add", uif, "netns", ul, "mtu", str(self.mtu), "type",
                   "veth", "peer", "ul0", "netns", ns, "mtu", str(self.mtu)])
        tb.underlay.attach(uif)
        if self.relay_ip not in ns_exec(ul, "ip", "-o", "addr", "show", "dev", BRIDGE):
            ns_exec(ul, "ip", "addr", "add", f"{self.relay_ip}/{self.prefix_len}",
                    "dev", BRIDGE)
        br, vx = self.bridge, self.vxlan
        ns_exec(ns, "ip", "-batch", "-", input="\n".join([
            f"addr add {self.vtep_ip}/{self.prefix_len} dev ul0",
            "link set ul0 up",
            f"link add {br} type bridge stp_state 0",
            f"link add {vx} type vxlan id {self.vni} dstport 4789 local {self.vtep_ip} "
            "nolearning noudpcsum",
            f"link set {vx} master {br}",
            f"link set {br} up", f"link set {vx} up"]) + "\n")
        ns_exec(ns, "sysctl", "-qw", f"net.ipv4.conf.{br}.arp_accept=1",
                "net.ipv6.conf.all.disable_ipv6=1")
        ns_exec(ns, "bridge", "link", "set", "dev", vx, "neigh_suppress", "on")
        for host in self.hosts:
            self._add_host(host)
        # The testbed's NVEs resolve the VTEP's underlay MAC by themselves
        # too; pre-filling it spares the first packets an ARP round.
        mac = ns_exec(ns, "cat", "/sys/class/net/ul0/address").strip()
        for node in tb.nves.values():
            node.set_tunnel_neighbor(self.vtep_ip, mac)
        self._start_frr()
        self._start_relays()

    def _add_host(self, host: FrrHost) -> None:
        ns = host.netns = self._add_netns(host.name)
        port = f"{self.name[:6]}-{host.name}"[:15]
        procs.run(["ip", "link", "add", port, "netns", self.netns, "type", "veth",
                   "peer", "eth0", "netns", ns])
        ns_exec(self.netns, "ip", "link", "set", port, "master", self.bridge, "up")
        ns_exec(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        ns_exec(ns, "ip", "-batch", "-", input="\n".join([
            f"link set eth0 address {host.mac}", f"addr add {host.ip} dev eth0",
            "link set eth0 up"]) + "\n")
        ns_exec(ns, "ethtool", "-K", "eth0", "tx", "off")

    def host_port(self, host: str) -> str:
        """The bridge port (in the VTEP's namespace) of ``host``."""
        return f"{self.name[:6]}-{host}"[:15]

    def set_host_port(self, name: str, up: bool, timeout: float = 5.0) -> None:
        """Take host ``name``'s bridge port down, or up and wait until the
        bridge forwards on it (carrier comes through the kernel's link
        watch, up to a second later: a frame sent before is lost)."""
        port = self.host_port(name)
        ns_exec(self.netns, "ip", "link", "set", port, "up" if up else "down")
        if not up:
            return
        host = self.host(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            links = json.loads(ns_exec(self.netns, "bridge", "-j", "link", "show",
                                       "dev", port) or "[]")
            eth0 = json.loads(ns_exec(host.netns, "ip", "-j", "link", "show", "eth0"))
            if links and links[0].get("state") == "forwarding" and \
                    eth0[0].get("operstate") == "UP":
                return
            time.sleep(0.02)
        raise FrrError(f"bridge port {port} not forwarding after {timeout}s")

    def config(self) -> str:
        """frr.conf of this VTEP.  Over eBGP FRR sends the app its own
        routes back (os-ken drops them as AS-path loops and logs each
        UPDATE, rate-limited); iBGP has none of that (FRR sends no
        iBGP-learnt route to an iBGP peer).  ``reflect_filter`` adds an
        outbound route-map against it, which costs more than the noise:
        FRR 8.4 then held back its own route for a MAC that had been the
        app's (a move to FRR waited for the app's withdraw)."""
        peer = self.relay_ip
        ebgp = self.asn != self.app_as and self.reflect_filter
        lines = [
            "frr defaults datacenter",
            f"hostname {self.netns}",
            "!",
            f"router bgp {self.asn}",
            f" bgp router-id {self.vtep_ip}",
            " no bgp ebgp-requires-policy",
            " no bgp default ipv4-unicast",
            f" neighbor {peer} remote-as {self.app_as}",
            f" neighbor {peer} timers connect 2",
            " !",
            " address-family l2vpn evpn",
            f"  neighbor {peer} activate"]
        if ebgp:
            lines.append(f"  neighbor {peer} route-map NOT-BACK-TO-APP out")
        lines += ["  advertise-all-vni",
                  *("  " + line for line in self.evpn_extra),
                  " exit-address-family",
                  "!"]
        if ebgp:
            lines += [f"bgp extcommunity-list standard FROM-APP permit rt "
                      f"{self.app_as}:{self.vni}",
                      "route-map NOT-BACK-TO-APP deny 10",
                      " match extcommunity FROM-APP",
                      "exit",
                      "route-map NOT-BACK-TO-APP permit 20",
                      "exit",
                      "!"]
        return "\n".join(lines + [""])

    def _start_frr(self) -> None:
        os.makedirs(self.confdir, exist_ok=True)
        with open(os.path.join(self.confdir, "frr.conf"), "w") as fh:
            fh.write(self.config())
        open(os.path.join(self.confdir, "vtysh.conf"), "w").close()
        os.makedirs(self.piddir, exist_ok=True)
        shutil.chown(self.confdir, "frr", "frr")
        for name in ("frr.conf", "vtysh.conf"):
            shutil.chown(os.path.join(self.confdir, name), "frr", "frr")
        shutil.chown(self.piddir, "frr", "frr")
        conf = os.path.join(self.confdir, "frr.conf")
        for daemon in ("zebra", "bgpd"):
            ns_exec(self.netns, f"{FRR_BIN}/{daemon}", "-N", self.netns, "-d",
                    "-F", "datacenter", "-f", conf,
                    "-i", os.path.join(self.piddir, f"{daemon}.pid"))
            pid = None
            deadline = time.monotonic() + 10
            while pid is None and time.monotonic() < deadline:
                pid = procs.read_pidfile(os.path.join(self.piddir, f"{daemon}.pid"))
                time.sleep(0.05)
            if pid is None:
                raise FrrError(f"{daemon} of {self.name} did not start")
            self.tb.manifest.add_pid(pid, f"{daemon} {self.name}")

    def _relay(self, cmd: List[str], ns: Optional[str] = None) -> None:
        if ns is not None:
            cmd = ["ip", "netns", "exec", ns] + cmd
        log = open(os.path.join(self.tb.rundir, f"bgp-relay-{self.name}.log"), "ab")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
        log.close()
        self.relays.append(proc)
        self.tb.manifest.add_pid(proc.pid, f"socat bgp {self.name}")

    def _start_relays(self) -> None:
        run = self.tb.rundir
        inbound = os.path.join(run, f"bgp-in-{self.name}.sock")
        outbound = os.path.join(run, f"bgp-out-{self.name}.sock")
        ul = self._underlay_ns()
        self._relay(["socat", f"UNIX-LISTEN:{inbound},fork,unlink-early",
                     f"TCP:127.0.0.1:{self.app_port},bind={self.alias},nodelay"])
        self._relay(["socat", f"TCP-LISTEN:179,bind={self.relay_ip},reuseaddr,fork",
                     f"UNIX-CONNECT:{inbound}"], ns=ul)
        self._relay(["socat", f"UNIX-LISTEN:{outbound},fork,unlink-early",
                     f"TCP:{self.vtep_ip}:179,bind={self.relay_ip},nodelay"], ns=ul)
        self._relay(["socat", f"TCP-LISTEN:179,bind={self.alias},reuseaddr,fork",
                     f"UNIX-CONNECT:{outbound}"])
        deadline = time.monotonic() + 5
        while not (os.path.exists(inbound) and os.path.exists(outbound)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.relays):
                raise FrrError(f"BGP relays of {self.name} did not start")
            time.sleep(0.01)

    # -- reading FRR --

    def vtysh(self, command: str) -> str:
        """One vtysh command in this VTEP's FRR."""
        return procs.run(["vtysh", "-N", self.netns, "-c", command], timeout=30).stdout

    def vtysh_json(self, command: str):
        """A vtysh ``... json`` command's answer, parsed."""
        return json.loads(self.vtysh(command) or "{}")

    def session_up(self) -> bool:
        """Whether FRR's session with the app is Established."""
        peers = self.vtysh_json("show bgp l2vpn evpn summary json").get("peers", {})
        return peers.get(self.relay_ip, {}).get("state") == "Established"

    def routes_from_app(self) -> Dict[str, list]:
        """``{NLRI text: [path, ...]}`` of the routes FRR has from the app
        (``show bgp l2vpn evpn route detail json``, RDs of the app)."""
        out = {}
        for rd, prefixes in self.vtysh_json(
                "show bgp l2vpn evpn route detail json").items():
            if not isinstance(prefixes, dict):
                continue
            for nlri, entry in prefixes.items():
                if not isinstance(entry, dict) or "paths" not in entry:
                    continue
                paths = [p for group in entry["paths"]
                         for p in (group if isinstance(group, list) else [group])]
                mine = [p for p in paths
                        if p.get("peer", {}).get("peerId") == self.relay_ip]
                if mine:
                    out[f"{rd} {nlri}"] = mine
        return out

    def fdb(self) -> List[str]:
        """``bridge fdb show dev vx<vni>`` lines."""
        return ns_exec(self.netns, "bridge", "fdb", "show", "dev", self.vxlan).splitlines()

    def evpn_macs(self) -> dict:
        """``show evpn mac vni <vni> json``: FRR's view of every MAC."""
        return self.vtysh_json(f"show evpn mac vni {self.vni} json").get("macs", {})

    def host(self, name: str) -> FrrHost:
        return next(h for h in self.hosts if h.name == name)

    def host_run(self, name: str, *cmd: str, check: bool = True,
                 timeout: float = 30) -> str:
        return ns_exec(self.host(name).netns, *cmd, check=check, timeout=timeout)

    def garp(self, name: str) -> None:
        """``name`` announces its address (Habets' arping: ``-U -S``)."""
        h = self.host(name)
        ip = h.ip.split("/")[0]
        self.host_run(name, "arping", "-q", "-U", "-c1", "-S", ip, "-i", "eth0", ip,
                      check=False)

    def ping(self, name: str, dst: str, count: int = 1, timeout: float = 1) -> bool:
        res = procs.run(["ip", "netns", "exec", self.host(name).netns, "ping", "-n",
                         "-q", "-c", str(count), "-i", "0.2", "-W", str(timeout), dst],
                        check=False, timeout=count * (0.2 + timeout) + 10)
        return res.returncode == 0
