"""ofguard: what a switch may make os-ken parse; a switch that sends nonsense
is dropped, and what it makes us log stays bounded.

Valid messages are built the way a switch answers the app: flow stats
replies holding every kind of flow the pipeline installs (the flow-mod
bytes ofwire.py sends, as a dump returns them), meter configurations, port
lists, packet-ins, HELLOs.  They pass and parse back to the same flows.
Then the messages are damaged at random: whatever the guard lets through,
os-ken's parser finishes (within a second), and whatever it raises, the
guard turns into a rejection; nothing hangs and the guard never raises.
"""

import signal
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from os_ken.controller.handler import (DEAD_DISPATCHER, HANDSHAKE_DISPATCHER,
                                       MAIN_DISPATCHER)
from os_ken.ofproto import ofproto_parser, ofproto_protocol
from os_ken.ofproto import ofproto_v1_3 as ofp

from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.southbound import ofguard, ofparse, ofwire
from test_ofwire import FLOWS

HDR = struct.Struct('!BBHI')
STATS0 = struct.Struct('!HBxIIHHHH4xQQQ')


def message(mtype, body, version=4, xid=1):
    return HDR.pack(version, mtype, 8 + len(body), xid) + body


def flow_entry(flow):
    """A flow-stats entry of ``flow``: its match and instructions are the
    bytes of the flow-mod that installed it."""
    mod = ofwire.flow_mod('add', flow, 1)
    rest = mod[48:]
    return STATS0.pack(48 + len(rest), flow.table, 1, 2, flow.priority, 0,
                       0, 0, flow.cookie, 7, 700) + rest


def multipart(mp_type, entries, flags=0):
    return message(ofp.OFPT_MULTIPART_REPLY,
                   struct.pack('!HH4x', mp_type, flags) + b''.join(entries))


def meter_entry(meter_id, rate, burst):
    band = struct.pack('!HHII4x', ofp.OFPMBT_DROP, 16, rate, burst)
    return struct.pack('!HHI', 8 + len(band),
                       ofp.OFPMF_PKTPS | ofp.OFPMF_BURST, meter_id) + band


def port_entry(no, name):
    return struct.pack('!I4x6s2x16sIIIIIIII', no, b'\x02' * 6,
                       name.encode(), 0, 4, 0, 0, 0, 0, 10, 10)


def packet_in(data=b'\x02' * 60):
    oxm = struct.pack('!IIIQ', 0x80000004, 7, 0x80000408, 5001)
    match = struct.pack('!HH', 1, 4 + len(oxm)) + oxm
    match += bytes(-len(match) % 8)
    return message(ofp.OFPT_PACKET_IN, struct.pack(
        '!IHBBQ', ofp.OFP_NO_BUFFER, len(data), 0, 1, 0) + match +
        b'\x00\x00' + data)


def hello(versions=(4,), version=4):
    bitmap = sum(1 << v for v in versions)
    return message(ofp.OFPT_HELLO, struct.pack('!HHI', 1, 8, bitmap),
                   version=version)


FLOW_REPLY = multipart(ofp.OFPMP_FLOW, [flow_entry(f) for f in FLOWS[:40]])
VALID = [
    hello(), hello((1, 4, 6), version=6), message(ofp.OFPT_HELLO, b''),
    message(ofp.OFPT_ECHO_REQUEST, b'abc'), message(ofp.OFPT_BARRIER_REPLY,
                                                     b''),
    message(ofp.OFPT_FEATURES_REPLY, struct.pack('!QIBB2xII', 1, 0, 254, 0,
                                                 0x4f, 0)),
    message(ofp.OFPT_ERROR, struct.pack('!HH', 1, 1) + bytes(64)),
    message(ofp.OFPT_ERROR, struct.pack('!HH', 0, 0) + b'incompatible'),
    message(ofp.OFPT_PORT_STATUS, struct.pack('!B7x', 0) +
            port_entry(3, 'p3')),
    packet_in(),
    multipart(ofp.OFPMP_PORT_DESC, [port_entry(1, 'p1'),
                                    port_entry(2, 'vxlan0')]),
    multipart(ofp.OFPMP_METER_CONFIG, [meter_entry(1, 100, 50),
                                       meter_entry(2, 50, 10)]),
    multipart(ofp.OFPMP_FLOW, []),
    FLOW_REPLY,
]
# The messages of the issue, and their kind.
HOSTILE = [
    # a zero-length flow-stats entry (hung os-ken for ever)
    struct.pack('!BBHI', 4, 19, 72, 1) + struct.pack('!HH4x', 1, 0) +
    bytes(56),
    # the same, meter configuration
    struct.pack('!BBHI', 4, 19, 72, 1) + struct.pack('!HH4x', 10, 0) +
    bytes(56),
    # an unknown message type with a 64 KB body (~325 KB of log)
    message(200, bytes(65000)),
    # a HELLO element of length 0 (an endless loop too)
    message(ofp.OFPT_HELLO, struct.pack('!HH4x', 1, 0)),
    # HELLO of version 0, a length below the header
    HDR.pack(0, 0, 8, 1), HDR.pack(4, 2, 3, 1)[:8],
    # a HELLO_FAILED error whose text is not ASCII (os-ken's handler
    # raised on it)
    message(ofp.OFPT_ERROR, struct.pack('!HH', 0, 0) + b'\xff\xfe'),
    # a message a controller sends, from a switch
    message(ofp.OFPT_FLOW_MOD, bytes(40)),
    # zero-length instruction, action and meter band
    multipart(ofp.OFPMP_FLOW, [flow_entry(FLOWS[0])[:56 + 8] + bytes(8)]),
]


class Hang(Exception):
    pass


def _alarm(*_):
    raise Hang()


def parse(buf, dp=None):
    """os-ken's own parser on ``buf``, stopped after a second."""
    dp = dp or ofproto_protocol.ProtocolDesc(4)
    version, mtype, length, xid = HDR.unpack_from(buf)
    old = signal.signal(signal.SIGALRM, _alarm)
    # Again every 50 ms: an alarm that lands in a gc callback is ignored.
    signal.setitimer(signal.ITIMER_REAL, 1.0, 0.05)
    try:
        return ofguard._parser_for(version)(dp, version, mtype, len(buf),
                                            xid, bytearray(buf))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize('buf', VALID, ids=lambda b: 'type%d' % b[1])
def test_what_switches_send_is_parsed(buf):
    assert ofguard.inspect(buf, 4, handshake=False) == (ofguard.PARSE, None)
    assert parse(buf) is not None


def test_a_dump_parses_back_to_the_flows_that_were_sent():
    msg = parse(FLOW_REPLY)
    back = [ofparse.flow_from_stats(stat) for stat in msg.body]
    assert back == list(FLOWS[:40])
    meters = parse(VALID[11])
    assert [ofparse.meter_from_config(m) for m in meters.body] == [
        P.Meter(1, 100, 50), P.Meter(2, 50, 10)]


@pytest.mark.parametrize('buf', HOSTILE, ids=lambda b: 'type%d' % b[1])
def test_the_hostile_messages_are_rejected(buf):
    verdict, reason = ofguard.inspect(buf, 4, handshake=False)
    assert verdict == ofguard.REJECT and reason


def test_before_hello_only_the_handshake_is_accepted():
    assert ofguard.inspect(FLOW_REPLY, 4, True)[0] == ofguard.REJECT
    assert ofguard.inspect(hello(), 4, True)[0] == ofguard.PARSE
    assert ofguard.inspect(VALID[3], 4, True)[0] == ofguard.PARSE
    # a version other than the negotiated one
    assert ofguard.inspect(message(ofp.OFPT_BARRIER_REPLY, b'', version=5),
                           4, False)[0] == ofguard.REJECT


def test_valid_messages_the_app_never_asks_for_are_ignored():
    for buf in (message(ofp.OFPT_FLOW_REMOVED, bytes(48)),
                message(ofp.OFPT_EXPERIMENTER, bytes(8)),
                multipart(ofp.OFPMP_DESC, [bytes(1056)])):
        assert ofguard.inspect(buf, 4, False)[0] == ofguard.IGNORE


def test_a_hello_of_an_unknown_version_negotiates_down():
    msg = parse(message(ofp.OFPT_HELLO, b'', version=9))
    assert msg.version == 9


@st.composite
def damaged(draw):
    buf = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(['u16', 'byte', 'cut', 'grow']))
        if how == 'u16' and len(buf) > 10:
            pos = draw(st.integers(8, len(buf) - 2))
            value = draw(st.sampled_from([0, 1, 4, 8, 16, 0xFFFF])
                         | st.integers(0, 0xFFFF))
            struct.pack_into('!H', buf, pos, value)
        elif how == 'byte':
            pos = draw(st.integers(8, max(8, len(buf) - 1)))
            if pos < len(buf):
                buf[pos] = draw(st.integers(0, 255))
        elif how == 'cut' and len(buf) > 9:
            del buf[draw(st.integers(8, len(buf) - 1)):]
        elif how == 'grow':
            buf += bytes(draw(st.integers(1, 64)))
    struct.pack_into('!H', buf, 2, len(buf))
    return bytes(buf)


@given(damaged())
@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_damaged_messages_never_hang_the_parser(buf):
    verdict, reason = ofguard.inspect(buf, 4, handshake=False)
    assert verdict in (ofguard.PARSE, ofguard.IGNORE, ofguard.REJECT)
    if verdict != ofguard.PARSE:
        return
    try:
        parse(buf)
    except Hang:
        pytest.fail('the guard let through a message os-ken loops on')
    except Exception:  # pylint: disable=broad-except
        pass          # guarded_msg turns this into a rejection


# --- the wrapper, with a stand-in for os-ken's Datapath ------------------------

class FakeSocket:
    def __init__(self):
        self.shut = False

    def shutdown(self, how):
        self.shut = True


class FakeDatapath(ofproto_protocol.ProtocolDesc):
    def __init__(self, state=MAIN_DISPATCHER):
        super().__init__(4)
        self.state = state
        self.socket = FakeSocket()
        self.address = ('127.0.0.1', 40000)

    def close(self):
        self.state = DEAD_DISPATCHER


@pytest.fixture
def guard():
    seen = {'reject': [], 'ignore': []}
    ofguard.install(lambda dp, t, r: seen['reject'].append((t, r)),
                    lambda dp, t, r: seen['ignore'].append((t, r)))
    yield seen
    ofguard.uninstall()


def call(dp, buf):
    version, mtype, length, xid = HDR.unpack_from(buf)
    return ofproto_parser.msg(dp, version, mtype, max(8, length), xid,
                              bytearray(buf))


def test_installed_guard_disconnects_a_switch_sending_nonsense(guard):
    dp = FakeDatapath(HANDSHAKE_DISPATCHER)
    assert call(dp, HOSTILE[0]) is None
    assert dp.state == DEAD_DISPATCHER and dp.socket.shut
    assert guard['reject'] == [(19, 'message type 19 before HELLO')]
    # once dropped, nothing more of it is parsed (or counted)
    assert call(dp, hello()) is None and len(guard['reject']) == 1


def test_installed_guard_parses_what_is_valid(guard):
    dp = FakeDatapath()
    msg = call(dp, FLOW_REPLY)
    assert len(msg.body) == 40 and dp.state == MAIN_DISPATCHER
    assert call(dp, message(ofp.OFPT_FLOW_REMOVED, bytes(48))) is None
    assert dp.state == MAIN_DISPATCHER and len(guard['ignore']) == 1
    assert guard['reject'] == []


def test_a_parse_failure_is_a_rejection_not_a_traceback(guard, caplog):
    # Lengths right, content wrong: an OXM of a known field with the wrong
    # size makes os-ken's parser raise.
    oxm = struct.pack('!IH', 0x80000002, 7)      # in_port with 2 bytes
    match = struct.pack('!HH', 1, 4 + len(oxm)) + oxm
    match += bytes(-len(match) % 8)
    buf = message(ofp.OFPT_PACKET_IN, struct.pack(
        '!IHBBQ', ofp.OFP_NO_BUFFER, 0, 0, 1, 0) + match + b'\x00\x00')
    assert ofguard.inspect(buf, 4, False)[0] == ofguard.PARSE
    dp = FakeDatapath()
    assert call(dp, buf) is None
    assert dp.state == DEAD_DISPATCHER
    assert 'os-ken could not parse it' in guard['reject'][0][1]
    assert 'Traceback' not in caplog.text


# --- reading in bulk: whole messages out of what the socket gave -------------

def test_a_read_splits_into_whole_messages_and_keeps_the_rest():
    msgs = [hello(), message(ofp.OFPT_BARRIER_REPLY, b'', xid=5), packet_in()]
    buf = b''.join(msgs)
    for cut in range(len(buf) + 1):
        found, used = ofguard.split_messages(buf[:cut])
        whole = [m for i, m in enumerate(msgs)
                 if sum(map(len, msgs[:i + 1])) <= cut]
        assert used == sum(map(len, whole))
        assert [buf[s:s + n] for _, _, n, _, s in found] == whole
    found, _ = ofguard.split_messages(buf)
    assert [(v, t, x) for v, t, _, x, _ in found] == [
        (4, ofp.OFPT_HELLO, 1), (4, ofp.OFPT_BARRIER_REPLY, 5),
        (4, ofp.OFPT_PACKET_IN, 1)]


def test_a_length_below_a_header_counts_as_a_header():
    # as os-ken's loop counts it; the guard then rejects the message
    bad = HDR.pack(4, ofp.OFPT_ECHO_REQUEST, 3, 1)
    found, used = ofguard.split_messages(bad + hello())
    assert used == len(bad) + 16 and found[0][2] == 8
    assert ofguard.inspect(bad[:found[0][2]], 4, False)[0] == ofguard.REJECT
