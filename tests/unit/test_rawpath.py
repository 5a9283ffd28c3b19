"""rawpath: packet-ins and barrier replies decoded from their bytes read the
same fields os-ken's parser reads; ofguard hands them to the app's sink
only after its checks, only from a session that is up, and a message the
decoder cannot read disconnects the switch like any nonsense.

Messages are built with os-ken's own match serializer (every field the
app reads, present or not, masked or not, beside fields it does not read)
and parsed by os-ken's own parser for the comparison; then damaged at
random.
"""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from os_ken.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER,
                                       MAIN_DISPATCHER)
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from nvo3_ryu_app.southbound import ofguard, rawpath
from test_ofguard import FakeDatapath, call, message, parse

U32 = st.integers(0, 0xFFFFFFFF)
U64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)


def packet_in(fields, data, total_len=None, table_id=1, cookie=0, xid=9):
    """An OFPT_PACKET_IN whose match os-ken serialized from ``fields``."""
    match = bytearray()
    parser.OFPMatch(**fields).serialize(match, 0)
    body = struct.pack('!IHBBQ', ofp.OFP_NO_BUFFER,
                       len(data) if total_len is None else total_len, 0,
                       table_id, cookie)
    return message(ofp.OFPT_PACKET_IN, body + bytes(match) + b'\x00\x00' +
                   data, xid=xid)


@st.composite
def packet_ins(draw):
    fields = {}
    if draw(st.booleans()):
        fields['in_port'] = draw(U32)
    if draw(st.booleans()):
        fields['reg6'] = draw(U32) if draw(st.booleans()) else \
            (draw(U32), draw(U32))
    if draw(st.booleans()):
        fields['metadata'] = draw(U64) if draw(st.booleans()) else \
            (draw(U64), draw(U64))
    if draw(st.booleans()):
        fields['tunnel_id'] = draw(U64)
    if draw(st.booleans()):
        fields['eth_type'] = draw(st.integers(0, 0xFFFF))
    data = draw(st.binary(max_size=200))
    total = draw(st.sampled_from([None, 0, len(data) // 2, len(data) + 10]))
    return packet_in(fields, data, total, draw(st.integers(0, 254)),
                     draw(U64), draw(U32))


def value(found, default):
    """os-ken gives a masked field as (value, mask): the app reads the
    value."""
    if found is None:
        return default
    return found[0] if isinstance(found, tuple) else found


def same_as_os_ken(decoded, msg):
    assert decoded == rawpath.PacketIn(
        msg.xid, msg.table_id, msg.cookie, msg.match.get('in_port'),
        value(msg.match.get('reg6'), 0), value(msg.match.get('metadata'), 0),
        bytes(msg.data))


@given(packet_ins())
@settings(max_examples=300, deadline=None, derandomize=True)
def test_a_packet_in_reads_as_os_ken_reads_it(buf):
    assert ofguard.inspect(buf, 4, handshake=False)[0] == ofguard.PARSE
    same_as_os_ken(rawpath.decode(ofp.OFPT_PACKET_IN, buf), parse(buf))


def test_the_fields_the_app_reads():
    buf = packet_in({'in_port': 3, 'reg6': 7, 'metadata': 5001,
                     'eth_type': 0x0806}, b'\x02' * 60, table_id=2,
                    cookie=0xABC, xid=77)
    assert rawpath.decode(ofp.OFPT_PACKET_IN, buf) == rawpath.PacketIn(
        77, 2, 0xABC, 3, 7, 5001, b'\x02' * 60)
    # absent fields: no port, 0 for the registers
    assert rawpath.decode(ofp.OFPT_PACKET_IN, packet_in({}, b'x'))[3:6] == \
        (None, 0, 0)


def test_a_barrier_reply_is_its_xid():
    buf = message(ofp.OFPT_BARRIER_REPLY, b'', xid=0x80000005)
    assert rawpath.decode(ofp.OFPT_BARRIER_REPLY, buf) == \
        rawpath.BarrierReply(parse(buf).xid)


def test_other_messages_are_left_to_os_ken():
    assert rawpath.decode(ofp.OFPT_ECHO_REPLY,
                          message(ofp.OFPT_ECHO_REPLY, b'')) is None


@st.composite
def damaged(draw):
    buf = bytearray(draw(packet_ins()))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(8, len(buf) - 1))
        buf[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del buf[draw(st.integers(9, len(buf))):]
    struct.pack_into('!H', buf, 2, len(buf))
    return bytes(buf)


@given(damaged())
@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_a_damaged_packet_in_is_refused_or_read_as_os_ken_reads_it(buf):
    if ofguard.inspect(buf, 4, handshake=False)[0] != ofguard.PARSE:
        return
    try:
        decoded = rawpath.decode(ofp.OFPT_PACKET_IN, buf)
    except (ValueError, struct.error):
        return                       # the guard disconnects the switch
    try:
        msg = parse(buf)
    except Exception:  # pylint: disable=broad-except
        # os-ken refuses a field the app does not read; what the app reads
        # is still whole.
        assert isinstance(decoded, rawpath.PacketIn)
        return
    same_as_os_ken(decoded, msg)


def test_a_field_the_app_reads_of_the_wrong_size_is_refused():
    oxm = struct.pack('!IH', 0x80000002, 7)      # in_port of 2 bytes
    match = struct.pack('!HH', 1, 4 + len(oxm)) + oxm
    match += bytes(-len(match) % 8)
    buf = message(ofp.OFPT_PACKET_IN, struct.pack(
        '!IHBBQ', ofp.OFP_NO_BUFFER, 0, 0, 1, 0) + match + b'\x00\x00')
    with pytest.raises(ValueError):
        rawpath.decode(ofp.OFPT_PACKET_IN, buf)


# --- through ofguard ------------------------------------------------------------

@pytest.fixture
def sink():
    seen = {'reject': [], 'raw': []}
    ofguard.install(lambda dp, t, r: seen['reject'].append((t, r)),
                    lambda dp, t, r: None,
                    lambda dp, decoded: seen['raw'].append((dp, decoded)))
    yield seen
    ofguard.uninstall()


def test_the_guard_hands_decoded_messages_to_the_sink(sink):
    dp = FakeDatapath()
    assert call(dp, packet_in({'in_port': 4}, b'frame')) is None
    assert call(dp, message(ofp.OFPT_BARRIER_REPLY, b'', xid=12)) is None
    assert [d for _, d in sink['raw']] == [
        rawpath.PacketIn(9, 1, 0, 4, 0, 0, b'frame'),
        rawpath.BarrierReply(12)]
    assert sink['raw'][0][0] is dp and sink['reject'] == []


def test_before_the_session_is_up_os_ken_parses_them(sink):
    dp = FakeDatapath(CONFIG_DISPATCHER)
    msg = call(dp, message(ofp.OFPT_BARRIER_REPLY, b'', xid=12))
    assert isinstance(msg, parser.OFPBarrierReply) and sink['raw'] == []


def test_what_the_decoder_cannot_read_disconnects_the_switch(sink):
    dp = FakeDatapath()
    # metadata of 2 bytes: every length adds up, the field cannot be read
    oxms = struct.pack('!II', 0x80000004, 1) + struct.pack('!IH', 0x80000402,
                                                         7)
    match = struct.pack('!HH', 1, 4 + len(oxms)) + oxms
    match += bytes(-len(match) % 8)
    buf = message(ofp.OFPT_PACKET_IN, struct.pack(
        '!IHBBQ', ofp.OFP_NO_BUFFER, 0, 0, 1, 0) + match + b'\x00\x00')
    assert ofguard.inspect(buf, 4, False)[0] == ofguard.PARSE
    assert call(dp, buf) is None
    assert dp.state == DEAD_DISPATCHER and sink['raw'] == []
    assert 'cannot decode it' in sink['reject'][0][1]


def test_a_decoder_may_leave_a_message_to_os_ken(sink, monkeypatch):
    monkeypatch.setitem(rawpath.DECODERS, ofp.OFPT_ECHO_REPLY,
                        lambda buf: None)
    msg = call(FakeDatapath(), message(ofp.OFPT_ECHO_REPLY, b'hi'))
    assert isinstance(msg, parser.OFPEchoReply) and sink['raw'] == []
