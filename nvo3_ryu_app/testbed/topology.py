"""Topology files: one YAML document describes a whole NVO3 testbed.

The same file is read by the testbed (to build namespaces, OVS instances and
veths) and by the app (``[nvo3] config_file``: VNs, NVEs, VTEPs and port
bindings), so the names derived here -- access-port names above all -- are
part of the contract and must stay deterministic.

Format
------

.. code-block:: yaml

    name: figure1                          # free text, used in summaries
    underlay:
      subnet: 10.99.0.0/24                 # VTEP addresses, only inside NVE namespaces
      mtu: 1600                            # optional (default 1600): room for VXLAN/GRE headers
    vns:                                   # virtual networks
      - {vnid: 1001, name: VN1, service: l2, encap: vxlan}
      - {vnid: 1002, name: VN2, service: l2, encap: gre}
      - vnid: 2001                         # 1..16777215, unique; the VXLAN VNI / GRE key
        name: RED                          # unique; vNICs refer to a VN by name (or vnid)
        service: l3                        # l2 | l3 (l3 needs a gateway)
        encap: vxlan                       # vxlan | gre | geneve
        gateway: {mac: "02:00:00:00:fe:01", ips: ["192.168.10.1/24", "192.168.20.1/24"]}
    nves:                                  # one Open vSwitch (hypervisor) each
      - name: edge1                        # <= 12 chars, [A-Za-z][A-Za-z0-9_]*
        dpid: "0000000000000001"           # QUOTED, up to 16 hex digits (unquoted YAML reads
                                           # 0000000000000010 as octal 8)
        vtep_ip: 10.99.0.1                 # inside underlay.subnet, unique
    tenant_systems:
      - name: ts1
        nve: edge1                         # the NVE every vNIC of this TS attaches to
        vms:
          - name: vm1                      # one Mininet host; <= 12 chars; unique among all nodes
            vnics:
              - {mac: "02:00:00:00:01:01", ip: 192.168.1.1/24, vn: VN1}             # whole-port binding
              - {mac: "02:00:00:00:01:02", ip: 192.168.2.1/24, vn: VN2, vlan: 10}   # tagged

vNIC keys: ``mac`` (required, unicast, unique), ``vn`` (required, VN name or
vnid), ``ip`` (optional, ``a.b.c.d/len``), ``vlan`` (optional, 1..4094),
``port`` (optional NVE-side port name override, <= 15 chars).

Interconnection (draft 4.3): a gateway NVE has ``role: gateway`` (default
``nve``); interconnects and external networks name NVEs and VNs by name:

.. code-block:: yaml

    nves:
      - {name: gw1, dpid: "00000000000000ff", vtep_ip: 10.99.0.254, role: gateway}
    interconnects:                         # draft 4.3; applied by the app (declared.py)
      - {name: vn1_vn2, gateway: gw1, vns: [VN1, VN2],
         allowed_macs: ["02:00:00:00:01:01", "02:00:00:00:02:02"]}
    externals:                             # a non-VN network on a gateway port
      - name: lab                          # <= 12 chars: also its segment's node name
        gateway: gw1
        port: ext0                         # the gateway's port (ofport after the vNICs')
        vlans: {100: VN1}                  # or vn: VN1 (untagged)
        allowed_macs: ["02:00:00:00:e1:01"]
        hosts:                             # the testbed's hosts on the segment
          - {name: x1, mac: "02:00:00:00:e1:01", ip: 192.168.1.100/24, vlan: 100}

Derived names (what the app and the tests see)
-----------------------------------------------
* vNIC number *i* (0-based) of VM *v* is interface ``eth<i>`` inside the VM and
  access port ``<v>-<i>`` on the NVE's ``br-int`` (``vnic.port``), unless
  ``port:`` overrides it. Access ports get OpenFlow port numbers 1, 2, ... in
  file order per NVE (``Topology.ofport``).
* A ``vlan:`` vNIC is a VLAN subinterface ``eth<i>.<vlan>`` inside the VM
  carrying the vNIC's MAC and IP; the NVE port sees tagged frames. vNICs of
  one VM that name the same ``port:`` share one veth (a trunk carrying
  several VLANs, each to its VN); they must all have distinct ``vlan:``.
* A vNIC whose VN has a gateway IP in the vNIC's subnet gives its VM a
  default route via that gateway (first such vNIC of the VM wins); so does
  the ``router`` an interconnect gives an L2 VN.
* An external network is a segment: node ``<name>`` running a small OVS
  (``br-vlan``, standalone NORMAL) with trunk ``trunk0`` (a veth to the
  gateway's ``port``) and one access port per host, tagged with the host's
  ``vlan`` (none: untagged); each host is a node of its own (like a VM), so
  ``Testbed.ping(host, ...)`` works. Host names are node names.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import yaml

from ..authority import declared

__all__ = [
    "TopologyError", "Underlay", "Gateway", "VN", "NVE", "VNic", "VM",
    "TenantSystem", "Topology", "External", "ExtHost", "load_topology",
    "parse_topology",
]

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
MAX_NODE_NAME = 12     # "u-<nve>" and "<vm>-<i>" must fit IFNAMSIZ (15)
MAX_IFNAME = 15
RESERVED_NAMES = {"underlay", "root", "c0"}


class TopologyError(ValueError):
    """A topology file is malformed; the message names the offending key."""


@dataclass(frozen=True)
class Underlay:
    subnet: ipaddress.IPv4Network
    mtu: int = 1600


@dataclass(frozen=True)
class Gateway:
    mac: str
    ips: List[ipaddress.IPv4Interface]


@dataclass(frozen=True)
class VN:
    vnid: int
    name: str
    service: str
    encap: str
    gateway: Optional[Gateway] = None
    evpn: bool = False                 # shared over BGP EVPN (the app's part)

    def gateway_ip_for(self, ip: Optional[ipaddress.IPv4Interface]):
        """The gateway address serving ``ip``'s subnet, or None."""
        if ip is None or self.gateway is None:
            return None
        for gw in self.gateway.ips:
            if ip.ip in gw.network:
                return gw.ip
        return None


@dataclass(frozen=True)
class NVE:
    name: str
    dpid: str                 # 16 lowercase hex digits
    vtep_ip: ipaddress.IPv4Address
    role: str = "nve"         # nve | gateway (draft 4.3)

    @property
    def dpid_int(self) -> int:
        return int(self.dpid, 16)


@dataclass(frozen=True)
class VNic:
    vm: str
    index: int
    mac: str
    vn: str                   # VN name
    vnid: int
    ip: Optional[ipaddress.IPv4Interface]
    vlan: Optional[int]
    port: str                 # access port on the NVE's br-int
    nve: str
    intf: str                 # VM-side interface carrying the port (eth<i>)

    @property
    def vm_ifname(self) -> str:
        """Interface inside the VM holding this vNIC's MAC/IP."""
        return f"{self.intf}.{self.vlan}" if self.vlan is not None else self.intf


@dataclass(frozen=True)
class VM:
    name: str
    tenant_system: str
    nve: str
    vnics: List[VNic]


@dataclass(frozen=True)
class ExtHost:
    """A host of an external (non-VN) network, behind the segment's OVS."""
    name: str
    mac: str
    ip: Optional[ipaddress.IPv4Interface]
    vlan: Optional[int]
    external: str

    @property
    def port(self) -> str:
        """Its port on the segment's br-vlan (and its interface: eth0)."""
        return f"{self.external}-{self.name}"[:MAX_IFNAME]


@dataclass(frozen=True)
class External:
    """A non-VN network on a port of a gateway NVE (draft 4.3)."""
    name: str
    gateway: str              # NVE name
    port: str                 # the gateway's port
    vnid: Optional[int]       # untagged
    vlans: Dict[int, int]     # VLAN ID -> VNID
    allowed_macs: List[str]
    hosts: List[ExtHost]

    def vnid_of(self, host: ExtHost) -> Optional[int]:
        """The VN frames of ``host`` join (None: a VLAN no VN maps)."""
        return self.vnid if host.vlan is None else self.vlans.get(host.vlan)


@dataclass(frozen=True)
class TenantSystem:
    name: str
    nve: str
    vms: List[VM]


@dataclass
class Topology:
    name: str
    underlay: Underlay
    vns: List[VN]
    nves: List[NVE]
    tenant_systems: List[TenantSystem]
    source: Optional[str] = None
    interconnects: List[dict] = field(default_factory=list)
    externals: List[External] = field(default_factory=list)
    _ofports: Dict[str, Dict[str, int]] = field(default_factory=dict, repr=False)

    # -- lookups -----------------------------------------------------------
    @property
    def vms(self) -> List[VM]:
        return [vm for ts in self.tenant_systems for vm in ts.vms]

    @property
    def vnics(self) -> List[VNic]:
        return [v for vm in self.vms for v in vm.vnics]

    def vm(self, name: str) -> VM:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise KeyError(f"no VM named {name!r}")

    def nve(self, name_or_dpid: str) -> NVE:
        for nve in self.nves:
            if name_or_dpid in (nve.name, nve.dpid):
                return nve
        raise KeyError(f"no NVE named {name_or_dpid!r}")

    def vn(self, name_or_vnid: Union[str, int]) -> VN:
        for vn in self.vns:
            if name_or_vnid in (vn.name, vn.vnid):
                return vn
        raise KeyError(f"no VN {name_or_vnid!r}")

    @property
    def ext_hosts(self) -> List[ExtHost]:
        return [h for ext in self.externals for h in ext.hosts]

    def external(self, name: str) -> External:
        for ext in self.externals:
            if ext.name == name:
                return ext
        raise KeyError(f"no external network named {name!r}")

    def routers(self, vnid: int) -> List[ipaddress.IPv4Interface]:
        """The router addresses interconnects give L2 VN ``vnid``."""
        out = []
        for ic in self.interconnects:
            for key, value in (ic.get("router") or {}).items():
                try:
                    if self.vn(key).vnid == vnid:
                        out.append(ipaddress.IPv4Interface(value["ip"]))
                except (KeyError, ValueError, TypeError):
                    continue
        return out

    def next_hop(self, vnid: int, ip) -> Optional[ipaddress.IPv4Address]:
        """A host's default route in VN ``vnid``: its gateway or router."""
        if ip is None:
            return None
        gw = self.vn(vnid).gateway_ip_for(ip)
        if gw is not None:
            return gw
        for router in self.routers(vnid):
            if ip.ip in router.network:
                return router.ip
        return None

    def vnics_on(self, nve_name: str) -> List[VNic]:
        return [v for v in self.vnics if v.nve == nve_name]

    def vms_on(self, nve_name: str) -> List[VM]:
        return [vm for vm in self.vms if vm.nve == nve_name]

    def vnics_in(self, vn: Union[str, int]) -> List[VNic]:
        vnid = self.vn(vn).vnid
        return [v for v in self.vnics if v.vnid == vnid]

    def nves_of(self, vn: Union[str, int]) -> List[NVE]:
        """NVEs with at least one vNIC of the VN (its membership)."""
        names = {v.nve for v in self.vnics_in(vn)}
        return [n for n in self.nves if n.name in names]

    def access_ports(self, nve_name: str) -> List[str]:
        """Access-port names of one NVE, in file order (deduplicated)."""
        return list(self._ofports.get(nve_name, {}))

    def ofport(self, nve_name: str, port: str) -> int:
        """OpenFlow port number requested for an access port."""
        return self._ofports[nve_name][port]

    def port_bindings(self, by_dpid: bool = False) -> Dict[str, Dict[str, dict]]:
        """{nve: {port: {"vnid": N} | {"vlans": {vlan: vnid}}}} (docs/contracts.md, NVE preparation).

        Keyed by NVE name, or by dpid with ``by_dpid=True``.
        """
        keys = {nve.name: nve.dpid if by_dpid else nve.name for nve in self.nves}
        bound = declared.port_bindings(
            (keys[v.nve], v.port, v.vnid, v.vlan) for v in self.vnics)
        return {key: bound.get(key, {}) for key in keys.values()}

    def summary(self) -> str:
        lines = [f"topology {self.name}: {len(self.vns)} VNs, {len(self.nves)} NVEs, "
                 f"{len(self.vms)} VMs, {len(self.vnics)} vNICs"]
        for ic in self.interconnects:
            lines.append(f"  interconnect {ic['name']}: gateway {ic['gateway']}, "
                         f"VNs {', '.join(map(str, ic['vns']))}")
        for ext in self.externals:
            lines.append(f"  external {ext.name}: {ext.gateway} port {ext.port}, hosts "
                         + (", ".join(h.name for h in ext.hosts) or "-"))
        for vn in self.vns:
            members = ", ".join(n.name for n in self.nves_of(vn.vnid)) or "-"
            lines.append(f"  VN {vn.name} vnid={vn.vnid} {vn.service}/{vn.encap}: NVEs {members}")
        for nve in self.nves:
            ports = ", ".join(f"{v.port}={v.vm}/{v.vn}" + (f"@{v.vlan}" if v.vlan else "")
                              for v in self.vnics_on(nve.name))
            lines.append(f"  NVE {nve.name} dpid={nve.dpid} vtep={nve.vtep_ip}: {ports}")
        return "\n".join(lines)


# -- parsing ---------------------------------------------------------------

class _Ctx:
    """Carries the source name so that every error says where it is."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, msg: str):
        raise TopologyError(f"{self.source}: {where}: {msg}")

    def mapping(self, where, value, required, optional=()):
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping, got {type(value).__name__}")
        unknown = sorted(set(map(str, value)) - set(required) - set(optional))
        if unknown:
            allowed = ", ".join(list(required) + list(optional))
            self.fail(f"{where}.{unknown[0]}", f"unknown key (allowed: {allowed})")
        for key in required:
            if key not in value:
                self.fail(f"{where}.{key}", "required key is missing")
        return value

    def seq(self, where, value, allow_empty=False):
        if not isinstance(value, list):
            self.fail(where, f"must be a list, got {type(value).__name__}")
        if not value and not allow_empty:
            self.fail(where, "must not be empty")
        return value

    def name(self, where, value, max_len=MAX_NODE_NAME):
        if not isinstance(value, str) or not NAME_RE.match(value):
            self.fail(where, f"must be a name matching {NAME_RE.pattern}, got {value!r}")
        if len(value) > max_len:
            self.fail(where, f"{value!r} is longer than {max_len} characters")
        return value

    def mac(self, where, value):
        if not isinstance(value, str) or not MAC_RE.match(value.lower()):
            self.fail(where, f"must be a MAC address like \"02:00:00:00:00:01\" (quoted), got {value!r}")
        value = value.lower()
        if int(value[:2], 16) & 1:
            self.fail(where, f"{value} is a multicast MAC; a vNIC needs a unicast one")
        if value == "00:00:00:00:00:00":
            self.fail(where, "the all-zero MAC is not allowed")
        return value

    def iface(self, where, value):
        try:
            if "/" not in str(value):
                raise ValueError("missing /prefix-length")
            return ipaddress.IPv4Interface(str(value))
        except ValueError as exc:
            self.fail(where, f"must be an IPv4 address with prefix, like 192.168.1.1/24, got {value!r} ({exc})")

    def int_range(self, where, value, lo, hi):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.fail(where, f"must be an integer in {lo}..{hi}, got {value!r}")
        return value

    def choice(self, where, value, choices):
        if value not in choices:
            self.fail(where, f"must be one of {', '.join(choices)}, got {value!r}")
        return value


def load_topology(path: str) -> Topology:
    """Read and validate a topology YAML file (``extends: <file>``: that
    file's topology plus this one's VNs, NVEs, tenant systems,
    interconnects and external networks; the app reads it the same way)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read: {exc}") from exc
    if re.search(r"^extends:", text, flags=re.M):
        try:
            return parse_topology(declared.read_document(path), source=str(path))
        except declared.ConfigError as exc:
            raise TopologyError(str(exc)) from exc
    return parse_topology(text, source=str(path))


def parse_topology(text_or_data: Union[str, dict], source: str = "<topology>") -> Topology:
    """Validate YAML text (or an already-loaded mapping) into a Topology."""
    ctx = _Ctx(source)
    data = text_or_data
    if isinstance(text_or_data, str):
        try:
            data = yaml.safe_load(text_or_data)
        except yaml.YAMLError as exc:
            raise TopologyError(f"{source}: not valid YAML: {exc}") from exc
    top = ctx.mapping("top level", data, ("name", "underlay", "vns", "nves"),
                      ("tenant_systems", "interconnects", "externals"))
    if not isinstance(top["name"], str) or not top["name"]:
        ctx.fail("name", f"must be a non-empty string, got {top['name']!r}")

    ul = ctx.mapping("underlay", top["underlay"], ("subnet",), ("mtu",))
    try:
        subnet = ipaddress.IPv4Network(str(ul["subnet"]))
    except ValueError as exc:
        ctx.fail("underlay.subnet", f"must be an IPv4 network like 10.99.0.0/24 ({exc})")
    if subnet.prefixlen > 30:
        ctx.fail("underlay.subnet", f"{subnet} is too small for VTEPs")
    mtu = ctx.int_range("underlay.mtu", ul.get("mtu", 1600), 1280, 9000)
    underlay = Underlay(subnet=subnet, mtu=mtu)

    vns = _parse_vns(ctx, top["vns"])
    nves = _parse_nves(ctx, top["nves"], subnet)
    topo = Topology(name=top["name"], underlay=underlay, vns=vns, nves=nves,
                    tenant_systems=[], source=source)
    topo.tenant_systems = _parse_tenant_systems(ctx, top.get("tenant_systems") or [], topo)
    topo.interconnects = _parse_interconnects(ctx, top.get("interconnects") or [], topo)
    topo.externals = _parse_externals(ctx, top.get("externals") or [], topo)
    _assign_ofports(topo)
    return topo


def _parse_vns(ctx, raw) -> List[VN]:
    vns, seen_ids, seen_names = [], set(), set()
    for i, item in enumerate(ctx.seq("vns", raw)):
        w = f"vns[{i}]"
        d = ctx.mapping(w, item, ("vnid", "name", "service", "encap"),
                        ("gateway", "evpn", "route_targets"))
        if not isinstance(d.get("evpn", False), bool):
            ctx.fail(f"{w}.evpn", f"must be true or false, got {d['evpn']!r}")
        vnid = ctx.int_range(f"{w}.vnid", d["vnid"], 1, 2 ** 24 - 1)
        if vnid in seen_ids:
            ctx.fail(f"{w}.vnid", f"duplicate vnid {vnid}")
        name = d["name"]
        if not isinstance(name, str) or not name.strip():
            ctx.fail(f"{w}.name", f"must be a non-empty string, got {name!r}")
        if name in seen_names:
            ctx.fail(f"{w}.name", f"duplicate VN name {name!r}")
        service = ctx.choice(f"{w}.service", d["service"], ("l2", "l3"))
        encap = ctx.choice(f"{w}.encap", d["encap"], ("vxlan", "gre", "geneve"))
        gateway = None
        if "gateway" in d:
            g = ctx.mapping(f"{w}.gateway", d["gateway"], ("mac", "ips"))
            ips = [ctx.iface(f"{w}.gateway.ips[{k}]", ip)
                   for k, ip in enumerate(ctx.seq(f"{w}.gateway.ips", g["ips"]))]
            gateway = Gateway(mac=ctx.mac(f"{w}.gateway.mac", g["mac"]), ips=ips)
        elif service == "l3":
            ctx.fail(f"{w}.gateway", "required key is missing (an l3 VN needs gateway mac and ips)")
        seen_ids.add(vnid)
        seen_names.add(name)
        vns.append(VN(vnid=vnid, name=name, service=service, encap=encap, gateway=gateway,
                      evpn=d.get("evpn", False)))
    return vns


def _parse_nves(ctx, raw, subnet) -> List[NVE]:
    nves, names, dpids, vteps = [], set(), set(), set()
    for i, item in enumerate(ctx.seq("nves", raw)):
        w = f"nves[{i}]"
        d = ctx.mapping(w, item, ("name", "dpid", "vtep_ip"), ("role",))
        role = ctx.choice(f"{w}.role", d.get("role", "nve"), ("nve", "gateway"))
        name = ctx.name(f"{w}.name", d["name"])
        if name in names or name in RESERVED_NAMES:
            ctx.fail(f"{w}.name", f"duplicate or reserved name {name!r}")
        dpid = d["dpid"]
        if not isinstance(dpid, str) or not re.match(r"^(0x)?[0-9A-Fa-f]{1,16}$", dpid):
            ctx.fail(f"{w}.dpid", f"must be a quoted string of up to 16 hex digits, got {dpid!r} "
                                  "(unquoted YAML numbers with leading zeros are read as octal)")
        dpid = f"{int(dpid, 16):016x}"
        if int(dpid, 16) == 0 or dpid in dpids:
            ctx.fail(f"{w}.dpid", f"dpid {dpid} is zero or duplicate")
        try:
            vtep = ipaddress.IPv4Address(str(d["vtep_ip"]))
        except ValueError:
            ctx.fail(f"{w}.vtep_ip", f"must be an IPv4 address, got {d['vtep_ip']!r}")
        if vtep not in subnet or vtep in (subnet.network_address, subnet.broadcast_address):
            ctx.fail(f"{w}.vtep_ip", f"{vtep} is not a host address of underlay.subnet {subnet}")
        if vtep in vteps:
            ctx.fail(f"{w}.vtep_ip", f"duplicate VTEP address {vtep}")
        names.add(name)
        dpids.add(dpid)
        vteps.add(vtep)
        nves.append(NVE(name=name, dpid=dpid, vtep_ip=vtep, role=role))
    return nves


def _parse_tenant_systems(ctx, raw, topo: Topology) -> List[TenantSystem]:
    nve_names = {n.name for n in topo.nves}
    node_names = set(nve_names) | RESERVED_NAMES
    ts_names, macs, ports = set(), {}, {}
    vn_ips: Dict[int, Dict[ipaddress.IPv4Address, str]] = {}
    systems = []
    for t, item in enumerate(ctx.seq("tenant_systems", raw, allow_empty=True)):
        w = f"tenant_systems[{t}]"
        d = ctx.mapping(w, item, ("name", "nve", "vms"))
        ts_name = ctx.name(f"{w}.name", d["name"])
        if ts_name in ts_names:
            ctx.fail(f"{w}.name", f"duplicate tenant system name {ts_name!r}")
        ts_names.add(ts_name)
        if d["nve"] not in nve_names:
            ctx.fail(f"{w}.nve", f"unknown NVE {d['nve']!r} (known: {', '.join(sorted(nve_names))})")
        nve = d["nve"]
        vms = []
        for m, vm_item in enumerate(ctx.seq(f"{w}.vms", d["vms"])):
            vw = f"{w}.vms[{m}]"
            vd = ctx.mapping(vw, vm_item, ("name", "vnics"))
            vm_name = ctx.name(f"{vw}.name", vd["name"])
            if vm_name in node_names:
                ctx.fail(f"{vw}.name", f"{vm_name!r} is already used by another node")
            node_names.add(vm_name)
            vnics = _parse_vnics(ctx, vw, vd["vnics"], vm_name, nve, topo, macs, ports, vn_ips)
            vms.append(VM(name=vm_name, tenant_system=ts_name, nve=nve, vnics=vnics))
        systems.append(TenantSystem(name=ts_name, nve=nve, vms=vms))
    return systems


def _parse_vnics(ctx, vw, raw, vm_name, nve, topo, macs, ports, vn_ips) -> List[VNic]:
    vnics: List[VNic] = []
    trunk_intf: Dict[str, str] = {}       # explicit shared port -> VM-side intf
    for i, item in enumerate(ctx.seq(f"{vw}.vnics", raw)):
        w = f"{vw}.vnics[{i}]"
        d = ctx.mapping(w, item, ("mac", "vn"), ("ip", "vlan", "port"))
        mac = ctx.mac(f"{w}.mac", d["mac"])
        if mac in macs:
            ctx.fail(f"{w}.mac", f"duplicate MAC {mac} (also {macs[mac]})")
        macs[mac] = w
        try:
            vn = topo.vn(d["vn"])
        except KeyError:
            ctx.fail(f"{w}.vn", f"unknown VN {d['vn']!r} (known: {', '.join(v.name for v in topo.vns)})")
        ip = ctx.iface(f"{w}.ip", d["ip"]) if d.get("ip") is not None else None
        if ip is not None:
            owner = vn_ips.setdefault(vn.vnid, {}).get(ip.ip)
            if owner:
                ctx.fail(f"{w}.ip", f"{ip.ip} is already used in VN {vn.name} by {owner}")
            vn_ips[vn.vnid][ip.ip] = w
            if vn.service == "l3" and vn.gateway_ip_for(ip) is None:
                ctx.fail(f"{w}.ip", f"{ip} is in none of VN {vn.name}'s gateway subnets")
        vlan = ctx.int_range(f"{w}.vlan", d["vlan"], 1, 4094) if d.get("vlan") is not None else None
        intf = f"eth{i}"
        if "port" in d:
            port = d["port"]
            if not isinstance(port, str) or not IFNAME_RE.match(port) or len(port) > MAX_IFNAME:
                ctx.fail(f"{w}.port", f"must be an interface name of at most {MAX_IFNAME} characters, got {port!r}")
        else:
            port = declared.access_port(vm_name, i)
            if len(port) > MAX_IFNAME:
                ctx.fail(f"{w}", f"derived port name {port!r} is longer than {MAX_IFNAME}; set port:")
        key = (nve, port)
        if key in ports:
            prev_vm, prev = ports[key]
            if prev_vm != vm_name:
                ctx.fail(f"{w}.port", f"port {port!r} on NVE {nve} is already used by VM {prev_vm}")
            # A shared trunk: every vNIC on it needs its own VLAN.
            if vlan is None or any(p.vlan is None or p.vlan == vlan for p in prev):
                ctx.fail(f"{w}.vlan", f"vNICs sharing port {port!r} must all have distinct vlan:")
            intf = trunk_intf[port]
        else:
            ports[key] = (vm_name, [])
            trunk_intf[port] = intf
        vnic = VNic(vm=vm_name, index=i, mac=mac, vn=vn.name, vnid=vn.vnid, ip=ip, vlan=vlan,
                    port=port, nve=nve, intf=intf)
        ports[key][1].append(vnic)
        vnics.append(vnic)
    return vnics


def _gateway(ctx, where, value, topo):
    try:
        nve = topo.nve(value)
    except KeyError:
        ctx.fail(where, f"unknown NVE {value!r}")
    if nve.role != "gateway":
        ctx.fail(where, f"NVE {nve.name} is not a gateway (role: gateway)")
    return nve


def _vn_ref(ctx, where, value, topo) -> VN:
    try:
        return topo.vn(value)
    except KeyError:
        ctx.fail(where, f"unknown VN {value!r}")


def _parse_interconnects(ctx, raw, topo: Topology) -> List[dict]:
    """Checked for the names the testbed needs; the app checks the rest."""
    out, names = [], set()
    for i, item in enumerate(ctx.seq("interconnects", raw, allow_empty=True)):
        w = f"interconnects[{i}]"
        d = ctx.mapping(w, item, ("name", "gateway", "vns"), ("allowed_macs", "router"))
        if not isinstance(d["name"], str) or not d["name"] or d["name"] in names:
            ctx.fail(f"{w}.name", f"must be a unique non-empty string, got {d['name']!r}")
        names.add(d["name"])
        _gateway(ctx, f"{w}.gateway", d["gateway"], topo)
        for k, ref in enumerate(ctx.seq(f"{w}.vns", d["vns"])):
            _vn_ref(ctx, f"{w}.vns[{k}]", ref, topo)
        for key in (d.get("router") or {}):
            _vn_ref(ctx, f"{w}.router.{key}", key, topo)
        out.append(dict(d))
    return out


def _parse_externals(ctx, raw, topo: Topology) -> List[External]:
    out, names = [], {vm.name for vm in topo.vms} | {n.name for n in topo.nves} | RESERVED_NAMES
    macs = {v.mac for v in topo.vnics}
    for i, item in enumerate(ctx.seq("externals", raw, allow_empty=True)):
        w = f"externals[{i}]"
        d = ctx.mapping(w, item, ("name", "gateway", "port"),
                        ("vlans", "vn", "vnid", "allowed_macs", "hosts"))
        name = ctx.name(f"{w}.name", d["name"])
        if name in names:
            ctx.fail(f"{w}.name", f"{name!r} is already used by another node")
        names.add(name)
        gw = _gateway(ctx, f"{w}.gateway", d["gateway"], topo)
        port = d["port"]
        if not isinstance(port, str) or not IFNAME_RE.match(port) or len(port) > MAX_IFNAME \
                or port in {v.port for v in topo.vnics_on(gw.name)}:
            ctx.fail(f"{w}.port", f"must be a free interface name of at most {MAX_IFNAME} "
                                  f"characters, got {port!r}")
        untagged = d.get("vn", d.get("vnid"))
        if (untagged is None) == ("vlans" not in d):
            ctx.fail(f"{w}.vlans", "give either vn (untagged) or vlans (VLAN ID -> VN)")
        vnid = _vn_ref(ctx, f"{w}.vn", untagged, topo).vnid if untagged is not None else None
        vlans = {}
        for vlan, ref in (d.get("vlans") or {}).items():
            vlans[ctx.int_range(f"{w}.vlans", int(vlan) if str(vlan).isdigit() else vlan,
                                1, 4094)] = _vn_ref(ctx, f"{w}.vlans.{vlan}", ref, topo).vnid
        allowed = [ctx.mac(f"{w}.allowed_macs[{k}]", m)
                   for k, m in enumerate(d.get("allowed_macs") or [])]
        hosts = []
        for k, h in enumerate(ctx.seq(f"{w}.hosts", d.get("hosts") or [], allow_empty=True)):
            hw = f"{w}.hosts[{k}]"
            hd = ctx.mapping(hw, h, ("name", "mac"), ("ip", "vlan"))
            hname = ctx.name(f"{hw}.name", hd["name"])
            if hname in names:
                ctx.fail(f"{hw}.name", f"{hname!r} is already used by another node")
            names.add(hname)
            mac = ctx.mac(f"{hw}.mac", hd["mac"])
            if mac in macs:
                ctx.fail(f"{hw}.mac", f"duplicate MAC {mac}")
            macs.add(mac)
            ip = ctx.iface(f"{hw}.ip", hd["ip"]) if hd.get("ip") is not None else None
            vlan = ctx.int_range(f"{hw}.vlan", hd["vlan"], 1, 4094) \
                if hd.get("vlan") is not None else None
            hosts.append(ExtHost(name=hname, mac=mac, ip=ip, vlan=vlan, external=name))
        out.append(External(name=name, gateway=gw.name, port=port, vnid=vnid, vlans=vlans,
                            allowed_macs=allowed, hosts=hosts))
    return out


def _assign_ofports(topo: Topology) -> None:
    for nve in topo.nves:
        table: Dict[str, int] = {}
        for v in topo.vnics_on(nve.name):
            if v.port not in table:
                table[v.port] = len(table) + 1
        # External networks' ports come after the vNICs' (they are not bound).
        for ext in topo.externals:
            if ext.gateway == nve.name:
                table[ext.port] = len(table) + 1
        topo._ofports[nve.name] = table
