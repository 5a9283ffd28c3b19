"""Configure one VM (a Mininet host) once its veths to the NVE exist.

* whole-port vNIC: MAC (set by the link) and IP on ``eth<i>``;
* tagged vNIC: ``eth<i>.<vlan>`` carrying the vNIC's MAC and IP. This kernel
  has no 802.1Q support at all (no 8021q module, no bridge VLAN filtering,
  no tc vlan action), so the tagging is done by a small private OVS in the
  VM's namespace: bridge ``br-vlan`` (userspace datapath, NORMAL) with
  ``eth<i>`` as trunk and one internal port ``eth<i>.<vlan>`` (tag=vlan) per
  tagged vNIC. To the VM it looks like a VLAN subinterface; on the NVE port
  the frames arrive tagged, as the logical-interface model of the draft
  (port + VLAN ID) expects.
* default route via the VN gateway (or an interconnect's router on an L2
  VN) of the first vNIC that has one;
* ``arp_ignore=1``/``arp_announce=2``: each vNIC answers ARP only for its own
  address (otherwise a multi-vNIC VM answers ARP for its VN-B address on its
  VN-A interface -- Linux's weak host model -- which looks like a VN leak);
* TX checksum offload off: the userspace datapath forwards the partial
  checksums of veth/tap frames as they are (ping works without it, TCP not).
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import List, Optional

from . import procs
from .ovs import OvsInstance

LOG = logging.getLogger(__name__)
VM_SYSCTLS = ("net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
VLAN_BRIDGE = "br-vlan"
_warned = False


def configure_vm(host, vm, topo, rundir: str) -> Optional[OvsInstance]:
    """Addresses, VLAN subinterfaces, routes. Returns the VM's VLAN tagger, if any."""
    trunks = sorted({v.intf for v in vm.vnics})
    tagged = [v for v in vm.vnics if v.vlan is not None]
    tagger = None
    if tagged:
        tagger = OvsInstance(host.pid, os.path.join(rundir, f"vm-{vm.name}"), vm.name)
        tagger.start()
        cmds: List[List[str]] = [
            ["add-br", VLAN_BRIDGE],
            ["set", "bridge", VLAN_BRIDGE, "datapath_type=netdev", "fail-mode=standalone"]]
        for intf in sorted({v.intf for v in tagged}):
            vlans = ",".join(str(v.vlan) for v in tagged if v.intf == intf)
            cmds += [["add-port", VLAN_BRIDGE, intf],
                     ["set", "port", intf, "vlan_mode=trunk", f"trunks={vlans}"]]
        for v in tagged:
            cmds += [["add-port", VLAN_BRIDGE, v.vm_ifname, f"tag={v.vlan}"],
                     ["set", "interface", v.vm_ifname, "type=internal", f'mac="{v.mac}"']]
        tagger.vsctl_batch(cmds)

    lines = ["link set lo up"] + [f"link set {i} up" for i in trunks]
    default_gw = None
    for v in vm.vnics:
        if v.vlan is not None:
            lines.append(f"link set {v.vm_ifname} up")
        if v.ip is not None:
            lines.append(f"addr add {v.ip.with_prefixlen} dev {v.vm_ifname}")
            gw = topo.next_hop(v.vnid, v.ip)
            if gw is not None and default_gw is None:
                default_gw = (gw, v.vm_ifname)
    if default_gw is not None:
        lines.append(f"route add default via {default_gw[0]} dev {default_gw[1]}")

    # One process per VM: sysctls, then addresses/routes (ip -batch from stdin),
    # then offloads off.
    script = f"sysctl -q -w {' '.join(VM_SYSCTLS)} && ip -batch -"
    if shutil.which("ethtool"):
        ifs = trunks + [v.vm_ifname for v in tagged]
        script += "".join(f" && ethtool -K {i} tx off >/dev/null" for i in ifs)
    else:
        global _warned
        if not _warned:
            _warned = True
            LOG.warning("ethtool missing: VM TX checksum offload stays on, TCP over tunnels fails")
    procs.run_in(host.pid, ["sh", "-c", script], input="\n".join(lines) + "\n")
    _register_with_mininet(host, vm)
    return tagger


def _register_with_mininet(host, vm) -> None:
    """Tell Mininet about subinterfaces and addresses (host.IP(), pingall)."""
    from mininet.link import Intf
    for v in vm.vnics:
        intf = host.nameToIntf.get(v.vm_ifname)
        if intf is None:
            intf = Intf(v.vm_ifname, node=host, moveIntfFn=lambda *_a, **_k: True)
            intf.mac = v.mac
        if v.ip is not None:
            intf.ip, intf.prefixLen = str(v.ip.ip), v.ip.network.prefixlen


def start_segment(node, ext, rundir: str) -> OvsInstance:
    """The OVS of external network ``ext``'s segment in ``node``: trunk
    ``trunk0`` (no VLAN settings: every VLAN, and untagged frames, pass)
    and one access port per host, tagged with its VLAN. As for tagged
    vNICs, OVS tags because this kernel has no 802.1Q."""
    seg = OvsInstance(node.pid, os.path.join(rundir, f"ext-{ext.name}"), ext.name)
    seg.start()
    cmds: List[List[str]] = [
        ["add-br", VLAN_BRIDGE],
        ["set", "bridge", VLAN_BRIDGE, "datapath_type=netdev", "fail-mode=standalone"],
        ["add-port", VLAN_BRIDGE, "trunk0"]]
    for host in ext.hosts:
        cmds.append(["add-port", VLAN_BRIDGE, host.port])
        if host.vlan is not None:
            cmds.append(["set", "port", host.port, f"tag={host.vlan}"])
    seg.vsctl_batch(cmds)
    links = ["trunk0"] + [h.port for h in ext.hosts]
    procs.run_in(node.pid, ["sh", "-c", "ip link set lo up && " + " && ".join(
        f"ip link set {i} up" for i in links)])
    return seg


def configure_ext_host(node, host, ext, topo) -> None:
    """An external network's host: its address on ``eth0`` and a default
    route via the gateway (or router) of the VN its VLAN maps to."""
    lines = ["link set lo up", "link set eth0 up"]
    vnid = ext.vnid_of(host)
    if host.ip is not None:
        lines.append(f"addr add {host.ip.with_prefixlen} dev eth0")
        gw = topo.next_hop(vnid, host.ip) if vnid is not None else None
        if gw is not None:
            lines.append(f"route add default via {gw} dev eth0")
    script = f"sysctl -q -w {' '.join(VM_SYSCTLS)} && ip -batch -"
    if shutil.which("ethtool"):
        script += " && ethtool -K eth0 tx off >/dev/null"
    procs.run_in(node.pid, ["sh", "-c", script], input="\n".join(lines) + "\n")
    intf = node.nameToIntf.get("eth0")
    if intf is not None and host.ip is not None:
        intf.ip, intf.prefixLen = str(host.ip.ip), host.ip.network.prefixlen
