"""The three-NVE lab (topologies/three-nve.yaml) of the mobility and
migration tests: its NVEs, and a module-wide lab in which every VM has
spoken once (the authority knows them all) before the first test."""

import re

from nvo3_ryu_app.testbed.builder import _require_root_and_tools
from nvo3_ryu_app.testbed.lab import Lab

from conftest import topology_path

VNID = 5001
DPID = {'nve1': '0000000000000001', 'nve2': '0000000000000002',
        'nve3': '0000000000000003'}
VTEP = {'nve1': '10.99.0.1', 'nve2': '10.99.0.2', 'nve3': '10.99.0.3'}
APP_COOKIE = re.compile(r'cookie=0x4e56[0-9a-f]{12}\b')
# The app's stamp of what an NVE holds (pipeline.COOKIE_STAMP).
STAMP_COOKIE = re.compile(r'cookie=0x4e53000000000000\b')


def known_lab(extra_ini):
    """For a module fixture: yields the started lab once "pr" reached every
    other VM and every NVE acknowledged; stops it and checks that the app
    logged no problem."""
    _require_root_and_tools()
    lab = Lab(topology_path('three-nve.yaml'), extra_ini=extra_ini).start()
    try:
        lab.wait_sync()
        ips = [ip(lab, vm.name) for vm in lab.tb.topo.vms if vm.name != 'pr']
        got = lab.reach('pr', ips)
        assert all(got.values()), got
        lab.wait_sync()
        yield lab
    finally:
        problems = lab.stop()
    assert problems == [], problems


def vnic(lab, vm):
    """The (only) vNIC of ``vm`` as the topology declares it."""
    return lab.tb.topo.vm(vm).vnics[0]


def ip(lab, vm):
    """``vm``'s IPv4 address, without its prefix length."""
    return str(vnic(lab, vm).ip.ip)


def mac(lab, vm):
    """``vm``'s MAC."""
    return vnic(lab, vm).mac


def events(lab, kind, mac=None):
    """The event log's events of ``kind`` (of ``mac``, if given)."""
    got = lab.get('/v1/events?type=%s&limit=1000' % kind)['events']
    return [e for e in got if mac is None or e.get('mac') == mac]
