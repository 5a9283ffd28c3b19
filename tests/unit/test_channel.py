"""The service and its per-NVE channels against simulated switches.

What app.py's shim relies on: a connecting NVE is dumped and gets only the
difference; flow changes leave in batches, each closed by a barrier, the
next one only after the barrier reply; the acknowledged sequence numbers
and sync status follow the replies; packet-outs leave after the flows they
need; audits report and repair; a meter the switch already has is taken
over; transaction ids are the channel's own; moves and attaches are timed
until every NVE they changed acknowledged.  "In sync" means the switch
acknowledged everything it must hold: a change it refused, or one that
could not be encoded, keeps it out of sync (``failed``) until a dump shows
what it holds; an NVE that leaves an echo, a barrier or its dump
unanswered is to be disconnected; packet-outs waiting for an NVE are
bounded.  The switches are fakeof's (they apply what they get with
OpenFlow semantics and answer dumps, barriers and echoes), the service is
the one the app runs.
"""

import pytest

from fakeof import SimulatedNVEs, assert_same_items
from nvo3_ryu_app.authority import commands as C
from nvo3_ryu_app.authority import packets
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.service import Service
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.southbound import ofwire
from nvo3_ryu_app.southbound.channel import (XID_FIRST, Barrier, EchoRequest,
                                             FlowChange, FlowStatsRequest,
                                             MeterConfigRequest, SendPacket)
from nvo3_ryu_app.storage.store import MemoryStore

PORTS = {'vxlan0': 10, 'p1': 1, 'p2': 2}
MAC1, MAC2 = '02:00:00:00:00:01', '02:00:00:00:00:02'


def fleet(**settings):
    """Two NVEs of VN 5001 with a bound port each, not connected yet.
    Without stamps unless asked (``stamp_interval``): these tests are about
    dumps (tests/unit/test_stamp.py is about stamps)."""
    settings.setdefault('stamp_interval', 0)
    service = Service(Settings(**settings), MemoryStore())
    service.execute(C.CreateVN(5001, 'blue'), 0.0)
    for dpid in (1, 2):
        service.execute(C.RegisterNVE(dpid, '10.0.0.%d' % dpid), 0.0)
        service.execute(C.BindPort(dpid, 'p1', vnid=5001), 0.0)
    return service, SimulatedNVEs(service)


def connect_all(nves, now=1.0):
    for dpid in (1, 2):
        nves.connect(dpid, PORTS, '02:aa:00:00:00:%02x' % dpid, now)


def frame_in(service, dpid, mac, ip, now, port='p1', ofport=1):
    data = packets.build_arp_request(mac, ip, '192.168.1.254')
    service.packet_in(dpid, P.SOURCE, ofport, port, {}, data, now)


def expected(service, dpid):
    return service.authority.planner.expected(dpid)


def test_a_connecting_nve_is_dumped_and_gets_only_the_difference():
    service, nves = fleet()
    connect_all(nves)
    nves.drain(2.0)
    want = expected(service, 1)
    # The NVE restarts its channel holding one stale flow of ours and
    # having lost one it should hold.
    switch = nves.switches[1]
    kept = sorted(switch.flows(), key=repr)
    lost = kept[0]
    stale = P.flow(P.L2_FORWARD, P.PRIO_HOST,
                   {'metadata': 5001, 'eth_dst': '02:00:00:00:99:99'}, [],
                   lost.cookie)
    switch._apply_one('delete', lost)
    switch._apply_one('add', stale)
    service.switch_disconnected(1, 3.0)
    before = len(nves.received[1])
    repairs = service.counters['sync_repairs']
    nves.connect(1, PORTS, '02:aa:00:00:00:01', 4.0)
    nves.drain(4.0)
    sent = [m for m in nves.received[1][before:] if isinstance(m, FlowChange)]
    assert sorted((m.op, m.item.key) for m in sent) == sorted(
        [('add', lost.key), ('delete', stale.key)])
    assert_same_items(switch.items(), want, 'NVE 1 after its resync')
    assert service.counters['sync_repairs'] - repairs == 2
    assert service.sync_status(1)['in_sync']


def test_changes_leave_in_batches_closed_by_barriers():
    service, nves = fleet(flow_batch=7)
    nves.connect(1, PORTS, '02:aa:00:00:00:01', 1.0)
    n_items = len(expected(service, 1))
    assert n_items > 14
    sends = service.flush(1.0)
    first = sends[1]
    assert [type(m) for m in first] == [FlowChange] * 7 + [Barrier]
    # Nothing more leaves before the barrier reply.
    nves.deliver(1, [m for m in first if isinstance(m, FlowChange)], 1.0)
    assert 1 not in service.flush(1.0)
    status = service.sync_status(1)
    assert (status['requested_seq'], status['applied_seq']) == (1, 0)
    assert not status['in_sync'] and status['pending'] > 0
    service.barrier_reply(1, first[-1].xid)
    assert service.sync_status(1)['applied_seq'] == 1
    nves.drain(1.0)
    status = service.sync_status(1)
    batches = -(-n_items // 7)
    assert status == {'connected': True, 'synced': True, 'in_sync': True,
                      'requested_seq': batches, 'applied_seq': batches,
                      'pending': 0, 'failed': 0, 'verified': True,
                      'stamped': False}
    assert_same_items(nves.switches[1].items(), expected(service, 1),
                      'NVE 1 after its batches')


def test_a_stray_barrier_reply_changes_nothing():
    service, nves = fleet()
    nves.connect(1, PORTS, '02:aa:00:00:00:01', 1.0)
    barrier = service.flush(1.0)[1][-1]
    service.barrier_reply(1, barrier.xid + 1)
    assert service.sync_status(1)['applied_seq'] == 0
    service.barrier_reply(1, barrier.xid)
    assert service.sync_status(1)['applied_seq'] == 1


def test_transaction_ids_are_the_channels_own():
    service, nves = fleet(flow_batch=5)
    connect_all(nves)
    nves.drain(1.0)
    for dpid in (1, 2):
        xids = [m.xid for m in nves.received[dpid]]
        assert len(set(xids)) == len(xids) > 10
        assert min(xids) >= XID_FIRST and max(xids) <= 0xFFFFFFFF


def test_a_reinjected_frame_leaves_after_the_flows_it_needs():
    service, nves = fleet()
    connect_all(nves)
    nves.drain(1.0)
    frame_in(service, 1, MAC1, '192.168.1.1', 2.0)
    service.sync()
    msgs = service.flush(2.0)[1]
    kinds = [type(m) for m in msgs]
    assert kinds[-2:] == [Barrier, SendPacket]
    assert set(kinds[:-2]) == {FlowChange}
    assert (msgs[-1].packet.in_port, msgs[-1].packet.actions) == (
        1, [('output', 'TABLE')])


def test_a_frame_waits_while_its_flows_are_still_queued():
    service, nves = fleet(flow_batch=3)
    connect_all(nves)
    nves.drain(1.0)
    frame_in(service, 1, MAC1, '192.168.1.1', 2.0)
    first = service.flush(2.0)[1]
    assert SendPacket not in [type(m) for m in first]
    nves.deliver(1, first, 2.0)
    nves.drain(2.0)
    out, = [m for m in nves.received[1] if isinstance(m, SendPacket)]
    # It left after the last flow change the learning produced.
    received = nves.received[1]
    assert received.index(out) > max(
        i for i, m in enumerate(received) if isinstance(m, FlowChange))


def test_an_audit_reports_and_repairs_what_the_switch_lost():
    service, nves = fleet()
    connect_all(nves)
    frame_in(service, 1, MAC1, '192.168.1.1', 2.0)
    nves.drain(2.0)
    switch = nves.switches[2]
    lost = next(f for f in switch.flows() if ('eth_dst', MAC1) in f.match)
    switch._apply_one('delete', lost)
    report = {}
    msgs = service.start_audit(2, report.update)
    nves.deliver(2, msgs, 3.0)
    assert report['missing'] == [repr(lost.key)]
    assert (report['stale'], report['different']) == ([], [])
    assert report['desired_equals_recompute'] is True
    assert report['installed'] == report['desired'] - 1
    assert (service.counters['audits'], service.counters['audit_repairs']) \
        == (1, 1)
    repair, = service.event_log.since(0, kinds={'audit-repair'})
    assert (repair['nve'], repair['missing']) == ('0000000000000002', 1)
    nves.drain(3.0)
    assert_same_items(switch.items(), expected(service, 2),
                      'NVE 2 after the audit')


def test_an_audit_waits_for_an_open_batch_and_needs_a_channel():
    service, nves = fleet()
    nves.connect(1, PORTS, '02:aa:00:00:00:01', 1.0)
    assert service.flush(1.0)[1]            # a batch, barrier open
    assert service.start_audit(1) is None
    assert service.start_audit(2) is None   # not connected


def test_audits_take_the_most_overdue_nve_once_per_interval():
    service, nves = fleet(audit_interval=30.0)
    connect_all(nves)
    nves.drain(1.0)

    def audit(now):
        due = service.audit_next(now)
        if due is None:
            return None
        nves.deliver(due[0], due[1], now)
        return due[0]
    assert audit(40.0) == 1            # never audited: due
    assert audit(40.0) == 2
    assert audit(50.0) is None         # both done 10 s ago
    assert audit(70.0) == 1
    assert service.counters['audits'] == 3


def test_a_meter_the_switch_already_has_is_taken_over():
    service, nves = fleet()
    nves.connect(1, PORTS, '02:aa:00:00:00:01', 1.0)
    msgs = service.flush(1.0)[1]
    meter_add = next(m for m in msgs if isinstance(m, FlowChange)
                     and isinstance(m.item, P.Meter))
    answer = service.error(1, meter_add.xid, 12, 1, meter_exists=True)
    assert [(type(m), m.op, m.item) for m in answer] == [
        (FlowChange, 'modify', meter_add.item)]
    assert answer[0].xid >= XID_FIRST
    assert service.counters['of_errors'] == 0
    # Any other error is counted and left to the next audit.
    assert service.error(1, msgs[0].xid, 5, 0) == []
    assert service.counters['of_errors'] == 1


def attached():
    """Both NVEs in sync, then a tenant system attaches at NVE 1 at 10.0;
    returns the service, the switches, what the drain at 10.2 sends and
    the attach event."""
    service, nves = fleet()
    connect_all(nves)
    nves.drain(1.0)
    frame_in(service, 1, MAC1, '192.168.1.1', 10.0)
    sends = service.flush(10.2)
    attach, = service.event_log.since(0, kinds={'attach'})
    return service, nves, sends, attach


def test_an_attach_is_timed_until_every_member_acknowledged():
    service, nves, sends, attach = attached()
    assert set(sends) == {1, 2}
    nves.deliver(1, sends[1], 10.3)
    service.flush(10.3)
    assert 'convergence_ms' not in attach       # NVE 2 has not answered
    nves.deliver(2, sends[2], 10.5)
    service.flush(10.5)
    assert attach['convergence_ms'] == 500.0    # from its packet-in


def test_a_move_is_timed_and_a_lost_nve_does_not_hold_it_up():
    moves = []
    service, nves = fleet(move_probe_timeout=0.0)
    service.convergence.observe_move = moves.append
    connect_all(nves)
    frame_in(service, 1, MAC1, '192.168.1.1', 1.0)
    nves.drain(1.0)
    service.port_changed(1, 'p1', None, 2.0)     # its old port went away
    frame_in(service, 2, MAC1, '192.168.1.1', 2.1)
    sends = service.flush(2.2)
    move, = service.event_log.since(0, kinds={'move'})
    assert set(sends) == {1, 2}
    nves.deliver(2, sends[2], 2.3)
    service.flush(2.3)
    assert 'convergence_ms' not in move
    service.switch_disconnected(1, 2.4)          # NVE 1 will never answer
    service.flush(2.4)
    # From when its flows were computed (the claim at 2.1).
    assert move['convergence_ms'] == 300.0
    assert moves == [pytest.approx(0.3)]
    assert service.authority.convergence_ms[-1] == move['convergence_ms']


# --- in sync means the switch took every flow ----------------------------------

class Log:
    """What the channels log (the app gives a bounded PeerLog)."""

    def __init__(self):
        self.lines = []

    def error(self, msg, *args):
        self.lines.append(msg % args)

    warning = info = error


def flow_changes(msgs):
    return [m for m in msgs if isinstance(m, FlowChange)]


def test_a_refused_flow_keeps_the_nve_out_of_sync_until_an_audit():
    service, nves = fleet()
    service.log = log = Log()
    nves.connect(1, PORTS, '02:aa:00:00:00:01', 1.0)
    msgs = service.flush(1.0)[1]
    refused = next(m for m in flow_changes(msgs)
                   if isinstance(m.item, P.Flow))
    # The switch refuses one flow-mod and takes the rest.
    assert service.error(1, refused.xid, 5, 0) == []
    nves.deliver(1, [m for m in msgs if m is not refused], 1.0)
    nves.drain(1.0)
    status = service.sync_status(1)
    assert status['applied_seq'] == status['requested_seq']
    assert (status['failed'], status['in_sync']) == (1, False)
    assert service.counters['flow_mods_refused'] == 1
    assert service.counters['of_errors'] == 1
    assert ['NVE 0000000000000001: OFPErrorMsg type=5 code=0' in line
            for line in log.lines] == [True]
    # The audit's dump shows it missing, sends it again: in sync.
    nves.deliver(1, service.start_audit(1), 2.0)
    nves.drain(2.0)
    assert service.sync_status(1)['failed'] == 0
    assert service.sync_status(1)['in_sync']
    assert_same_items(nves.switches[1].items(), expected(service, 1),
                      'NVE 1 after the audit')


def test_a_refused_flow_does_not_hold_up_other_nves_or_convergence():
    service, nves, sends, attach = attached()
    service.error(2, flow_changes(sends[2])[0].xid, 5, 0)
    nves.deliver(1, sends[1], 10.3)
    nves.deliver(2, sends[2], 10.4)
    service.flush(10.5)
    # Answered by both: timed, although NVE 2 refused a flow.
    assert attach['convergence_ms'] == 500.0
    assert service.sync_status(1)['in_sync']
    assert not service.sync_status(2)['in_sync']


def test_an_unencodable_flow_is_left_out_and_keeps_the_nve_out_of_sync():
    """One change that cannot be encoded (a value from outside the
    validated entries) does not take its batch: the shim encodes each on
    its own (ofwire.encode_all) and reports the one that failed."""
    service, nves = fleet()
    service.log = log = Log()
    connect_all(nves)
    nves.drain(1.0)
    frame_in(service, 2, MAC1, '192.168.1.1', 2.0)
    service.sync()
    msgs = service.flush(2.0)[1]
    changes = flow_changes(msgs)
    # NVE 1's route to the new tenant system, its VTEP with a zone index.
    field = 'tun_ipv4_dst'
    victim = next(m for m in changes if isinstance(m.item, P.Flow) and any(
        a[:2] == ('set', field) for a in m.item.actions))
    bad = victim._replace(item=victim.item._replace(actions=tuple(
        ('set', field, 'fe80::1%eth0') if a[:2] == ('set', field) else a
        for a in victim.item.actions)))
    sent = [bad if m is victim else m for m in msgs]
    mods = service.counters['flow_mods']
    data, failed = ofwire.encode_all(sent)
    assert [xid for xid, _ in failed] == [victim.xid]
    service.unencodable(1, failed)
    channel = service.channels[1]
    assert sorted(channel.inflight) == sorted(
        m.xid for m in changes if m is not victim)
    assert service.counters['flow_mods'] == mods - 1
    assert service.counters['flow_mods_unencodable'] == 1
    assert 'fe80::1%eth0' in log.lines[0]
    # The rest of the batch went, and its barrier.
    assert data == b''.join(ofwire.encode(m) for m in msgs
                            if m is not victim)
    nves.deliver(1, [m for m in msgs if m is not victim], 2.0)
    nves.drain(2.0)
    status = service.sync_status(1)
    assert (status['failed'], status['in_sync']) == (1, False)
    nves.deliver(1, service.start_audit(1), 3.0)
    nves.drain(3.0)
    assert service.sync_status(1)['in_sync']
    assert_same_items(nves.switches[1].items(), expected(service, 1),
                      'NVE 1 after the audit')


# --- liveness ---------------------------------------------------------------------

def live_fleet():
    service, nves = fleet(nve_echo_interval=5.0, nve_reply_timeout=30.0)
    service.log = Log()
    connect_all(nves)
    nves.drain(1.0)
    return service, nves


def test_echoes_go_out_every_interval_and_answered_ones_keep_the_nve():
    service, nves = live_fleet()
    assert service.check_liveness(100.0) == ({}, [])
    for now in (105.0, 110.0, 150.0, 200.0):
        sends, overdue = service.check_liveness(now)
        assert overdue == []
        assert sorted(sends) == [1, 2]
        for dpid, msgs in sends.items():
            echo, = msgs
            assert isinstance(echo, EchoRequest) and echo.xid >= XID_FIRST
            nves.deliver(dpid, msgs, now)
    # An NVE whose send queue is full gets no echo now (none is waited on).
    sends, _ = service.check_liveness(206.0, busy={1})
    assert sorted(sends) == [2]
    assert service.counters['nve_reply_timeouts'] == 0


@pytest.mark.parametrize('mute', ['echo', 'barrier'])
def test_an_nve_that_stops_answering_is_to_be_disconnected(mute):
    service, nves = live_fleet()
    service.check_liveness(100.0)
    if mute == 'barrier':
        frame_in(service, 1, MAC1, '192.168.1.1', 100.0)
        service.sync()
        sends = service.flush(100.0)      # NVE 1 never answers its batch
        nves.deliver(2, sends[2], 100.0)
    for now in range(101, 131):
        sends, overdue = service.check_liveness(float(now))
        assert overdue == []
        nves.deliver(2, sends.get(2, []), float(now))   # NVE 2 answers
    sends, overdue = service.check_liveness(136.0)
    assert overdue == [1]
    assert service.counters['nve_reply_timeouts'] == 1
    assert service.log.lines == [
        'NVE 0000000000000001 did not answer its %s for %s s: '
        'disconnecting it' % (mute, '35' if mute == 'barrier' else '31')]
    # Said once; the shim disconnects it, and it is forgotten then.
    assert service.check_liveness(140.0)[1] == []
    service.switch_disconnected(1, 140.0)
    assert service.counters['nve_reply_timeouts'] == 1


def test_a_dump_is_waited_on_from_its_last_part():
    service, nves = fleet(nve_echo_interval=0.0, nve_reply_timeout=30.0)
    switch_msgs = service.switch_connected(1, PORTS, '02:aa:00:00:00:01',
                                           1.0)
    assert [type(m) for m in switch_msgs] == [FlowStatsRequest,
                                              MeterConfigRequest]
    assert service.check_liveness(100.0) == ({}, [])
    service.flow_stats(1, [], True, 120.0)        # a part, more to come
    assert service.check_liveness(125.0) == ({}, [])
    assert service.check_liveness(150.0) == ({}, [])   # 25 s since it
    assert service.check_liveness(156.0)[1] == [1]
    assert service.counters['nve_reply_timeouts'] == 1


def test_no_liveness_with_zero_settings():
    service, nves = fleet(nve_echo_interval=0.0, nve_reply_timeout=0.0)
    service.switch_connected(1, PORTS, '02:aa:00:00:00:01', 1.0)
    assert service.check_liveness(0.0) == ({}, [])
    assert service.check_liveness(1e6) == ({}, [])


# --- packet-outs waiting for an NVE are bounded -----------------------------------

def test_packet_outs_waiting_for_an_undumped_nve_are_bounded():
    service, nves = fleet(nve_max_queued_packets=3)
    nves.connect(2, PORTS, '02:aa:00:00:00:02', 1.0)
    dump = service.switch_connected(1, PORTS, '02:aa:00:00:00:01', 1.0)
    nves.switches.setdefault(1, nves.switches[2].__class__(1))
    # NVE 1 does not answer its dump: its reinjections wait, 3 at most.
    for i in range(5):
        frame_in(service, 1, '02:00:00:00:01:%02x' % i, '192.168.1.%d' % (
            10 + i), 2.0)
    service.sync()
    assert SendPacket not in [type(m) for m in service.flush(2.0).get(1, [])]
    assert service.counters['packet_outs_dropped'] == 2
    nves.deliver(1, dump, 3.0)          # the dump is answered at last
    nves.drain(3.0)
    assert len([1 for dpid, _ in nves.packet_outs if dpid == 1]) == 3
    assert service.sync_status(1)['in_sync']


def test_after_a_move_the_smallest_batches_leave_first():
    # A remote member needs one route changed; it must not wait behind
    # the dozen flows the NVEs the tenant system left and joined get.
    service = Service(Settings(move_probe_timeout=0.0), MemoryStore())
    service.execute(C.CreateVN(5001, 'blue'), 0.0)
    for dpid in (1, 2, 3):
        service.execute(C.RegisterNVE(dpid, '10.0.0.%d' % dpid), 0.0)
        service.execute(C.BindPort(dpid, 'p1', vnid=5001), 0.0)
    nves = SimulatedNVEs(service)
    for dpid in (1, 2, 3):
        nves.connect(dpid, PORTS, '02:aa:00:00:00:%02x' % dpid, 1.0)
    frame_in(service, 1, MAC1, '192.168.1.1', 1.0)
    nves.drain(1.0)
    service.port_changed(1, 'p1', None, 2.0)     # its old port went away
    frame_in(service, 2, MAC1, '192.168.1.1', 2.1)
    sends = service.flush(2.2)
    sizes = [len(msgs) for msgs in sends.values()]
    assert set(sends) == {1, 2, 3} and sizes == sorted(sizes)
    assert list(sends)[0] == 3 and sizes[0] < sizes[1]
