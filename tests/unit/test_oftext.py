"""Flows in ovs-ofctl syntax: what Open vSwitch's own parser reads back.

Every flow of a scenario with every kind of flow (L2 and L3 VNs, VLAN
bindings, IPv4 and IPv6, GRE and VXLAN) is written as text and given to
``ovs-ofctl parse-flows`` (a parser, no switch needed): it must read each
line, and read it as the same table, priority and cookie.
"""

import re
import subprocess

from fakeof import Lab
from nvo3_ryu_app.authority import oftext
from nvo3_ryu_app.authority import pipeline as P


def scenario():
    lab = Lab(nves=(1, 2))
    db = lab.db
    db.create_vn(5001, 'blue')
    db.create_vn(6001, 'red', service='l3', encap='gre',
                 gateway_mac='02:00:00:00:fe:01',
                 gateway_ips=('192.168.10.1/24', 'fd00::1/64'))
    for dpid in (1, 2):
        db.bind_port(dpid, 'p1', vnid=5001)
        db.bind_port(dpid, 'p2', vlans={10: 5001, 20: 6001})
    lab.learn(1, 'p1', '02:00:00:00:00:01', '192.168.1.1')
    lab.learn(2, 'p1', '02:00:00:00:00:02', '192.168.1.2')
    lab.learn(1, 'p2', '02:00:00:00:00:03', '192.168.10.5', vlan=20)
    lab.learn(2, 'p2', '02:00:00:00:00:04', 'fd00::5', vlan=20)
    lab.sync()
    return lab


def test_ovs_ofctl_reads_every_flow_back(tmp_path):
    lab = scenario()
    flows = [item for dpid in (1, 2)
             for item in lab.planner.tables[dpid].desired.values()
             if isinstance(item, P.Flow)]
    assert len(flows) > 100
    path = tmp_path / 'flows.txt'
    path.write_text(''.join(oftext.flow_text(f, plain=True) + '\n'
                            for f in flows))
    run = subprocess.run(['ovs-ofctl', '-O', 'OpenFlow13', 'parse-flows',
                          str(path)], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stderr
    mods = [line for line in run.stdout.splitlines()
            if 'OFPT_FLOW_MOD' in line]
    assert len(mods) == len(flows)
    for flow, line in zip(flows, mods):
        table = 'table:%d ' % flow.table if flow.table else ''
        assert 'ADD %spriority=%d' % (table, flow.priority) in line, (
            oftext.flow_text(flow), line)
        assert re.search(r'cookie:0x%x\b' % flow.cookie, line), line


def test_people_see_port_names_and_meters():
    lab = scenario()
    nve = lab.db.nves[1]
    names = {n: name for name, n in nve.dyn_ports.items()}
    text = [oftext.item_text(i, names)
            for i in lab.planner.tables[1].desired.values()]
    assert any('output:1(p1)' in t for t in text)
    assert 'meter=1,pktps,burst,bands=type=drop,rate=100,burst_size=50' \
        in text
    assert any('vlan_tci=0x0000/0x1fff' in t for t in text)
    assert any('dl_vlan=10' in t for t in text)
