"""Switch messages the app consumes in bulk, decoded from their bytes.

Under load a switch's messages to the app are mostly packet-ins (a new
tenant system's first frame) and barrier replies (one per batch of flow
changes, ten per attachment in VNs of ten NVEs).  os-ken builds an object
per message (a packet-in's match field by field), wraps it in an event and
passes it through its queue (a semaphore, a greenlet switch, a handler
lookup per event): about as much CPU as the app's decisions about them.
The app reads a handful of fields of either, so they are decoded here with
``struct`` instead, and southbound/ofguard.py hands the result to the app
directly (after its checks: what comes here is a whole message whose every
length was verified).

:data:`DECODERS` is the table: message type -> ``decode(buf)``, returning
the decoded message (a small named tuple the app has a handler for), or
None to leave the message to os-ken's parser (a decoder may take only some
messages of its type, such as one kind of multipart reply).  A decoder may
raise ``ValueError`` or ``struct.error`` on what it cannot read: the switch
is then disconnected as for any nonsense.  Another decoder is added with
:func:`register` (its own module, its own handler in the app).

Pure functions on bytes; tested against os-ken's own serializer and parser
(tests/unit/test_rawpath.py).
"""

import struct
from typing import NamedTuple

from os_ken.ofproto import ofproto_v1_3 as ofp

# buffer_id, total_len, reason, table_id, cookie (ofp_packet_in after the
# header); then the match's type and length.
_PACKET_IN = struct.Struct('!IHBBQ')
_TL = struct.Struct('!HH')
_U32 = struct.Struct('!I')
_U64 = struct.Struct('!Q')

_MATCH_AT = 8 + _PACKET_IN.size            # 24
# OXM headers without the length byte: (class << 16) | (field << 9).
_IN_PORT = (ofp.OFPXMC_OPENFLOW_BASIC << 16) | (ofp.OFPXMT_OFB_IN_PORT << 9)
_METADATA = (ofp.OFPXMC_OPENFLOW_BASIC << 16) | \
    (ofp.OFPXMT_OFB_METADATA << 9)
_REG6 = (0x0001 << 16) | (6 << 9)           # NXM1 class, NXM_NX_REG6
_SIZES = {_IN_PORT: 4, _METADATA: 8, _REG6: 4}   # value bytes, no mask


class PacketIn(NamedTuple):
    """What the app reads of an OFPT_PACKET_IN: the fields os-ken's
    ``OFPPacketIn`` gives under the same names (``in_port`` None when the
    match has none, ``reg6`` and ``metadata`` 0 when absent, a masked
    field's value without its mask)."""

    xid: int
    table_id: int
    cookie: int
    in_port: object
    reg6: int
    metadata: int
    data: bytes


class BarrierReply(NamedTuple):
    """An OFPT_BARRIER_REPLY."""

    xid: int


def decode_packet_in(buf):
    """A :class:`PacketIn` of one whole OFPT_PACKET_IN (header included)."""
    _, _, length, xid = struct.unpack_from('!BBHI', buf)
    _, total_len, _, table_id, cookie = _PACKET_IN.unpack_from(buf, 8)
    mtype, mlen = _TL.unpack_from(buf, _MATCH_AT)
    if mtype != ofp.OFPMT_OXM or mlen < 4:
        raise ValueError('match of type %d, length %d' % (mtype, mlen))
    end = _MATCH_AT + mlen
    data_at = _MATCH_AT + (mlen + 7) // 8 * 8 + 2
    if end > length or data_at > length:
        raise ValueError('packet-in match runs past the message')
    in_port, reg6, metadata = None, 0, 0
    pos = _MATCH_AT + 4
    while pos < end:
        (header,) = _U32.unpack_from(buf, pos)
        size = header & 0xFF
        if size == 0 or pos + 4 + size > end:
            raise ValueError('OXM field of length %d' % size)
        field = header & 0xFFFFFE00
        if field in _SIZES:
            # A field the app reads must have its size (os-ken's parser
            # raises on another: the switch is disconnected either way).
            if size != _SIZES[field] << (header >> 8 & 1):
                raise ValueError('OXM field %08x of length %d' % (
                    header, size))
            if field == _IN_PORT:
                (in_port,) = _U32.unpack_from(buf, pos + 4)
            elif field == _REG6:
                (reg6,) = _U32.unpack_from(buf, pos + 4)
            else:
                (metadata,) = _U64.unpack_from(buf, pos + 4)
        pos += 4 + size
    data = bytes(buf[data_at:length])
    if total_len < len(data):
        data = data[:total_len]       # padding, as os-ken drops it
    return PacketIn(xid, table_id, cookie, in_port, reg6, metadata, data)


def decode_barrier_reply(buf):
    """A :class:`BarrierReply` of one OFPT_BARRIER_REPLY."""
    return BarrierReply(_U32.unpack_from(buf, 4)[0])


DECODERS = {ofp.OFPT_PACKET_IN: decode_packet_in,
            ofp.OFPT_BARRIER_REPLY: decode_barrier_reply}


def register(msg_type, decode):
    """Decode messages of ``msg_type`` with ``decode`` (see the module
    docstring) from now on."""
    DECODERS[msg_type] = decode


def decode(msg_type, buf):
    """The decoded message of type ``msg_type``, or None (os-ken parses
    it).  Raises ValueError or struct.error on what cannot be read."""
    decoder = DECODERS.get(msg_type)
    return None if decoder is None else decoder(buf)
