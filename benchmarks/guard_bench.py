"""What checking switch messages before os-ken parses them costs
(southbound/ofguard.py).

Every message a switch sends goes through ofguard.inspect (every length
os-ken's parsers trust, checked) before os-ken's parser.  The biggest
messages the app receives are flow dumps (on every connect and audit):
here one 64 KB flow-stats reply holding every kind of flow the pipeline
installs, as a switch returns them, plus a packet-in, a barrier reply and
a port-status.  Figures: microseconds per flow entry (or message) for the
check and for os-ken's parse, and the check's share; for the messages the
app takes without os-ken's parser (southbound/rawpath.py: packet-ins and
barrier replies), the decode that replaces it.

Usage::

    .venv/bin/python benchmarks/guard_bench.py

Prints a table and writes benchmarks/results/guard.json.
"""

import os
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from os_ken.ofproto import ofproto_protocol  # noqa: E402
from os_ken.ofproto import ofproto_v1_3 as ofp  # noqa: E402

from nvo3_ryu_app.authority import model  # noqa: E402
from nvo3_ryu_app.authority import pipeline as P  # noqa: E402
from nvo3_ryu_app.authority.planner import Planner  # noqa: E402
from nvo3_ryu_app.settings import Settings  # noqa: E402
from nvo3_ryu_app.southbound import ofguard, ofwire, rawpath  # noqa: E402
from nvo3_ryu_app.southbound.flowtable import FlowTables  # noqa: E402

import benchenv  # noqa: E402
import ofswitch_sim as S  # noqa: E402

STATS0 = struct.Struct('!HBxIIHHHH4xQQQ')


def sample_flows():
    """The flows of a small fleet: L2 and L3 VNs, VLAN bindings, IPv4 and
    IPv6 tenant systems on three NVEs."""
    db = model.MappingDB()
    db.create_vn(5001, 'blue')
    db.create_vn(5002, 'red', 'l3', gateway_mac='02:00:00:00:fe:01',
                 gateway_ips=['192.168.10.1/24', 'fd00:10::1/64'])
    ports = {'vxlan0': 10, 'gre0': 11, 'p1': 1, 'p2': 2}
    for dpid in (1, 2, 3):
        db.register_nve(dpid, '10.0.0.%d' % dpid)
        db.nve_connected(dpid, ports, '02:aa:00:00:00:0%d' % dpid, 0.0)
        db.bind_port(dpid, 'p1', vnid=5001)
        db.bind_port(dpid, 'p2', vlans={100: 5002})
        for i in range(20):
            db.learn(dpid, 'p1', None, '02:00:00:%02x:01:%02x' % (dpid, i),
                     '10.1.%d.%d' % (dpid, i + 1), 1.0)
            db.learn(dpid, 'p2', 100, '02:00:00:%02x:02:%02x' % (dpid, i),
                     'fd00:10::%x:%x' % (dpid, i + 5), 1.0)
    planner = Planner(db, Settings(), FlowTables())
    planner.plan()
    return [item for item in planner.tables[1].desired.values()
            if isinstance(item, P.Flow)]


def flow_reply(sample):
    """One multipart reply of at most 64 KB, as a switch splits a dump."""
    entries, size = [], 0
    for flow in sample * 10:
        rest = ofwire.flow_mod('add', flow, 1)[48:]
        entry = STATS0.pack(48 + len(rest), flow.table, 1, 2, flow.priority,
                            0, 0, 0, flow.cookie, 7, 700) + rest
        if size + len(entry) > S.MAX_REPLY:
            break
        entries.append(entry)
        size += len(entry)
    body = struct.pack('!HH4x', ofp.OFPMP_FLOW, 0) + b''.join(entries)
    return S.msg(S.MULTIPART_REPLY, 1, body), len(entries)


def best(func, rounds):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(buf, rounds):
    version, mtype, length, xid = struct.unpack_from('!BBHI', buf)
    parse = ofguard._parser_for(version)   # pylint: disable=protected-access
    datapath = ofproto_protocol.ProtocolDesc(version)
    verdict = ofguard.inspect(buf, version, False)[0]
    assert verdict == ofguard.PARSE, verdict
    check = best(lambda: ofguard.inspect(buf, version, False), rounds)
    full = best(lambda: parse(datapath, version, mtype, length, xid,
                              bytearray(buf)), rounds)
    raw = None
    if mtype in rawpath.DECODERS:
        raw = best(lambda: rawpath.decode(mtype, bytearray(buf)), rounds)
    return check, full, raw


def main():
    reply, entries = flow_reply(sample_flows())
    port = struct.pack('!I4x6s2x16sIIIIIIII', 1, b'\x02' * 6, b'p1', 0, 4,
                       0, 0, 0, 0, 10, 10)
    messages = {
        'flow_stats_entry': (reply, entries, 50),
        'packet_in': (S.packet_in(1, 1, 5001, S.arp_request(
            '02:00:00:00:00:01', '10.0.0.1', '10.0.0.2')), 1, 2000),
        'barrier_reply': (S.msg(S.BARRIER_REPLY, 1), 1, 2000),
        'port_status': (S.msg(S.PORT_STATUS, 1, struct.pack('!B7x', 0) +
                              port), 1, 2000),
    }
    results = {'flow_entries_per_reply': entries,
               'flow_reply_bytes': len(reply)}
    rows = []
    for name, (buf, count, rounds) in messages.items():
        check, full, raw = measure(buf, rounds)
        results['check_us_per_%s' % name] = round(check / count * 1e6, 2)
        results['oskens_parse_us_per_%s' % name] = round(
            full / count * 1e6, 2)
        results['check_share_pct_%s' % name] = round(100 * check / full, 1)
        if raw is not None:
            results['raw_decode_us_per_%s' % name] = round(
                raw / count * 1e6, 2)
        rows.append((name, check / count * 1e6, full / count * 1e6,
                     100 * check / full,
                     '%.2f' % (raw * 1e6) if raw is not None else '-'))
    print('%-18s %12s %16s %8s %16s' % ('per', 'check (us)',
                                        "os-ken parse (us)", 'check %',
                                        'raw decode (us)'))
    for name, check, full, share, raw in rows:
        print('%-18s %12.2f %16.2f %7.1f%% %16s' % (name, check, full, share,
                                                    raw))
    print('(one flow-stats reply: %d entries, %d bytes)' % (entries,
                                                           len(reply)))
    path = os.path.join(HERE, 'results', 'guard.json')
    benchenv.write_json(path, results)
    print('wrote %s' % path)


if __name__ == '__main__':
    main()
