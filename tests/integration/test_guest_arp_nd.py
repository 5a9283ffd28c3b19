"""ARP, neighbour discovery and registration as real guests use them
(law 2), on real OVS with the app under osken-manager.

Every behaviour is driven by a real guest tool or the guest kernel itself
(arping 2.23, Thomas Habets': ``-U`` gratuitous ARP, ``-U -P`` as a reply,
``-0`` an address probe from 0.0.0.0, ``-t <mac>`` a unicast request; the
kernel's NUD probes of stale entries, DAD of ``ip -6 addr add`` and its
unsolicited NA with ``ndisc_notify``), and checked by what a guest sees:
answers counted by arping, neighbour-table states, DAD results.  The
hypervisor's part (QEMU's RARP announcement after a migration) is the frame
QEMU sends.  Waits poll guest or app state with a deadline; no bare sleeps.

One lab for the module; each test restores what it changed in the guests.
"""

import re
import subprocess
import sys
import time

import pytest

from nvo3_ryu_app.testbed import migration
from nvo3_ryu_app.testbed.builder import _require_root_and_tools
from nvo3_ryu_app.testbed.lab import Lab

from conftest import ROOT

pytestmark = pytest.mark.integration

NVE1, NVE2 = '0000000000000001', '0000000000000002'
BLUE, GREEN = 5001, 4001
BOGUS = '02:00:00:00:99:99'
MAC = {'a1': '02:00:00:00:50:01', 'a2': '02:00:00:00:50:02',
       'b1': '02:00:00:00:50:03', 'b2': '02:00:00:00:50:04',
       'mv': '02:00:00:00:50:05', 'r1': '02:00:00:00:41:01',
       'g1': '02:00:00:00:41:02'}
IP = {'a1': '192.168.50.1', 'a2': '192.168.50.2', 'b1': '192.168.50.3',
      'b2': '192.168.50.4', 'mv': '192.168.50.5', 'r1': '172.16.1.10',
      'g1': '172.16.1.20'}
V6 = {'a1': 'fd00::1', 'a2': 'fd00::2', 'b1': 'fd00::3', 'b2': 'fd00::4'}
TOPOLOGY = """
name: guests
underlay: {subnet: 10.99.0.0/24}
vns:
  - {vnid: %(blue)d, name: blue, service: l2, encap: vxlan}
  - {vnid: %(green)d, name: green, service: l2, encap: vxlan}
nves:
  - {name: nve1, dpid: "%(nve1)s", vtep_ip: 10.99.0.1}
  - {name: nve2, dpid: "%(nve2)s", vtep_ip: 10.99.0.2}
tenant_systems:
  - name: ts1
    nve: nve1
    vms:
      - {name: a1, vnics: [{mac: "%(a1)s", ip: 192.168.50.1/24, vn: blue}]}
      - {name: a2, vnics: [{mac: "%(a2)s", ip: 192.168.50.2/24, vn: blue}]}
      - {name: mv, vnics: [{mac: "%(mv)s", ip: 192.168.50.5/24, vn: blue}]}
      - {name: r1, vnics: [{mac: "%(r1)s", ip: 172.16.1.10/24, vn: green,
                            vlan: 10}]}
  - name: ts2
    nve: nve2
    vms:
      - {name: b1, vnics: [{mac: "%(b1)s", ip: 192.168.50.3/24, vn: blue}]}
      - {name: b2, vnics: [{mac: "%(b2)s", ip: 192.168.50.4/24, vn: blue}]}
      - {name: g1, vnics: [{mac: "%(g1)s", ip: 172.16.1.20/24, vn: green}]}
""" % dict(MAC, blue=BLUE, green=GREEN, nve1=NVE1, nve2=NVE2)
BLUE_VMS = ('a1', 'a2', 'b1', 'b2', 'mv')


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    _require_root_and_tools()
    path = tmp_path_factory.mktemp('guests') / 'guests.yaml'
    path.write_text(TOPOLOGY)
    lab = Lab(str(path)).start()
    try:
        lab.wait_sync()
        for vm in BLUE_VMS:
            # Probes and DAD at a pace a test can wait for: the kernel's
            # NUD waits delay_first_probe_time, then ucast_solicit unicast
            # probes retrans_time apart; DAD waits retrans_time per probe.
            # locktime 0: an ARP reply may replace an entry written a
            # moment ago (a gratuitous reply from arping -U -P has target
            # MAC ff:ff:ff:ff:ff:ff, which the kernel does not take for a
            # GARP, so without this only entries older than 1 s change).
            run(lab, vm, 'sysctl', '-q', '-w',
                'net.ipv4.neigh.eth0.locktime=0',
                'net.ipv4.neigh.eth0.delay_first_probe_time=1',
                'net.ipv4.neigh.eth0.retrans_time_ms=200',
                'net.ipv6.neigh.eth0.delay_first_probe_time=1',
                'net.ipv6.neigh.eth0.retrans_time_ms=200')
        got = lab.reach('a1', [IP[vm] for vm in BLUE_VMS if vm != 'a1'])
        assert all(got.values()), got            # the authority knows all
        lab.wait_sync()
        yield lab
    finally:
        problems = lab.stop()
    assert problems == [], problems


# -- helpers ------------------------------------------------------------------

def run(lab, vm, *cmd, check=True, timeout=30):
    return lab.tb.vm_run(vm, *cmd, check=check, timeout=timeout)


def arping(lab, vm, *args, ifname='eth0'):
    """Run arping in ``vm``; returns the MACs that answered, in order."""
    out = run(lab, vm, 'arping', '-i', ifname, *args, check=False)
    return re.findall(r'bytes from ([0-9a-f:]{17})', out.lower())


def neigh(lab, vm, ip):
    """(lladdr, state) of ``vm``'s neighbour entry for ``ip``, or None."""
    out = run(lab, vm, 'ip', 'neigh', 'show', ip, 'dev', 'eth0').split()
    if not out:
        return None
    lladdr = out[out.index('lladdr') + 1] if 'lladdr' in out else None
    return lladdr, out[-1]


def wait_neigh(lab, vm, ip, want, timeout=10.0):
    """Until ``vm``'s entry for ``ip`` satisfies ``want(lladdr, state)``."""
    last = []

    def ok():
        last[:] = [neigh(lab, vm, ip)]
        return last[0] is not None and want(*last[0])
    try:
        return lab.wait_for(ok, timeout=timeout,
                            what='neighbour %s on %s' % (ip, vm))
    except AssertionError as exc:
        raise AssertionError('%s: last %r' % (exc, last)) from None


def v6_state(lab, vm, ip):
    """The flags of ``vm``'s address ``ip``: 'tentative', 'dadfailed',
    'ok' (DAD done) or None (absent)."""
    out = run(lab, vm, 'ip', '-6', 'addr', 'show', 'dev', 'eth0')
    for line in out.splitlines():
        if ' %s/' % ip in line:
            for flag in ('dadfailed', 'tentative'):
                if flag in line:
                    return flag
            return 'ok'
    return None


def add_v6(lab, vm, ip, timeout=10.0):
    """``ip -6 addr add`` (DAD on); returns the address's state after DAD."""
    run(lab, vm, 'ip', '-6', 'addr', 'add', ip + '/64', 'dev', 'eth0')
    return lab.wait_for(lambda: v6_state(lab, vm, ip) in ('ok', 'dadfailed')
                        and v6_state(lab, vm, ip), timeout=timeout,
                        what='DAD of %s on %s' % (ip, vm))


def mapping_ips(lab, mac):
    return {e['ip'] for e in lab.get('/v1/mappings?mac=%s' % mac)}


# -- gratuitous ARP: the VN hears it ------------------------------------------

@pytest.mark.parametrize('reply', [False, True],
                         ids=['request (arping -U)', 'reply (arping -U -P)'])
def test_gratuitous_arp_reaches_the_vns_guests(lab, reply):
    """A peer's stale entry with a wrong MAC is corrected by a1's
    announcement, on its own NVE and across the underlay."""
    for peer in ('a2', 'b1'):
        run(lab, peer, 'ip', 'neigh', 'replace', IP['a1'], 'lladdr', BOGUS,
            'dev', 'eth0', 'nud', 'stale')
    flags = ['-U', '-P'] if reply else ['-U']
    arping(lab, 'a1', *flags, '-c', '1', '-S', IP['a1'], IP['a1'])
    for peer in ('a2', 'b1'):
        wait_neigh(lab, peer, IP['a1'], lambda mac, _s: mac == MAC['a1'])


def test_gratuitous_arp_teaches_a_new_address_and_reaches_the_vn(lab):
    new = '192.168.50.11'
    run(lab, 'b1', 'ip', 'neigh', 'replace', new, 'lladdr', BOGUS, 'dev',
        'eth0', 'nud', 'stale')
    run(lab, 'a1', 'ip', 'addr', 'add', new + '/24', 'dev', 'eth0')
    try:
        arping(lab, 'a1', '-U', '-c', '1', '-S', new, new)
        lab.wait_for(lambda: new in mapping_ips(lab, MAC['a1']),
                     what='the authority to learn %s' % new)
        wait_neigh(lab, 'b1', new, lambda mac, _s: mac == MAC['a1'])
    finally:
        run(lab, 'a1', 'ip', 'addr', 'del', new + '/24', 'dev', 'eth0')
        run(lab, 'b1', 'ip', 'neigh', 'flush', new)


# -- unicast requests reach their target ----------------------------------------

def test_unicast_arp_request_is_answered_by_the_target_only(lab):
    """arping -t <mac>: three answers from a live guest; none once it has
    stopped answering for the address (the NVE used to answer for it)."""
    cap = lab.tb.start_capture('nve1')
    got = arping(lab, 'a1', '-c', '3', '-w', '4', '-t', MAC['b1'], IP['b1'])
    assert got == [MAC['b1']] * 3, got
    frames = cap.stop()
    crossed = [p for p in frames if p.tunnel_key == BLUE
               and p.first('arp', inner=True) is not None
               and p.first('arp', inner=True).opcode == 1
               and p.first('arp', inner=True).dst_ip == IP['b1']]
    assert len(crossed) >= 3, [str(p) for p in frames]
    run(lab, 'b1', 'ip', 'addr', 'del', IP['b1'] + '/24', 'dev', 'eth0')
    try:
        assert arping(lab, 'a1', '-c', '3', '-w', '3', '-t', MAC['b1'],
                      IP['b1']) == []
        # The broadcast request is still answered by the NVE (law 2).
        assert arping(lab, 'a1', '-c', '1', '-w', '2', IP['b1']) == [
            MAC['b1']]
    finally:
        run(lab, 'b1', 'ip', 'addr', 'add', IP['b1'] + '/24', 'dev', 'eth0')


def test_kernel_nud_probe_reaches_the_target(lab):
    """a1's stale entry for b2 is probed by unicast: FAILED once b2 stops
    answering for its address, REACHABLE again when it answers."""
    def stale_then_send():
        run(lab, 'a1', 'ip', 'neigh', 'replace', IP['b2'], 'lladdr',
            MAC['b2'], 'dev', 'eth0', 'nud', 'stale')
        run(lab, 'a1', 'ping', '-n', '-q', '-c', '1', '-W', '1', IP['b2'],
            check=False)

    run(lab, 'b2', 'ip', 'addr', 'del', IP['b2'] + '/24', 'dev', 'eth0')
    try:
        stale_then_send()
        wait_neigh(lab, 'a1', IP['b2'], lambda _m, state: state == 'FAILED')
    finally:
        run(lab, 'b2', 'ip', 'addr', 'add', IP['b2'] + '/24', 'dev', 'eth0')
    stale_then_send()
    wait_neigh(lab, 'a1', IP['b2'], lambda mac, state: (
        mac, state) == (MAC['b2'], 'REACHABLE'))


# -- address probes (RFC 5227) --------------------------------------------------

def test_owners_address_probe_is_not_answered_anothers_is(lab):
    # a2 checks its own address (as after a migration): nobody else has it.
    assert arping(lab, 'a2', '-0', '-c', '2', '-w', '3', IP['a2']) == []
    # a1 probes for a2's address: in use, and it is told by whom.
    assert arping(lab, 'a1', '-0', '-c', '2', '-w', '3', IP['a2']) == [
        MAC['a2']] * 2
    # And a2 still has its address, reachable as before.
    assert lab.ping('b1', IP['a2'])


# -- IPv6 --------------------------------------------------------------------------

def test_owners_dad_passes_a_newcomers_fails(lab):
    for vm in ('a2', 'b1'):
        assert add_v6(lab, vm, V6[vm]) == 'ok'
    newcomer = V6['a2']
    try:
        assert run(lab, 'a2', 'ping', '-6', '-n', '-q', '-c', '1', '-W', '2',
                   V6['b1'], check=False) is not None
        lab.wait_for(lambda: V6['a2'] in mapping_ips(lab, MAC['a2']),
                     what='the authority to learn %s' % V6['a2'])
        # a2's address comes up again (interface restart, migration): its
        # own DAD solicitation is not answered for it.
        run(lab, 'a2', 'ip', '-6', 'addr', 'del', V6['a2'] + '/64', 'dev',
            'eth0')
        assert add_v6(lab, 'a2', V6['a2']) == 'ok'
        # a1 tries the same address: the authority answers its DAD.
        assert add_v6(lab, 'a1', newcomer) == 'dadfailed'
    finally:
        run(lab, 'a1', 'ip', '-6', 'addr', 'del', newcomer + '/64', 'dev',
            'eth0', check=False)


def test_unicast_ns_reaches_the_target(lab):
    """IPv6 NUD: a1's stale entry for b2 is probed by unicast NS."""
    for vm in ('a1', 'b2'):
        if v6_state(lab, vm, V6[vm]) is None:
            assert add_v6(lab, vm, V6[vm]) == 'ok'
    ping6 = ('ping', '-6', '-n', '-q', '-c', '1', '-W', '1', V6['b2'])
    run(lab, 'a1', *ping6, check=False)
    lab.wait_for(lambda: V6['b2'] in mapping_ips(lab, MAC['b2']),
                 what='the authority to learn %s' % V6['b2'])

    def stale_then_send():
        run(lab, 'a1', 'ip', '-6', 'neigh', 'replace', V6['b2'], 'lladdr',
            MAC['b2'], 'dev', 'eth0', 'nud', 'stale')
        run(lab, 'a1', *ping6, check=False)

    run(lab, 'b2', 'ip', '-6', 'addr', 'del', V6['b2'] + '/64', 'dev', 'eth0')
    try:
        stale_then_send()
        wait_neigh(lab, 'a1', V6['b2'], lambda _m, state: state == 'FAILED')
    finally:
        assert add_v6(lab, 'b2', V6['b2']) == 'ok'
    stale_then_send()
    wait_neigh(lab, 'a1', V6['b2'], lambda mac, state: (
        mac, state) == (MAC['b2'], 'REACHABLE'))


def test_unsolicited_na_reaches_the_vn(lab):
    """b1 brings an address up with ndisc_notify: its unsolicited NA
    corrects a1's stale entry across the underlay."""
    new = 'fd00::13'
    run(lab, 'a1', 'ip', '-6', 'neigh', 'replace', new, 'lladdr', BOGUS,
        'dev', 'eth0', 'nud', 'stale')
    run(lab, 'b1', 'sysctl', '-q', '-w', 'net.ipv6.conf.eth0.ndisc_notify=1')
    try:
        assert add_v6(lab, 'b1', new) == 'ok'
        wait_neigh(lab, 'a1', new, lambda mac, _s: mac == MAC['b1'])
    finally:
        run(lab, 'b1', 'sysctl', '-q', '-w',
            'net.ipv6.conf.eth0.ndisc_notify=0')
        run(lab, 'b1', 'ip', '-6', 'addr', 'del', new + '/64', 'dev', 'eth0',
            check=False)


# -- QEMU's RARP announcement of a migrated VM -------------------------------------

# The frame QEMU sends for a migrated VM (net/announce.c): broadcast RARP
# request, sender and target hardware address the VM's, five times.
QEMU_ANNOUNCE = r'''
import socket, sys, time
iface, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', ''))
frame = (b'\xff' * 6 + mac + b'\x80\x35' + bytes.fromhex('000108000604')
         + b'\x00\x03' + mac + b'\x00' * 4 + mac + b'\x00' * 4).ljust(60, b'\x00')
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for delay in (0.05, 0.15, 0.25, 0.35, 0.45):
    s.send(frame)
    time.sleep(delay)
'''


def test_qemu_rarp_announcement_moves_the_vm(lab):
    # The guest says nothing after the switch-over (no GARP, no IPv6 DAD or
    # MLD): the hypervisor's RARP frames are the only announcement.
    run(lab, 'mv', 'sysctl', '-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=1')
    info = migration.migrate(lab, 'mv', 'nve2', announce=False)
    run(lab, 'mv', '/usr/bin/python3', '-S', '-c', QEMU_ANNOUNCE, 'eth0',
        MAC['mv'])

    def moved():
        got = lab.get('/v1/mappings?mac=%s' % MAC['mv'])
        return got and all((e['nve'], e['port']) == (NVE2, info['port'])
                           for e in got)
    lab.wait_for(moved, what='the move of mv to nve2')
    moves = [e for e in lab.get('/v1/events?type=move&limit=1000')['events']
             if e['mac'] == MAC['mv']]
    assert [e['how'] for e in moves] == ['rarp'], moves
    lab.wait_sync()
    assert lab.ping('a1', IP['mv'], count=2)
    assert lab.ping('b1', IP['mv'], count=2)


# -- a vNIC registered in an L2 VN without an IP ------------------------------------

def register(lab, *argv):
    res = subprocess.run(
        [sys.executable, '-m', 'nvo3_ryu_app.cli.register', '--server',
         '127.0.0.1:%d' % lab.ctl.rpc_port] + list(argv),
        capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert res.returncode == 0, (argv, res.stdout, res.stderr)
    return res.stdout


def test_registered_l2_vnic_without_ip_carries_traffic(lab):
    register(lab, 'register', '--nve', NVE1, '--port', 'r1-0', '--mac',
             MAC['r1'], '--vnid', str(GREEN), '--vlan', '10', '--bid', '1')
    lab.wait_sync()
    assert lab.ping('g1', IP['r1'], count=2)
    assert lab.ping('r1', IP['g1'], count=2)
    entries = [e for e in lab.get('/v1/mappings?mac=%s' % MAC['r1'])
               if e['ip'] is not None and ':' not in e['ip']]
    assert [(e['vnid'], e['ip'], e['vlan'], e['bid'], e['source'])
            for e in entries] == [(GREEN, IP['r1'], 10, 1, 'registered')]
    # Anti-spoofing as for a learned tenant system: g1's address is g1's.
    refused = 'nvo3_packet_ins_dropped_total{reason=refused}'
    before = lab.metrics().get(refused, 0)
    arping(lab, 'r1', '-U', '-c', '1', '-S', IP['g1'], IP['g1'],
           ifname='eth0.10')
    lab.wait_for(lambda: lab.metrics().get(refused, 0) > before,
                 what='the spoofed announcement refused')
    conflicts = lab.get('/v1/events?type=conflict&limit=1000')['events']
    assert any(e.get('mac') == MAC['r1'] and e.get('ip') == IP['g1']
               for e in conflicts), conflicts
    assert IP['g1'] not in mapping_ips(lab, MAC['r1'])
    assert [e['mac'] for e in lab.get('/v1/mappings?ip=%s' % IP['g1'])] == [
        MAC['g1']]
    assert lab.ping('g1', IP['r1'])


def test_nves_hold_exactly_what_the_database_implies(lab):
    """The new flows (owners' announcements, unicast requests) read back
    from OVS as they were sent: no audit difference on any NVE."""
    lab.wait_sync()
    for dpid in (NVE1, NVE2):
        audit = lab.get('/v1/nves/%s/audit' % dpid)
        assert audit['desired_equals_recompute'], audit
        assert (audit['missing'], audit['stale'], audit['different']) == (
            [], [], []), audit
    announce = [f for f in lab.dump_flows('nve1')
                if 'table=1,' in f and 'priority=250' in f
                and MAC['a1'] in f
                and re.search(r'arp_tpa=%s(?![\d.])' % re.escape(IP['a1']), f)]
    assert len(announce) == 2, announce       # a1's GARP and own probe
