"""The declarative file: a topology file's tenant systems bind ports.

The app reads a topology file itself (declared.py) and the testbed builds
it (testbed/topology.py): both must bind the same access ports to the same
VNs, or a VM would be attached to a port the app never classifies.
"""

import glob
import os

import pytest

from nvo3_ryu_app.authority import commands as C
from nvo3_ryu_app.authority import declared
from nvo3_ryu_app.authority.model import MappingDB
from nvo3_ryu_app.testbed.topology import load_topology

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TOPOLOGIES = sorted(glob.glob(os.path.join(ROOT, 'topologies', '*.yaml')))


@pytest.mark.parametrize('path', TOPOLOGIES, ids=os.path.basename)
def test_the_app_binds_the_ports_the_testbed_builds(path):
    command = declared.load(path)
    assert isinstance(command, C.ApplyConfig)
    want = load_topology(path).port_bindings()
    assert {n['name']: n['ports'] for n in command.document['nves']} == want
    db = MappingDB()
    declared.apply(db, command.document, 1.0)
    for nve in db.nves.values():
        assert {p: (b.vnid, b.vlans, b.origin)
                for p, b in nve.bindings.items()} == {
            p: (b.get('vnid'), b.get('vlans', {}), 'config')
            for p, b in want[nve.name].items()}


def test_a_vnic_of_an_unknown_vn_is_refused_naming_it(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('''
name: bad
underlay: {subnet: 10.99.0.0/24}
vns: [{vnid: 5001, name: blue, service: l2, encap: vxlan}]
nves: [{name: nve1, dpid: "0000000000000001", vtep_ip: 10.99.0.1}]
tenant_systems:
  - name: ts1
    nve: nve1
    vms:
      - name: h1
        vnics: [{mac: "02:00:00:00:50:01", vn: red}]
''')
    with pytest.raises(declared.ConfigError,
                       match=r'tenant_systems\[0\]\.vms\[0\]\.vnics\[0\]'
                             r'\.vn: unknown VN'):
        declared.load(str(path))
