"""Flow-stats replies read from their bytes, without os-ken's objects.

A full dump of an NVE (on connect without a matching stamp, and in every
audit) is tens of thousands of flow-stats entries, and os-ken spends about
86 us on each (an OFPFlowStats, an OFPMatch parsed twice, instruction and
action objects, address conversions; benchmarks/README.md).  The app only
needs each entry as the :class:`pipeline.Flow` that ofparse.py's
``flow_from_stats`` makes of it, and its counters.  Most of an entry's
pieces recur from flow to flow (the VN's metadata, the tunnel actions to one
VTEP, the output to one port), so this module cuts an entry into its
fields and instructions as bytes and looks each piece up in a memo; a
piece seen for the first time is decoded by os-ken's own functions
(``oxm_parse`` and ``oxm_to_user``, ``OFPInstruction.parser`` and
ofparse.py's conversion), so both ways give the same Flow by
construction, and tests/unit/test_ofstats.py checks it against os-ken on
every kind of flow the pipeline holds.

:func:`fast_msg` is what ofguard.py's wrapper calls, after its length
checks, for every message os-ken would parse: it returns, for a flow-stats
reply, a message os-ken dispatches as ``EventOFPFlowStatsReply`` whose
``flows`` holds ``[(Flow, packet count, byte count)]`` (its ``body`` is
empty), and None for any other message (os-ken parses those).  Bytes it
cannot read raise :class:`Malformed`: the switch is dropped and counted
as for any nonsense.
"""

import socket
import struct

from os_ken.lib import type_desc
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from ..authority import pipeline as P
from . import ofwire
from .ofparse import instruction_actions

_HEADER = struct.Struct('!BBHI')
_MP = struct.Struct('!HH')
# length, table, pad, sec, nsec, priority, idle, hard, flags, pad, cookie,
# packets, bytes
_ENTRY = struct.Struct('!HBxIIHHHH4xQQQ')
_TL = struct.Struct('!HH')
_U32 = struct.Struct('!I')
MEMO_LIMIT = 1 << 17


class Malformed(ValueError):
    """A flow-stats reply whose bytes do not make a flow."""


class OFPFlowStatsReply(parser.OFPFlowStatsReply):
    """A flow-stats reply read by this module: os-ken dispatches it by its
    class name, as its own; ``flows`` holds what its entries mean."""

    def __init__(self, datapath, flags, flows):
        super().__init__(datapath)
        self.type = ofp.OFPMP_FLOW
        self.flags = flags
        self.body = []
        self.flows = flows


_fields = {}          # OXM TLV bytes -> (name, value)
# A MAC or IPv4 address is nearly always new (one per tenant system), and
# not worth remembering: read directly, as os-ken writes them (lower-case
# colon-separated MAC, dotted quad; tests/unit/test_ofstats.py compares).
_TEXT = {type_desc.MacAddr: lambda raw: raw.hex(':'),
         type_desc.IPv4Addr: socket.inet_ntoa}
_DIRECT = {field.header: (name, _TEXT[field.kind])
           for name, field in ofwire.FIELDS.items() if field.kind in _TEXT}
_instructions = {}    # instruction bytes -> tuple of abstract actions


def _remember(memo, key, value):
    if len(memo) >= MEMO_LIMIT:
        memo.clear()
    memo[key] = value
    return value


def _field(tlv):
    try:
        return _fields[tlv]
    except KeyError:
        pass
    direct = _DIRECT.get(tlv[:4])
    if direct is not None:
        return direct[0], direct[1](tlv[4:])
    n, value, mask, length = ofp.oxm_parse(tlv, 0)
    if length != len(tlv):
        raise Malformed('OXM field of %d bytes read as %d' % (len(tlv),
                                                              length))
    name, user = ofp.oxm_to_user(n, value, mask)
    return _remember(_fields, tlv, (name, user))


def _instruction(raw):
    try:
        return _instructions[raw]
    except KeyError:
        pass
    inst = parser.OFPInstruction.parser(raw, 0)
    if inst is None:
        raise Malformed('instruction type %d' % _TL.unpack_from(raw)[0])
    return _remember(_instructions, raw, tuple(instruction_actions(inst)))


def _match(buf, pos, end):
    mtype, mlen = _TL.unpack_from(buf, pos)
    if mtype != ofp.OFPMT_OXM or mlen < 4 or pos + mlen > end:
        raise Malformed('match of type %d, length %d' % (mtype, mlen))
    fields = []
    at, stop = pos + 4, pos + mlen
    while at < stop:
        if stop - at < 4:
            raise Malformed('OXM header cut short')
        size = _U32.unpack_from(buf, at)[0] & 0xFF
        nxt = at + 4 + size
        if size == 0 or nxt > stop:
            raise Malformed('OXM field of length %d' % size)
        fields.append(_field(bytes(buf[at:nxt])))
        at = nxt
    return fields, pos + (mlen + 7) // 8 * 8


def entries(buf, pos, end):
    """The flow-stats entries in ``buf[pos:end]`` as ``[(Flow, packet
    count, byte count)]``."""
    out = []
    while pos < end:
        if end - pos < _ENTRY.size:
            raise Malformed('flow stats entry cut short')
        (length, table, _, _, priority, _, _, _, cookie, packets,
         nbytes) = _ENTRY.unpack_from(buf, pos)
        stop = pos + length
        if length < _ENTRY.size + 8 or stop > end:
            raise Malformed('flow stats entry of length %d' % length)
        fields, at = _match(buf, pos + _ENTRY.size, stop)
        actions = []
        while at < stop:
            if stop - at < 4:
                raise Malformed('instruction header cut short')
            ilen = _TL.unpack_from(buf, at)[1]
            if ilen < 4 or at + ilen > stop:
                raise Malformed('instruction of length %d' % ilen)
            actions.extend(_instruction(bytes(buf[at:at + ilen])))
            at += ilen
        fields.sort()
        out.append((P.Flow(table, priority, tuple(fields),
                           P.canonical_order(actions), cookie),
                    packets, nbytes))
        pos = stop
    return out


def parse_reply(buf):
    """``(flags, flows)`` of a whole OFPMP_FLOW multipart reply (header
    included)."""
    try:
        _, msg_type, length, _ = _HEADER.unpack_from(buf)
        if msg_type != ofp.OFPT_MULTIPART_REPLY or length != len(buf):
            raise Malformed('not a whole multipart reply')
        mp_type, flags = _MP.unpack_from(buf, 8)
        if mp_type != ofp.OFPMP_FLOW:
            raise Malformed('multipart reply of type %d' % mp_type)
        return flags, entries(buf, 16, length)
    except Malformed:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        # os-ken's decoders raise anything, bare Exception included, on a
        # field or an action whose length does not fit its type.
        raise Malformed('not readable: %s: %s' % (type(exc).__name__,
                                                  exc)) from None


def fast_msg(datapath, version, msg_type, msg_len, xid, buf):
    """A flow-stats reply as an :class:`OFPFlowStatsReply`, or None for a
    message os-ken is to parse (see the module doc)."""
    if msg_type != ofp.OFPT_MULTIPART_REPLY or version != ofp.OFP_VERSION \
            or msg_len < 16 or \
            _MP.unpack_from(buf, 8)[0] != ofp.OFPMP_FLOW:
        return None
    data = bytes(buf[:msg_len])
    flags, flows = parse_reply(data)
    msg = OFPFlowStatsReply(datapath, flags, flows)
    msg.set_headers(version, msg_type, msg_len, xid)
    msg.buf = data
    return msg
