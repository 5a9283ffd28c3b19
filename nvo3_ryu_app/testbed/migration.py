"""Moving a VM's vNIC to another NVE, as a live migration does, and GARPs.

What a cloud does when a VM migrates, and what :func:`move_vnic` does:

1. *Before*: the destination hypervisor creates the VM's new tap and plugs
   it into its integration bridge (here: a veth from the destination NVE's
   namespace into the VM's namespace, added to br-int and up, so the NVE
   reports the port before the VM runs there; on the VM side a spare
   interface with the vNIC's MAC, no address and IPv6 off, so it is silent).
   The orchestrator binds the new port to the VN (REST, see :func:`migrate`)
   before the VM runs there.
2. *Switch-over* (what the outage is made of), in one helper process in the
   VM's namespace started ahead: the old vNIC is renamed aside and loses
   its addresses, the spare takes its name, addresses, routes and neighbour
   entries (a migrated guest keeps its memory, ARP cache included), the
   guest announces itself with a gratuitous ARP, and the old vNIC goes down
   (the source NVE's port loses its carrier, as when the source VM quits
   and its tap goes).
3. *After*: the source hypervisor removes the dead port from its br-int
   (``ovs-vsctl del-port``) and the old veth is deleted.

With ``live=True`` the switch-over is a live migration's, without a pause
in the guest: the spare first takes the vNIC's addresses and neighbour
entries (the VM resumes at its new place, with its memory), then the old
vNIC loses them (it no longer answers there: it also answers ARP only for
its own addresses, ``arp_ignore=1``, so it cannot answer for the new one),
then the renames, the announcement and the old vNIC going down.  At no
instant does the guest lack its address, so what a prober loses is what
the network loses: a real VM pauses while its last pages are copied, and a
frame that reaches the destination tap meanwhile waits there (QEMU reads
it once the VM resumes), which this emulation cannot do with a veth; the
guest here just never pauses.  ``before_switch(port)`` (e.g. announcing
the migration to the authority and waiting for its flows) runs once the
destination tap is plugged, right before the switch-over.

A VM with one untagged vNIC moves; tagged or multi-vNIC VMs are refused.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Callable, Dict, List, Optional, Tuple

from . import procs

MAX_IFNAME = 15
# The gratuitous ARP both programs below send, from ``mac`` and ``ip``: an
# ARP request with sender IP = target IP (what Linux and QEMU send when an
# address comes up or moves).
_GARP_FRAME = r"""
m = bytes.fromhex(mac.replace(':', ''))
a = socket.inet_aton(ip)
frame = (b'\xff' * 6 + m + b'\x08\x06' + struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1)
         + m + a + b'\x00' * 6 + a).ljust(60, b'\x00')
"""

# A raw-socket GARP sender for the VM's namespace: Debian's python, stdlib
# only.  argv: iface mac ip count interval.
_GARP_PY = r"""
import socket, struct, sys, time
iface, mac, ip, count, gap = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
__GARP_FRAME__
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for i in range(count):
    if i:
        time.sleep(gap)
    s.send(frame)
""".replace("__GARP_FRAME__\n", _GARP_FRAME)


# The switch-over, run in the VM's namespace: bind the GARP socket to the
# spare interface (its ifindex survives the rename), say "ready", wait for
# "go", run the ip batch (old vNIC out, spare renamed, addresses, routes,
# neighbours), send the GARPs, set the old vNIC ``down_after`` down (if
# given), run the ``after`` batch (if given), turn IPv6 back on (if the old
# vNIC had it: ``v6`` is its sysctl path), print "done <cut> <attached>
# <announced> <old down>".
# argv: spare mac ip count interval batch v6 down_after [after].
_CUTOVER_PY = r"""
import fcntl, socket, struct, subprocess, sys, time
spare, mac, ip, count, gap, batch, v6, down_after = sys.argv[1:9]
after = sys.argv[9] if len(sys.argv) > 9 else ''
count, gap = int(count), float(gap)
__GARP_FRAME__
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((spare, 0))
# ip runs each batch line as it reads it: started now, it costs no fork later.
ipb = subprocess.Popen(['ip', '-batch', '-'], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
ipa = subprocess.Popen(['ip', '-batch', '-'], stdin=subprocess.PIPE, stderr=subprocess.PIPE) \
    if after else None
print('ready', flush=True)
if sys.stdin.readline().strip() != 'go':
    ipb.kill()
    if ipa:
        ipa.kill()
    sys.exit(3)
t0 = time.time()
_, err = ipb.communicate(batch.encode())
if ipb.returncode:
    print('error', err.decode(errors='replace'), flush=True)
    sys.exit(2)
t1 = time.time()
for i in range(count):
    if i:
        time.sleep(gap)
    s.send(frame)
t2 = time.time()
if down_after:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    name = down_after.encode()
    flags = struct.unpack('16sH', fcntl.ioctl(u, 0x8913, struct.pack('16sH14s', name, 0, b''))[:18])[1]
    fcntl.ioctl(u, 0x8914, struct.pack('16sH14s', name, flags & ~1, b''))    # IFF_UP off
t3 = time.time()
if ipa:
    _, err = ipa.communicate(after.encode())
    if ipa.returncode:
        print('error', err.decode(errors='replace'), flush=True)
        sys.exit(2)
if v6:
    with open(v6, 'w') as fh:
        fh.write('0')
print('done %.6f %.6f %.6f %.6f' % (t0, t1, t2, t3), flush=True)
""".replace("__GARP_FRAME__\n", _GARP_FRAME)


class MoveError(RuntimeError):
    pass


def _vnic(tb, vm: str):
    spec = tb.topo.vm(vm)
    if len(spec.vnics) != 1 or spec.vnics[0].vlan is not None:
        raise MoveError(f"{vm}: only a VM with one untagged vNIC can move")
    return spec.vnics[0]


def locations(tb) -> Dict[str, Tuple[str, str]]:
    """{vm: (nve, access port)} of every VM that moved (the testbed's record)."""
    if not hasattr(tb, "_moved_vnics"):
        tb._moved_vnics = {}
        tb._move_count = 0
    return tb._moved_vnics


def vnic_location(tb, vm: str) -> Tuple[str, str]:
    """(NVE name, access port) where ``vm``'s vNIC is attached now."""
    where = locations(tb).get(vm)
    if where is not None:
        return where
    v = tb.topo.vm(vm).vnics[0]
    return v.nve, v.port


def new_port_name(tb, vm: str, to_nve: str) -> str:
    """A fresh access-port name for ``vm`` on ``to_nve`` (<= 15 chars)."""
    locations(tb)
    taken = set(tb.topo.access_ports(to_nve)) | {p for _n, p in locations(tb).values()}
    while True:
        tb._move_count += 1
        name = f"{vm[:MAX_IFNAME - 6]}-m{tb._move_count}"[:MAX_IFNAME]
        if name not in taken:
            return name


def _vm_state(pid: int, ifname: str) -> Tuple[List[str], List[str], List[str]]:
    """(addresses, routes, neighbours) on ``ifname`` as ``ip -batch`` lines."""
    out = procs.run_in(pid, ["sh", "-c",
                             f"ip -o -4 addr show dev {ifname}; echo --; "
                             f"ip -4 route show dev {ifname}; echo --; "
                             f"ip -4 neigh show dev {ifname}"]).stdout
    addr_txt, route_txt, neigh_txt = (out.split("--\n") + ["", ""])[:3]
    addrs = []
    for line in addr_txt.splitlines():
        words = line.split()
        if "inet" in words:
            addrs.append(words[words.index("inet") + 1])
    routes = []
    for line in route_txt.splitlines():
        if line.strip() and "proto kernel" not in line:
            routes.append(line.strip())
    neighs = []
    for line in neigh_txt.splitlines():
        words = line.split()
        if "lladdr" in words:
            neighs.append((words[0], words[words.index("lladdr") + 1]))
    return ([f"addr add {a} dev {ifname}" for a in addrs],
            [f"route replace {r} dev {ifname}" for r in routes],
            [f"neigh replace {ip} lladdr {mac} dev {ifname} nud stale" for ip, mac in neighs])


def move_vnic(tb, vm: str, to_nve: str, port: Optional[str] = None,
              announce: bool = True, garp_count: int = 1, garp_interval: float = 0.02,
              timings: Optional[dict] = None, live: bool = False,
              before_switch: Optional[Callable[[str], None]] = None) -> str:
    """Move ``vm``'s vNIC to an access port on ``to_nve``; return the port name.

    The old port leaves its br-int, the new one (``port`` or a fresh name) is
    on ``to_nve``'s br-int; in the VM the vNIC keeps its interface name, MAC,
    addresses, routes and neighbour entries.  With ``announce`` the VM sends
    ``garp_count`` gratuitous ARPs right after the switch-over.  Bind the new
    port to the VN *before* calling this (the VM may speak as soon as it is
    attached).  ``timings`` (a dict) receives wall-clock times: ``cut`` (the
    old vNIC loses its addresses), ``attached`` (the new one has them),
    ``announced`` (GARPs sent), ``old_down`` (the old vNIC is down: the old
    port loses its carrier), ``cleaned`` (old port off its br-int).  With
    ``live`` the switch-over is a live migration's (module doc): ``cut`` is
    when the vNIC's addresses are on its new side (and gone from the old
    one at ``attached``).  ``before_switch(port)`` runs right before it.
    """
    v = _vnic(tb, vm)
    if to_nve not in tb.nves:
        raise MoveError(f"no NVE named {to_nve!r}")
    host = tb.vms[vm]
    old_nve, old_port = vnic_location(tb, vm)
    if old_nve == to_nve and port == old_port:
        raise MoveError(f"{vm} is already on {to_nve} port {old_port}")
    port = port or new_port_name(tb, vm, to_nve)
    if len(port) > MAX_IFNAME:
        raise MoveError(f"port name {port!r} is longer than {MAX_IFNAME}")
    dst = tb.nves[to_nve]
    ifname = v.vm_ifname
    tb._move_count += 1
    spare = f"mv{tb._move_count % 100000}x"      # guest side until the switch-over
    ip = str(v.ip.ip) if v.ip is not None else "0.0.0.0"
    count = int(garp_count) if announce and v.ip is not None else 0

    # 1. The destination's tap, plugged in and up before the switch-over (as
    # a migration's destination tap is), its guest side silent meanwhile: no
    # address, IPv6 off (no DAD, no MLD), the vNIC's MAC.
    dst.ns_run("ip", "link", "add", port, "type", "veth", "peer", "name", spare,
               "netns", str(host.pid))
    dst.ns_run("ip", "link", "set", port, "up")
    dst.vsctl("add-port", "br-int", port)
    v6 = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    prep = (f"cat {v6} 2>/dev/null || echo 1; "
            f"sysctl -q -w net.ipv6.conf.{spare}.disable_ipv6=1 2>/dev/null; "
            f"ip link set {spare} address {v.mac}")
    if shutil.which("ethtool"):
        prep += f" && ethtool -K {spare} tx off >/dev/null"
    if live:
        # The old vNIC answers ARP for its own addresses only: once they are
        # on the new side, it must not answer for them there.
        prep += f" && sysctl -q -w net.ipv4.conf.{ifname}.arp_ignore=1"
    # Kernels since 6.2 rename an interface that is up; older ones do not.
    prep += (f" && ip link set {spare} up && if ip link set {spare} name {spare}r "
             f"2>/dev/null; then ip link set {spare}r name {spare} && echo live; "
             f"else ip link set {spare} down && echo down; fi")
    words = procs.run_in(host.pid, ["sh", "-c", prep]).stdout.split()
    ipv6_off, live_rename = words[0], words[-1] == "live"
    if live and not live_rename:
        raise MoveError("a live switch-over needs a kernel that renames an "
                        "interface that is up (Linux 6.2 or later)")
    addrs, routes, neighs = _vm_state(host.pid, ifname)
    # The old vNIC is renamed aside and loses its addresses (the guest has
    # left it), the spare takes its place, the guest announces itself, and
    # only then the old one goes down (its port on the source NVE loses its
    # carrier), as a migration's source tap goes when the source VM quits.
    # Setting a veth down waits for an RCU grace period (and deleting it
    # for more): off the critical path, and deleted at the end.  A kernel
    # without live renames needs the old vNIC down first.
    aside = f"{spare[:-1]}o"
    after = []
    if live:
        # Addresses and neighbours on the new side first, then off the old
        # one: the guest is never without its address.  Its old tap goes
        # (the source VM is gone) and it announces itself; the renames (and
        # routes, which name the interface) come after, off the switch-over.
        on_spare = [line.replace(f" dev {ifname}", f" dev {spare}")
                    for line in addrs + neighs]
        batch = on_spare + [f"addr flush dev {ifname}",
                            f"link set {ifname} down"]
        after = [f"link set {ifname} name {aside}",
                 f"link set {spare} name {ifname}"] + routes
    else:
        batch = [] if live_rename else [f"link set {ifname} down"]
        batch += [f"link set {ifname} name {aside}", f"addr flush dev {aside}",
                  f"link set {spare} name {ifname}"]
        if not live_rename:
            batch.append(f"link set {ifname} up")
        batch += addrs + routes + neighs
    # A helper in the VM's namespace, started (and its GARP socket bound)
    # ahead, so the switch-over costs no process start-up.
    helper = subprocess.Popen(
        ["mnexec", "-a", str(host.pid), "/usr/bin/python3", "-S", "-c", _CUTOVER_PY,
         spare, v.mac, ip, str(count), repr(float(garp_interval)), "\n".join(batch) + "\n",
         "" if ipv6_off == "1" else v6,
         aside if live_rename and not live else "",
         "\n".join(after) + "\n" if after else ""],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = helper.stdout.readline()
        if line.strip() != "ready":
            raise MoveError(f"switch-over helper did not start: {line!r} "
                            f"{helper.stderr.read().strip()}")
        if before_switch is not None:
            before_switch(port)
        # 2. Switch-over: the guest leaves its old vNIC for the new one,
        # announces itself, and the old vNIC goes down.
        helper.stdin.write("go\n")
        helper.stdin.flush()
        out, err = helper.communicate(timeout=30)
    except BaseException:
        if helper.poll() is None:
            helper.kill()
            helper.wait(timeout=5)
        raise
    words = out.split()
    if helper.returncode != 0 or words[:1] != ["done"]:
        raise MoveError(f"switch-over of {vm} failed ({helper.returncode}): {out} {err}")
    # 3. The source hypervisor removes the dead tap from its bridge.
    tb.nves[old_nve].vsctl("--if-exists", "del-port", "br-int", old_port)
    procs.run_in(host.pid, ["ip", "link", "del", aside], check=False)
    locations(tb)[vm] = (to_nve, port)
    if timings is not None:
        timings.update(cut=float(words[1]), attached=float(words[2]),
                       announced=float(words[3]), old_down=float(words[4]),
                       cleaned=time.time())
    return port


def gratuitous_arp(tb, vm: str, ip: Optional[str] = None, mac: Optional[str] = None,
                   count: int = 1, interval: float = 0.02, ifname: Optional[str] = None) -> None:
    """``vm`` sends ``count`` gratuitous ARPs (ARP requests with sender IP =
    target IP) for ``ip`` from ``mac`` (defaults: its own vNIC's); another
    VM's ``mac``/``ip`` make a spoofed announcement."""
    spec = tb.topo.vm(vm)
    v = spec.vnics[0]
    ifname = ifname or v.vm_ifname
    ip = ip or (str(v.ip.ip) if v.ip is not None else None)
    if ip is None:
        raise MoveError(f"{vm}: no IP to announce")
    procs.run_in(tb.vms[vm].pid,
                 ["/usr/bin/python3", "-S", "-c", _GARP_PY, ifname, mac or v.mac, ip,
                  str(int(count)), repr(float(interval))],
                 timeout=30 + count * interval)


# -- with the app: bind first, then move ---------------------------------------

def migrate(lab, vm: str, to_nve: str, announce: bool = True, timings: Optional[dict] = None,
            unbind_old: bool = False, live: bool = False, tell: bool = False,
            before_switch: Optional[Callable[[str], None]] = None) -> dict:
    """Bind a new port on ``to_nve`` to the vNIC's VN through REST, then move
    the vNIC there (a cloud binds the destination port before migrating).
    Returns {"vm", "old_nve", "old_port", "nve", "port", "vnid", "dpid",
    "old_dpid", "migration"}; with ``unbind_old`` the old port's binding is
    removed after the switch-over.  ``live``: a live migration's
    switch-over (see :func:`move_vnic`); ``tell``: the hypervisor announces
    the migration first (``POST /v1/vns/{vnid}/migrations``, the REST
    equivalent of the RPC's ``migrate``) and waits until every NVE
    acknowledged its flows (``GET /v1/sync``); ``migration`` is the
    answer.  ``before_switch(port)`` runs last before the switch-over."""
    tb = lab.tb
    v = _vnic(tb, vm)
    old_nve, old_port = vnic_location(tb, vm)
    port = new_port_name(tb, vm, to_nve)
    dpid = tb.topo.nve(to_nve).dpid
    status, body = lab.request("PUT", f"/v1/nves/{dpid}/ports/{port}", {"vnid": v.vnid})
    if status not in (200, 201):
        raise MoveError(f"binding {to_nve}/{port} failed: {status} {body}")
    told = {}

    def switching(new_port):
        if tell:
            status, answer = lab.request(
                "POST", f"/v1/vns/{v.vnid}/migrations",
                {"mac": v.mac, "nve": dpid, "port": new_port})
            if status != 201:
                raise MoveError(f"announcing the migration failed: {status} {answer}")
            told.update(answer)
            lab.wait_sync()
        if before_switch is not None:
            before_switch(new_port)
    move_vnic(tb, vm, to_nve, port=port, announce=announce, timings=timings,
              live=live, before_switch=switching)
    old_dpid = tb.topo.nve(old_nve).dpid
    if unbind_old:
        lab.request("DELETE", f"/v1/nves/{old_dpid}/ports/{old_port}")
    return {"vm": vm, "old_nve": old_nve, "old_port": old_port, "old_dpid": old_dpid,
            "nve": to_nve, "port": port, "dpid": dpid, "vnid": v.vnid,
            "migration": told or None}


# -- a second tap with a vNIC's MAC (a VM alive at two places) -----------------

def plug_tap(tb, nve: str, port: str, vm: str, ifname: str, mac: str) -> None:
    """A tap ``port`` on ``nve``'s br-int whose other end is ``ifname`` in
    ``vm``'s namespace, with MAC ``mac``, up, IPv6 off, no address (it says
    only what it is told to: see :func:`gratuitous_arp`).  Undo with
    :func:`unplug_tap`."""
    if len(port) > MAX_IFNAME or len(ifname) > MAX_IFNAME:
        raise MoveError(f"interface names are at most {MAX_IFNAME} characters")
    node = tb.nves[nve]
    pid = tb.vms[vm].pid
    node.ns_run("ip", "link", "add", port, "type", "veth", "peer", "name", ifname,
                "netns", str(pid))
    node.ns_run("ip", "link", "set", port, "up")
    procs.run_in(pid, ["sh", "-c",
                       f"sysctl -q -w net.ipv6.conf.{ifname}.disable_ipv6=1; "
                       f"ip link set {ifname} address {mac} && ip link set {ifname} up"])
    node.vsctl("add-port", "br-int", port)


def unplug_tap(tb, nve: str, port: str) -> None:
    """Remove a tap made by :func:`plug_tap` (both ends go)."""
    node = tb.nves[nve]
    node.vsctl("--if-exists", "del-port", "br-int", port)
    node.ns_run("ip", "link", "del", port, check=False)
