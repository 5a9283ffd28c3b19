"""Topology files: the shipped ones parse as the draft describes; bad ones fail clearly."""

import copy
import ipaddress
import os
import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nvo3_ryu_app.testbed import topology as topo_mod
from nvo3_ryu_app.testbed.topology import TopologyError, load_topology, parse_topology

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOPOS = os.path.join(ROOT, "topologies")


def _load(name):
    return load_topology(os.path.join(TOPOS, name))


def test_figure1_matches_the_draft():
    t = _load("figure1.yaml")
    assert [n.name for n in t.nves] == [f"edge{i}" for i in range(1, 7)]
    assert {vn.name: vn.vnid for vn in t.vns} == {"VN1": 1001, "VN2": 1002, "VN3": 1003}
    members = {vn.name: [n.name for n in t.nves_of(vn.vnid)] for vn in t.vns}
    assert members == {"VN1": ["edge1", "edge2", "edge5"], "VN2": ["edge3", "edge4"],
                       "VN3": ["edge4", "edge6"]}
    by_ts = {ts.name: (ts.nve, [vm.name for vm in ts.vms]) for ts in t.tenant_systems}
    assert by_ts == {
        "ts1": ("edge1", ["vm1", "vm2", "vm3"]), "ts2": ("edge2", ["vm4", "vm5", "vm6"]),
        "ts3": ("edge3", ["vm7", "vm8", "vm9"]), "ts4": ("edge4", ["vma", "vmb", "vmc"]),
        "ts5": ("edge5", ["vmd", "vme", "vmf", "vmg"]),
        "ts6": ("edge6", ["vmh", "vmi", "vmj", "vmk"])}
    # TS4 / edge4 serve both VN2 and VN3
    assert t.port_bindings()["edge4"] == {"vma-0": {"vnid": 1002}, "vmb-0": {"vnid": 1002},
                                          "vmc-0": {"vnid": 1003}}
    subnets = {vn.name: {v.ip.network for v in t.vnics_in(vn.vnid)} for vn in t.vns}
    assert subnets == {"VN1": {ipaddress.ip_network("192.168.1.0/24")},
                       "VN2": {ipaddress.ip_network("192.168.2.0/24")},
                       "VN3": {ipaddress.ip_network("192.168.3.0/24")}}
    macs = [v.mac for v in t.vnics]
    assert len(set(macs)) == len(macs) == 20
    assert all(re.match(r"^02:00:00:00:0[123]:[0-9a-f]{2}$", m) for m in macs)
    assert t.nve("edge3").dpid == "0000000000000003"
    assert t.nve("0000000000000003").name == "edge3"
    assert str(t.nve("edge6").vtep_ip) == "10.99.0.6"


def test_two_nve():
    t = _load("two-nve.yaml")
    assert [n.name for n in t.nves] == ["nve1", "nve2"]
    assert [(vn.vnid, vn.service, vn.encap) for vn in t.vns] == [(5001, "l2", "vxlan")]
    assert {n.name: [vm.name for vm in t.vms_on(n.name)] for n in t.nves} == \
        {"nve1": ["h1", "h2"], "nve2": ["h3", "h4"]}
    assert len(t.tenant_systems) == 4
    assert t.port_bindings(by_dpid=True)["0000000000000002"] == \
        {"h3-0": {"vnid": 5001}, "h4-0": {"vnid": 5001}}
    assert t.ofport("nve2", "h4-0") == 2


def test_l3_gateways():
    t = _load("l3.yaml")
    (vn,) = t.vns
    assert vn.service == "l3" and vn.gateway.mac == "02:00:00:00:fe:01"
    gws = {v.vm: str(vn.gateway_ip_for(v.ip)) for v in t.vnics}
    assert gws == {"r1": "192.168.10.1", "r2": "192.168.20.1",
                   "r3": "192.168.10.1", "r4": "192.168.20.1"}
    for nve in t.nves:      # both subnets on both NVEs
        nets = {v.ip.network for v in t.vnics_on(nve.name)}
        assert len(nets) == 2


def test_docstring_example_parses():
    doc = topo_mod.__doc__
    block = doc.split(".. code-block:: yaml", 1)[1].split("\nvNIC keys", 1)[0]
    t = parse_topology(block, source="docstring")
    vnics = t.vm("vm1").vnics
    assert [v.port for v in vnics] == ["vm1-0", "vm1-1"]
    assert [v.vm_ifname for v in vnics] == ["eth0", "eth1.10"]
    assert t.port_bindings() == {"edge1": {"vm1-0": {"vnid": 1001},
                                           "vm1-1": {"vlans": {10: 1002}}}}


TRUNK = """
name: trunk
underlay: {subnet: 10.99.0.0/24}
vns:
  - {vnid: 7001, name: a, service: l2, encap: vxlan}
  - {vnid: 7002, name: b, service: l2, encap: gre}
nves:
  - {name: n1, dpid: "a", vtep_ip: 10.99.0.1}
tenant_systems:
  - name: t1
    nve: n1
    vms:
      - name: v1
        vnics:
          - {mac: "02:00:00:00:00:01", ip: 10.1.0.1/24, vn: a, vlan: 10, port: tap1}
          - {mac: "02:00:00:00:00:02", ip: 10.2.0.1/24, vn: 7002, vlan: 20, port: tap1}
          - {mac: "02:00:00:00:00:03", vn: a}
"""


def test_trunk_port_carries_several_vns():
    t = parse_topology(TRUNK)
    v = t.vm("v1").vnics
    assert [x.intf for x in v] == ["eth0", "eth0", "eth2"]
    assert [x.vm_ifname for x in v] == ["eth0.10", "eth0.20", "eth2"]
    assert t.port_bindings() == {"n1": {"tap1": {"vlans": {10: 7001, 20: 7002}},
                                        "v1-2": {"vnid": 7001}}}
    assert t.access_ports("n1") == ["tap1", "v1-2"]
    assert t.nve("n1").dpid == "000000000000000a"
    assert v[2].ip is None


def _fig1():
    with open(os.path.join(TOPOS, "figure1.yaml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _set(path, value):
    def mutate(d):
        keys = path.split(".")
        cur = d
        for k in keys[:-1]:
            cur = cur[int(k)] if k.isdigit() else cur[k]
        last = keys[-1]
        if value is _DELETE:
            del cur[last]
        else:
            cur[int(last) if last.isdigit() else last] = value
        return d
    return mutate


_DELETE = object()

BAD = [
    ("unknown top-level key", _set("colour", "blue"), r"top level\.colour: unknown key"),
    ("missing vns", _set("vns", _DELETE), r"top level\.vns: required key is missing"),
    ("vnid not int", _set("vns.0.vnid", "x"), r"vns\[0\]\.vnid: must be an integer"),
    ("vnid too big", _set("vns.0.vnid", 2 ** 24), r"vns\[0\]\.vnid: must be an integer in 1\.\.16777215"),
    ("duplicate vnid", _set("vns.1.vnid", 1001), r"vns\[1\]\.vnid: duplicate vnid 1001"),
    ("bad service", _set("vns.0.service", "l4"), r"vns\[0\]\.service: must be one of l2, l3"),
    ("bad encap", _set("vns.0.encap", "nvgre"), r"vns\[0\]\.encap: must be one of vxlan, gre, geneve"),
    ("l3 without gateway", _set("vns.0.service", "l3"), r"vns\[0\]\.gateway: required key"),
    ("unquoted dpid", _set("nves.0.dpid", 1), r"nves\[0\]\.dpid: must be a quoted string"),
    ("duplicate dpid", _set("nves.1.dpid", "1"), r"nves\[1\]\.dpid: dpid 0000000000000001"),
    ("vtep outside underlay", _set("nves.0.vtep_ip", "10.98.0.1"),
     r"nves\[0\]\.vtep_ip: 10\.98\.0\.1 is not a host address"),
    ("duplicate vtep", _set("nves.1.vtep_ip", "10.99.0.1"), r"nves\[1\]\.vtep_ip: duplicate"),
    ("nve name too long", _set("nves.0.name", "a" * 13), r"nves\[0\]\.name: .* longer than 12"),
    ("bad nve name", _set("nves.0.name", "edge 1"), r"nves\[0\]\.name: must be a name"),
    ("unknown nve", _set("tenant_systems.0.nve", "edge9"), r"tenant_systems\[0\]\.nve: unknown NVE 'edge9'"),
    ("duplicate vm", _set("tenant_systems.1.vms.0.name", "vm1"),
     r"tenant_systems\[1\]\.vms\[0\]\.name: 'vm1' is already used"),
    ("vm named like an nve", _set("tenant_systems.0.vms.0.name", "edge2"), r"already used"),
    ("unknown vn", _set("tenant_systems.0.vms.0.vnics.0.vn", "VN9"),
     r"tenant_systems\[0\]\.vms\[0\]\.vnics\[0\]\.vn: unknown VN 'VN9'"),
    ("bad mac", _set("tenant_systems.0.vms.0.vnics.0.mac", "02:00:00:00:01"), r"vnics\[0\]\.mac: must be a MAC"),
    ("multicast mac", _set("tenant_systems.0.vms.0.vnics.0.mac", "01:00:5e:00:00:01"), r"multicast"),
    ("duplicate mac", _set("tenant_systems.0.vms.1.vnics.0.mac", "02:00:00:00:01:01"), r"duplicate MAC"),
    ("ip without prefix", _set("tenant_systems.0.vms.0.vnics.0.ip", "192.168.1.1"),
     r"vnics\[0\]\.ip: must be an IPv4 address with prefix"),
    ("duplicate ip in vn", _set("tenant_systems.0.vms.1.vnics.0.ip", "192.168.1.1/24"),
     r"192\.168\.1\.1 is already used in VN VN1"),
    ("vlan out of range", _set("tenant_systems.0.vms.0.vnics.0.vlan", 4095), r"vlan: must be an integer in 1\.\.4094"),
    ("port too long", _set("tenant_systems.0.vms.0.vnics.0.port", "p" * 16), r"port: must be an interface name"),
    ("unknown vnic key", _set("tenant_systems.0.vms.0.vnics.0.speed", 10), r"vnics\[0\]\.speed: unknown key"),
    ("vms not a list", _set("tenant_systems.0.vms", "vm1"), r"tenant_systems\[0\]\.vms: must be a list"),
    ("empty vnics", _set("tenant_systems.0.vms.0.vnics", []), r"vnics: must not be empty"),
]


@pytest.mark.parametrize("what,mutate,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_topologies_name_the_key(what, mutate, pattern):
    data = mutate(copy.deepcopy(_fig1()))
    with pytest.raises(TopologyError, match=pattern) as err:
        parse_topology(data, source="fig1-mutant.yaml")
    assert str(err.value).startswith("fig1-mutant.yaml: ")


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(TopologyError, match="not valid YAML"):
        parse_topology("name: [unclosed", source="x.yaml")
    with pytest.raises(TopologyError, match="top level: must be a mapping"):
        parse_topology("- a\n- b\n")
    with pytest.raises(TopologyError, match="cannot read"):
        load_topology(str(tmp_path / "nope.yaml"))


def test_l3_ip_outside_gateway_subnets():
    data = yaml.safe_load(open(os.path.join(TOPOS, "l3.yaml"), encoding="utf-8"))
    data["tenant_systems"][0]["vms"][0]["vnics"][0]["ip"] = "192.168.30.5/24"
    with pytest.raises(TopologyError, match=r"vnics\[0\]\.ip: 192\.168\.30\.5/24 is in none"):
        parse_topology(data)


def test_shared_port_needs_distinct_vlans():
    data = yaml.safe_load(TRUNK)
    data["tenant_systems"][0]["vms"][0]["vnics"][1]["vlan"] = 10
    with pytest.raises(TopologyError, match=r"vnics\[1\]\.vlan: vNICs sharing port 'tap1'"):
        parse_topology(data)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["n1", "n2", "n3"]),
                          st.integers(min_value=1, max_value=3)),
                min_size=1, max_size=12))
def test_generated_topologies_have_stable_short_port_names(vms):
    """Any valid layout: port names fit IFNAMSIZ, are unique per NVE, and the
    OpenFlow port numbers are 1..N per NVE."""
    data = {"name": "gen", "underlay": {"subnet": "10.99.0.0/24"},
            "vns": [{"vnid": 10, "name": "x", "service": "l2", "encap": "vxlan"}],
            "nves": [{"name": f"n{i}", "dpid": f"{i:x}", "vtep_ip": f"10.99.0.{i}"}
                     for i in (1, 2, 3)],
            "tenant_systems": []}
    mac = 0
    for k, (nve, nvnics) in enumerate(vms):
        vnics = []
        for _ in range(nvnics):
            mac += 1
            vnics.append({"mac": "02:00:00:00:%02x:%02x" % (mac >> 8, mac & 0xff), "vn": "x"})
        data["tenant_systems"].append({"name": f"t{k}", "nve": nve,
                                       "vms": [{"name": f"virtualm{k}", "vnics": vnics}]})
    t = parse_topology(data)
    for nve in t.nves:
        ports = t.access_ports(nve.name)
        assert len(ports) == len(set(ports))
        assert all(len(p) <= 15 for p in ports)
        assert sorted(t.ofport(nve.name, p) for p in ports) == list(range(1, len(ports) + 1))
        assert set(t.port_bindings()[nve.name]) == set(ports)


# -- interconnection (draft 4.3): gateways, interconnects, external networks --

def test_gateway_topology_has_its_gateway_interconnects_and_segment():
    t = _load("gateway.yaml")
    assert [(n.name, n.role) for n in t.nves] == [
        ("n1", "nve"), ("n2", "nve"), ("gw", "gateway")]
    assert {vn.name: vn.encap for vn in t.vns}["C"] == "geneve"
    assert [ic["name"] for ic in t.interconnects] == ["ab", "cd", "fa"]
    ext = t.external("lab")
    assert (ext.gateway, ext.port, ext.vlans, ext.vnid) == ("gw", "ext0", {100: 2001}, None)
    assert [(h.name, h.vlan, ext.vnid_of(h)) for h in ext.hosts] == [
        ("x1", 100, 2001), ("x2", 100, 2001), ("x3", 300, None)]
    # The external port is a port of the gateway's br-int, after the vNICs'.
    assert t.ofport("gw", "ext0") == 1
    # f1 (L2 VN F) routes through the router interconnect fa gives F.
    f1 = t.vm("f1").vnics[0]
    assert str(t.next_hop(f1.vnid, f1.ip)) == "10.6.0.254"
    a1 = t.vm("a1").vnics[0]
    assert str(t.next_hop(a1.vnid, a1.ip)) == "10.1.0.254"


def test_interconnection_docstring_example_parses():
    doc = topo_mod.__doc__
    head = doc.split(".. code-block:: yaml", 1)[1].split("\nvNIC keys", 1)[0]
    extra = doc.split(".. code-block:: yaml", 2)[2].split("\nDerived names", 1)[0]
    data = yaml.safe_load(head)
    more = yaml.safe_load(extra)
    data["nves"] += more["nves"]
    data["interconnects"] = more["interconnects"]
    data["externals"] = more["externals"]
    t = parse_topology(data, source="docstring")
    assert t.nve("gw1").role == "gateway"
    assert [h.name for h in t.external("lab").hosts] == ["x1"]


def _gw_data():
    with open(os.path.join(TOPOS, "gateway.yaml")) as fh:
        return yaml.safe_load(fh)


@pytest.mark.parametrize("what,mutate,pattern", [
    ("bad role", _set("nves.0.role", "router"), r"nves\[0\]\.role: must be one of nve, gateway"),
    ("interconnect on a plain NVE", _set("interconnects.0.gateway", "n1"),
     r"interconnects\[0\]\.gateway: NVE n1 is not a gateway"),
    ("interconnect with an unknown VN", _set("interconnects.0.vns", ["A", "Z"]),
     r"interconnects\[0\]\.vns\[1\]: unknown VN 'Z'"),
    ("external with vn and vlans", _set("externals.0.vn", "A"),
     r"externals\[0\]\.vlans: give either vn"),
    ("external VLAN out of range", _set("externals.0.vlans", {4095: "A"}),
     r"externals\[0\]\.vlans: must be an integer in 1\.\.4094"),
    ("external host named like a VM", _set("externals.0.hosts.0.name", "a1"),
     r"externals\[0\]\.hosts\[0\]\.name: 'a1' is already used"),
])
def test_bad_interconnection_topologies_name_the_key(what, mutate, pattern):
    data = mutate(_gw_data())
    with pytest.raises(TopologyError, match=pattern):
        parse_topology(data, source="gw-mutant.yaml")


def test_figure1_gateway_extends_figure1_for_the_testbed_and_the_app():
    base, t = _load("figure1.yaml"), _load("figure1-gateway.yaml")
    assert [n.name for n in t.nves] == [n.name for n in base.nves] + ["gw"]
    assert [vm.name for vm in t.vms] == [vm.name for vm in base.vms]
    assert [h.name for h in t.ext_hosts] == ["x1", "x2"]
    from nvo3_ryu_app.authority import declared
    doc = declared.load(os.path.join(TOPOS, "figure1-gateway.yaml")).document
    assert [n["name"] for n in doc["nves"]][-1] == "gw"
    assert doc["interconnects"][0]["vns"] == ["VN1", "VN3"]
    assert "hosts" not in doc["externals"][0]      # the testbed's, not the app's


def test_extends_in_a_loop_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nname: b\n")
    with pytest.raises(TopologyError, match="in a loop"):
        load_topology(str(tmp_path / "a.yaml"))
