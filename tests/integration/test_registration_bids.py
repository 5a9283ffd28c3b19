"""Registration end to end: one vNIC registered with three BIDs in three
VNs.

Real NVEs (namespaced Open vSwitch, userspace datapath), the app under
osken-manager, and the hypervisor agent's client ``nvo3-register`` talking
msgpack-RPC to it.  Two VMs on nve1, peers on nve2:

* L3 service (draft Figure 3): vm3 has ONE vNIC (eth0, untagged, port
  vm3-0 bound to RED1) with three IPs, one per VN, registered as BIDs 1..3;
  the NVE picks the VN by source IP.
* L2 service (draft Figure 4): vm2's trunk carries VLANs 10/20/30 (BLUE1..3)
  and the test gives all three subinterfaces ONE MAC, registered as BIDs
  1..3 with their VLANs.

Each binding reaches the peer of its VN and no peer of the others; after
de-registering BID 2 that VN (only) is unreachable.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from nvo3_ryu_app.testbed import procs

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

L3_MAC = '02:00:00:00:30:01'
L2_MAC = '02:00:00:00:40:01'
TOPOLOGY = """
name: bids
underlay: {subnet: 10.99.0.0/24}
vns:
  - {vnid: 3001, name: RED1, service: l3, encap: vxlan,
     gateway: {mac: "02:00:00:00:fe:01", ips: ["192.168.1.1/24"]}}
  - {vnid: 3002, name: RED2, service: l3, encap: vxlan,
     gateway: {mac: "02:00:00:00:fe:02", ips: ["192.168.2.1/24"]}}
  - {vnid: 3003, name: RED3, service: l3, encap: gre,
     gateway: {mac: "02:00:00:00:fe:03", ips: ["192.168.3.1/24"]}}
  - {vnid: 4001, name: BLUE1, service: l2, encap: vxlan}
  - {vnid: 4002, name: BLUE2, service: l2, encap: vxlan}
  - {vnid: 4003, name: BLUE3, service: l2, encap: gre}
nves:
  - {name: nve1, dpid: "0000000000000001", vtep_ip: 10.99.0.1}
  - {name: nve2, dpid: "0000000000000002", vtep_ip: 10.99.0.2}
tenant_systems:
  - name: ts1
    nve: nve1
    vms:
      - name: vm3
        vnics: [{mac: "%(l3)s", ip: 192.168.1.10/24, vn: RED1}]
      - name: vm2
        vnics:
          - {mac: "%(l2)s", ip: 172.16.1.10/24, vn: BLUE1, vlan: 10,
             port: vm2-t}
          - {mac: "02:00:00:00:40:02", ip: 172.16.2.10/24, vn: BLUE2,
             vlan: 20, port: vm2-t}
          - {mac: "02:00:00:00:40:03", ip: 172.16.3.10/24, vn: BLUE3,
             vlan: 30, port: vm2-t}
  - name: ts2
    nve: nve2
    vms:
""" % {'l3': L3_MAC, 'l2': L2_MAC} + ''.join(
    # The peers on nve2: r<n> in RED<n>, b<n> in BLUE<n>.
    '      - {name: %s%d, vnics: [{mac: "02:00:00:00:%d:%02d", '
    'ip: %s.%d.20/24, vn: %s%d}]}\n' % (kind, n, mac, n, net, n, vn, n)
    for kind, mac, net, vn in (('r', 31, '192.168', 'RED'),
                               ('b', 41, '172.16', 'BLUE'))
    for n in (1, 2, 3))

NVE1 = '0000000000000001'
RED = {1: 3001, 2: 3002, 3: 3003}
BLUE = {1: 4001, 2: 4002, 3: 4003}
VLAN = {1: 10, 2: 20, 3: 30}


def red_ip(n, host):
    return '192.168.%d.%d' % (n, host)


def blue_ip(n, host):
    return '172.16.%d.%d' % (n, host)


def register(ctl, *argv):
    """Run the console script's module, as a hypervisor agent would."""
    res = subprocess.run(
        [sys.executable, '-m', 'nvo3_ryu_app.cli.register', '--server',
         '127.0.0.1:%d' % ctl.rpc_port] + list(argv),
        capture_output=True, text=True, timeout=30, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert res.returncode == 0, (argv, res.stdout, res.stderr)
    return res.stdout


def rest(ctl, path):
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (ctl.rest_port,
                                                           path),
                                timeout=5) as resp:
        return json.loads(resp.read())


def wait_in_sync(ctl, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not rest(ctl, '/v1/sync')['in_sync']:
        assert time.monotonic() < deadline, ctl.log_tail()
        time.sleep(0.05)


def pings(tb, vm, dst, source=None, count=2):
    """True when ``vm`` gets an echo reply from ``dst`` (from ``source``:
    an address or an interface, ping -I)."""
    cmd = ['ping', '-n', '-q', '-c', str(count), '-i', '0.2', '-W', '1']
    if source:
        cmd += ['-I', source]
    res = procs.run_in(tb.vm(vm).pid, cmd + [dst], check=False, timeout=20)
    return res.returncode == 0


def test_one_vnic_three_bids_three_vns(testbed, controller, tmp_path):
    topo = tmp_path / 'bids.yaml'
    topo.write_text(TOPOLOGY)
    ctl = controller(config_file=str(topo))
    ctl.wait_listening(ctl.rpc_port)
    ctl.wait_listening(ctl.rest_port)
    tb = testbed(str(topo), of_port=ctl.of_port)
    assert tb.wait_connected(20)
    wait_in_sync(ctl)

    # The agent registers before the VMs send anything.
    for n in (1, 2, 3):
        out = register(ctl, 'register', '--nve', NVE1, '--port', 'vm3-0',
                       '--mac', L3_MAC, '--vnid', str(RED[n]),
                       '--ip', red_ip(n, 10), '--bid', str(n))
        assert 'BID %d' % n in out
        register(ctl, 'register', '--nve', NVE1, '--port', 'vm2-t',
                 '--mac', L2_MAC, '--vnid', str(BLUE[n]),
                 '--vlan', str(VLAN[n]), '--ip', blue_ip(n, 10),
                 '--bid', str(n))
    # vm3: the one vNIC gets its other two IPs; vm2: one MAC on all VLANs.
    for n in (2, 3):
        tb.vm_run('vm3', 'ip', 'addr', 'add', '%s/24' % red_ip(n, 10),
                  'dev', 'eth0')
    tb.taggers['vm2'].vsctl_batch([
        ['set', 'interface', 'eth0.%d' % VLAN[n], 'mac="%s"' % L2_MAC]
        for n in (2, 3)])
    wait_in_sync(ctl)

    entries = rest(ctl, '/v1/mappings?mac=%s' % L3_MAC)
    assert sorted((e['vnid'], e['ip'], e['bid']) for e in entries) == [
        (RED[n], red_ip(n, 10), n) for n in (1, 2, 3)]
    entries = rest(ctl, '/v1/mappings?mac=%s' % L2_MAC)
    assert sorted((e['vnid'], e['vlan'], e['bid']) for e in entries) == [
        (BLUE[n], VLAN[n], n) for n in (1, 2, 3)]

    # Registered entries are reachable first: the peers ping the vNIC.
    for n in (1, 2, 3):
        assert pings(tb, 'r%d' % n, red_ip(n, 10)), n
        assert pings(tb, 'b%d' % n, blue_ip(n, 10)), n
    # Each binding reaches its own VN's peer ...
    for n in (1, 2, 3):
        assert pings(tb, 'vm3', red_ip(n, 20)), n
        assert pings(tb, 'vm2', blue_ip(n, 20)), n
    # On the underlay: VN 2's source address travels in VN 2; VN 1's
    # source address towards VN 2's peer stays in VN 1 (flooded there as
    # unknown unicast) and never gets VN 2's key.
    cap = tb.start_capture('nve1', 'udp port 4789 or ip proto 47')
    assert pings(tb, 'vm3', red_ip(2, 20))
    assert not pings(tb, 'vm3', red_ip(2, 20), source=red_ip(1, 10), count=1)
    seen = set()
    for pkt in cap.stop():
        inner = pkt.first('ipv4', inner=True)
        if inner is not None and pkt.first('icmp', inner=True) is not None:
            seen.add((pkt.tunnel_key, inner.src, inner.dst))
    assert (RED[2], red_ip(2, 10), red_ip(2, 20)) in seen, seen
    assert (RED[1], red_ip(1, 10), red_ip(2, 20)) in seen, seen
    assert (RED[2], red_ip(1, 10), red_ip(2, 20)) not in seen, seen
    # ... and none of the others (a source address or VLAN of VN i
    # towards the peer of VN j).
    for i in (1, 2, 3):
        for j in (1, 2, 3):
            if i != j:
                assert not pings(tb, 'vm3', red_ip(j, 20),
                                 source=red_ip(i, 10), count=1), (i, j)
                assert not pings(tb, 'vm2', blue_ip(j, 20),
                                 source='eth0.%d' % VLAN[i], count=1), (i, j)

    # De-registering BID 2 removes exactly VN 2's reachability.
    out = register(ctl, 'deregister', '--nve', NVE1, '--mac', L3_MAC,
                   '--bid', '2')
    assert out.startswith('deregistered: %s IP %s, BID 2' % (
        L3_MAC, red_ip(2, 10)))
    register(ctl, 'deregister', '--nve', NVE1, '--mac', L2_MAC, '--bid', '2')
    wait_in_sync(ctl)
    assert not pings(tb, 'r2', red_ip(2, 10), count=1)
    assert not pings(tb, 'vm3', red_ip(2, 20), count=1)
    assert not pings(tb, 'b2', blue_ip(2, 10), count=1)
    assert not pings(tb, 'vm2', blue_ip(2, 20), count=1)
    for n in (1, 3):
        assert pings(tb, 'vm3', red_ip(n, 20)), n
        assert pings(tb, 'r%d' % n, red_ip(n, 10)), n
        assert pings(tb, 'vm2', blue_ip(n, 20)), n
        assert pings(tb, 'b%d' % n, blue_ip(n, 10)), n
    tb.stop()
    assert ctl.stop() == []

