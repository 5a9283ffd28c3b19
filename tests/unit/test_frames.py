"""parse_frame's struct reading of untagged ARP frames (the frame most
packet-ins carry) gives what os-ken's packet library gives, refusals
included, for any ARP frame: requests, gratuitous ARPs, probes from
0.0.0.0, senders that lie about their MAC, multicast sources, trailing
bytes, frames cut short."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nvo3_ryu_app.authority import packets

MACS = st.one_of(st.binary(min_size=6, max_size=6),
                 st.sampled_from([b'\x02' * 6, b'\x00' * 6, b'\x01' * 6,
                                  b'\xff' * 6, b'\x02\x00\x00\x00\x00\x05']))
IPS = st.one_of(st.binary(min_size=4, max_size=4),
                st.sampled_from([b'\x00' * 4, b'\x0a\x00\x00\x01']))


@st.composite
def arp_frames(draw):
    src = draw(MACS)
    sender = src if draw(st.booleans()) else draw(MACS)
    sender_ip = draw(IPS)
    target_ip = sender_ip if draw(st.booleans()) else draw(IPS)
    frame = draw(MACS) + src + b'\x08\x06' + struct.pack(
        '!HHBBH', 1, 0x0800, 6, 4, draw(st.sampled_from([1, 2, 7]))) + \
        sender + sender_ip + draw(MACS) + target_ip + \
        draw(st.binary(max_size=20))
    if draw(st.booleans()):
        frame = frame[:draw(st.integers(14, len(frame)))]
    return frame


def outcome(data):
    try:
        return packets.parse_frame(data)
    except packets.MalformedFrame as exc:
        return 'refused: %s' % exc


@given(arp_frames())
@settings(max_examples=500, deadline=None, derandomize=True)
def test_plain_arp_reads_as_os_ken_reads_it(data):
    fast = outcome(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(packets, '_plain_arp', lambda _data: None)
        assert fast == outcome(data)


def test_only_untagged_arp_takes_the_struct_path():
    arp = bytes(12) + b'\x08\x06' + bytes(28)
    assert packets._plain_arp(arp[:41]) is None
    assert packets._plain_arp(bytes(12) + b'\x81\x00' + bytes(32)) is None
    assert packets._plain_arp(bytes(12) + b'\x08\x00' + bytes(28)) is None
    frame = packets._plain_arp(b'\xff' * 6 + b'\x02' * 6 + b'\x08\x06' +
                               bytes(8) + b'\x02' * 6 + b'\x0a\x00\x00\x05' +
                               bytes(6) + b'\x0a\x00\x00\x01')
    assert (frame.src_mac, frame.dst_mac, frame.ip, frame.how) == (
        '02:02:02:02:02:02', 'ff:ff:ff:ff:ff:ff', '10.0.0.5', 'arp')
