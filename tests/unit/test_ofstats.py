"""ofstats: flow-stats replies read from their bytes give what os-ken gives.

The replies are built as a switch answers a dump (test_ofguard's helpers:
each entry holds the bytes of the flow-mod that installed the flow), with
every kind of flow the pipeline holds (test_ofwire's sample, the stamp
included).  Read by ofstats they must equal ofparse.flow_from_stats of
os-ken's parse, counters included, whether its memos are cold or warm.
Damaged replies (mutated at random, as in test_ofguard) are either read as
os-ken reads them or refused with Malformed, never another exception; the
installed guard drops and counts a switch whose reply is refused, and
os-ken dispatches what ofstats read as its own flow-stats reply.
"""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from os_ken.controller import ofp_event
from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER
from os_ken.ofproto import ofproto_v1_3 as ofp

from nvo3_ryu_app.southbound import ofguard, ofparse, ofstats
from test_ofguard import (FakeDatapath, call, flow_entry, message, multipart,
                          parse)
from test_ofwire import FLOWS

STATS0 = struct.Struct('!HBxIIHHHH4xQQQ')


def reply(flows, flags=0, counts=(7, 700)):
    entries = []
    for i, flow in enumerate(flows):
        entry = bytearray(flow_entry(flow))
        struct.pack_into('!QQ', entry, 32, counts[0] + i, counts[1] + i)
        entries.append(bytes(entry))
    return multipart(ofp.OFPMP_FLOW, entries, flags)


def oskens(buf):
    msg = parse(buf)
    return msg.flags, [(ofparse.flow_from_stats(s), s.packet_count,
                        s.byte_count) for s in msg.body]


def cold():
    ofstats._fields.clear()
    ofstats._instructions.clear()


def test_every_flow_reads_back_as_oskens_parse():
    assert len(FLOWS) > 100
    for start in range(0, len(FLOWS), 50):
        buf = reply(FLOWS[start:start + 50], flags=ofp.OFPMPF_REPLY_MORE)
        cold()
        got = ofstats.parse_reply(buf)
        assert got == oskens(buf)
        assert [f for f, _, _ in got[1]] == list(FLOWS[start:start + 50])
        assert got[1][0][1:] == (7, 700) and got[0] == ofp.OFPMPF_REPLY_MORE
        assert ofstats.parse_reply(buf) == got          # warm memos


def test_memos_are_bounded(monkeypatch):
    monkeypatch.setattr(ofstats, 'MEMO_LIMIT', 8)
    cold()
    buf = reply(FLOWS[:60])
    assert ofstats.parse_reply(buf) == oskens(buf)
    assert len(ofstats._fields) <= 8 and len(ofstats._instructions) <= 8


def test_an_empty_reply_has_no_flows():
    assert ofstats.parse_reply(reply([])) == (0, [])


@pytest.mark.parametrize('cut', [1, 9, 40, 47])
def test_a_reply_cut_short_is_malformed(cut):
    buf = bytearray(reply(FLOWS[:2]))
    del buf[-cut:]
    struct.pack_into('!H', buf, 2, len(buf))
    with pytest.raises(ofstats.Malformed):
        ofstats.parse_reply(bytes(buf))


def test_not_a_flow_reply_is_malformed():
    with pytest.raises(ofstats.Malformed):
        ofstats.parse_reply(multipart(ofp.OFPMP_PORT_DESC, []))
    with pytest.raises(ofstats.Malformed):
        ofstats.parse_reply(message(ofp.OFPT_BARRIER_REPLY, b''))


@st.composite
def damaged(draw):
    flows = draw(st.lists(st.sampled_from(FLOWS), min_size=1, max_size=4))
    buf = bytearray(reply(flows))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(['u16', 'byte', 'cut', 'grow']))
        if how == 'u16' and len(buf) > 18:
            pos = draw(st.integers(16, len(buf) - 2))
            struct.pack_into('!H', buf, pos, draw(
                st.sampled_from([0, 1, 4, 8, 16, 0xFFFF])
                | st.integers(0, 0xFFFF)))
        elif how == 'byte' and len(buf) > 16:
            pos = draw(st.integers(16, len(buf) - 1))
            buf[pos] = draw(st.integers(0, 255))
        elif how == 'cut' and len(buf) > 17:
            del buf[draw(st.integers(16, len(buf) - 1)):]
        elif how == 'grow':
            buf += bytes(draw(st.integers(1, 64)))
    struct.pack_into('!H', buf, 2, len(buf))
    return bytes(buf)


@given(damaged())
@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_damaged_replies_read_as_oskens_or_are_malformed(buf):
    if ofguard.inspect(buf, 4, handshake=False)[0] != ofguard.PARSE:
        return                    # the guard refuses it before anyone reads
    try:
        got = ofstats.parse_reply(buf)
    except ofstats.Malformed:
        return
    try:
        want = oskens(buf)
    except Exception:  # pylint: disable=broad-except
        return                    # os-ken would have refused it: so may we
    assert got == want


@pytest.fixture
def guard():
    seen = {'reject': [], 'ignore': []}
    ofguard.install(lambda dp, t, r: seen['reject'].append((t, r)),
                    lambda dp, t, r: seen['ignore'].append((t, r)),
                    fast=ofstats.fast_msg)
    yield seen
    ofguard.uninstall()


def test_the_guard_hands_os_ken_the_flows_read(guard):
    dp = FakeDatapath()
    buf = reply(FLOWS[:30], flags=ofp.OFPMPF_REPLY_MORE)
    msg = call(dp, buf)
    assert isinstance(ofp_event.ofp_msg_to_ev(msg),
                      ofp_event.EventOFPFlowStatsReply)
    assert msg.flows == oskens(buf)[1] and msg.body == []
    assert msg.flags == ofp.OFPMPF_REPLY_MORE and msg.xid == 1
    assert dp.state == MAIN_DISPATCHER and guard['reject'] == []
    # Anything else is os-ken's to parse.
    other = call(dp, message(ofp.OFPT_BARRIER_REPLY, b'', xid=9))
    assert type(other).__name__ == 'OFPBarrierReply' and other.xid == 9


def test_a_reply_ofstats_refuses_drops_the_switch(guard, caplog):
    # Lengths right (the guard passes it), content wrong: an OXM of a known
    # field with the wrong size.
    oxm = struct.pack('!IH', 0x80000002, 7)      # in_port with 2 bytes
    match = struct.pack('!HH', 1, 4 + len(oxm)) + oxm
    match += bytes(-len(match) % 8)
    entry = STATS0.pack(48 + len(match), 0, 0, 0, 10, 0, 0, 0, 1, 0, 0)
    buf = multipart(ofp.OFPMP_FLOW, [entry + match])
    assert ofguard.inspect(buf, 4, False)[0] == ofguard.PARSE
    dp = FakeDatapath()
    assert call(dp, buf) is None
    assert dp.state == DEAD_DISPATCHER
    assert len(guard['reject']) == 1
    assert 'Traceback' not in caplog.text


@given(st.binary(min_size=6, max_size=6), st.binary(min_size=4, max_size=4))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_addresses_read_directly_are_oskens_text(mac, ipv4):
    from nvo3_ryu_app.southbound import ofwire
    for name, raw in (('eth_dst', mac), ('arp_sha', mac), ('ipv4_src', ipv4),
                      ('tun_ipv4_dst', ipv4)):
        tlv = ofwire.FIELDS[name].header + raw
        n, value, mask, _ = ofp.oxm_parse(tlv, 0)
        assert ofstats._field(tlv) == ofp.oxm_to_user(n, value, mask)
