"""OpenFlow 1.3 flow-mods of plain :class:`pipeline.Flow` objects, as bytes.

Why not os-ken's message classes: building an OFPFlowMod with its OFPMatch
and actions cost ~70 us per flow here (netaddr conversions, per-field
normalisation), most of the authority's time per attachment.  Our flows
use a small declared set of fields and actions, so this module packs them
with ``struct`` directly.  The field headers and their order come from
os-ken itself at import, and tests/unit/test_ofwire.py checks the bytes
against os-ken's for every kind of flow the pipeline can hold, so the two
cannot drift apart.  Meter-mods, packet-outs and requests stay os-ken's
(ofmsg.py): they are rare.
"""

import functools
import socket
import struct

from os_ken.lib import type_desc
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from . import pipeline as P

class Unencodable(ValueError):
    """A flow holds a value its OpenFlow field cannot carry.  The entry
    points validate every address (model.norm_*), so this is a bug or a
    value from elsewhere; the sender drops that one flow, counts it and
    keeps the NVE out of sync (app.py), the rest of the batch goes."""


_HEADER = struct.Struct('!BBHI')
# cookie, cookie_mask, table, command, idle, hard, priority, buffer_id,
# out_port, out_group, flags, pad
_FLOW_MOD = struct.Struct('!QQBBHHHIIIH2x')
_U16 = struct.Struct('!H')
_NAMED_PORTS = {'IN_PORT': ofp.OFPP_IN_PORT, 'CONTROLLER': ofp.OFPP_CONTROLLER,
                'TABLE': ofp.OFPP_TABLE}


def _mac(text):
    return bytes.fromhex(text.replace(':', ''))


def _ipv4(text):
    return socket.inet_aton(text)


def _ipv6(text):
    return socket.inet_pton(socket.AF_INET6, text)


class _Field:
    """How one OXM field is numbered (os-ken's sort key), headed, packed."""

    def __init__(self, name):
        desc = next(t for t in ofp.oxm_types if t.name == name)
        self.num = desc.num
        kind = desc.type
        if kind is type_desc.MacAddr:
            self.pack = _mac
        elif kind is type_desc.IPv4Addr:
            self.pack = _ipv4
        elif kind is type_desc.IPv6Addr:
            self.pack = _ipv6
        else:
            size = kind.size
            self.pack = lambda value: value.to_bytes(size, 'big')
        # The header, as os-ken writes it (class, field, length; masked
        # variant with the has-mask bit and twice the length).
        value = _SAMPLES.get(kind, 1)
        buf = bytearray()
        parser.OFPMatch(**{name: value}).serialize(buf, 0)
        self.header = bytes(buf[4:8])
        length = self.header[3]
        self.masked_header = self.header[:2] + bytes(
            [self.header[2] | 1, 2 * length])


_SAMPLES = {type_desc.MacAddr: '02:00:00:00:00:01',
            type_desc.IPv4Addr: '10.0.0.1', type_desc.IPv6Addr: '::1'}


def _declared_fields():
    names = set()
    for table in P.TABLES.values():
        names.update(table.match_fields)
        names.update(table.set_fields)
    return {name: _Field(name) for name in sorted(names)}


_FIELDS = _declared_fields()


def _oxm(name, value):
    field = _FIELDS[name]
    if isinstance(value, tuple):
        return field.masked_header + field.pack(value[0]) + field.pack(
            value[1])
    return field.header + field.pack(value)


@functools.lru_cache(maxsize=1024)   # a MAC or address recurs per entry
def _oxm_cached(name, value):
    return _oxm(name, value)


def _pad8(data):
    return data + bytes(-len(data) % 8)


def _match(match):
    """ofp_match of OXM fields, in os-ken's order (by field number)."""
    fields = sorted(match, key=lambda fv: _FIELDS[fv[0]].num)
    oxms = b''.join(_oxm_cached(name, value) for name, value in fields)
    return _pad8(_U16.pack(ofp.OFPMT_OXM) + _U16.pack(4 + len(oxms)) + oxms)


@functools.lru_cache(maxsize=1024)
def _action(act):
    kind = act[0]
    if kind == 'output':
        port = _NAMED_PORTS.get(act[1], act[1])
        max_len = ofp.OFPCML_NO_BUFFER if port == ofp.OFPP_CONTROLLER else 0
        return struct.pack('!HHIH6x', ofp.OFPAT_OUTPUT, 16, port, max_len)
    if kind == 'set':
        oxm = _oxm(act[1], act[2])
        length = -(-(4 + len(oxm)) // 8) * 8      # padded to 8 bytes
        return struct.pack('!HH', ofp.OFPAT_SET_FIELD, length) + oxm + \
            bytes(length - 4 - len(oxm))
    if kind == 'push_vlan':
        return struct.pack('!HHH2x', ofp.OFPAT_PUSH_VLAN, 8, 0x8100)
    if kind == 'pop_vlan':
        return struct.pack('!HH4x', ofp.OFPAT_POP_VLAN, 8)
    if kind == 'dec_ttl':
        return struct.pack('!HH4x', ofp.OFPAT_DEC_NW_TTL, 8)
    if kind == 'move':
        # Rare and constant: os-ken's own encoding of the Nicira action.
        buf = bytearray()
        parser.NXActionRegMove(src_field=act[1], dst_field=act[2],
                               n_bits=act[3]).serialize(buf, 0)
        return bytes(buf)
    raise ValueError('not an apply-action: %r' % (act,))


def _instructions(actions):
    """Meter, apply-actions, write-metadata, goto: the order a Flow's
    actions are in (pipeline.canonical_order), ofmsg.instructions' order
    and the order a dump returns them in."""
    head, apply, tail = [], [], []
    for act in actions:
        kind = act[0]
        if kind == 'meter':
            head.append(struct.pack('!HHI', ofp.OFPIT_METER, 8, act[1]))
        elif kind == 'metadata':
            tail.append(struct.pack('!HH4xQQ', ofp.OFPIT_WRITE_METADATA, 24,
                                    act[1], P.FULL_METADATA))
        elif kind == 'goto':
            tail.append(struct.pack('!HHB3x', ofp.OFPIT_GOTO_TABLE, 8,
                                    act[1]))
        else:
            apply.append(_action(act))
    if apply:
        body = b''.join(apply)
        head.append(struct.pack('!HH4x', ofp.OFPIT_APPLY_ACTIONS,
                                8 + len(body)) + body)
    return b''.join(head + tail)


def flow_mod(op, flow, xid):
    """The OFPT_FLOW_MOD of a reconciler change of ``flow`` (the same bytes
    as ofmsg.flow_mod's message): ADD for add and modify (it replaces a
    flow with the same table, priority and match in place), DELETE_STRICT
    for delete.  Raises :class:`Unencodable` for a value a field cannot
    carry."""
    try:
        body = _body(op == 'delete', flow)
    except (OSError, ValueError, OverflowError, TypeError, KeyError,
            IndexError, struct.error) as exc:
        raise Unencodable('cannot encode %s of %r: %s' % (
            op, flow, exc)) from None
    return _HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD, 8 + len(body),
                        xid) + body


@functools.lru_cache(maxsize=1024)   # a remote route goes to every member
def _body(delete, flow):
    if delete:
        body = _FLOW_MOD.pack(
            flow.cookie, 0, flow.table, ofp.OFPFC_DELETE_STRICT, 0, 0,
            flow.priority, ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY,
            0) + _match(flow.match)
    else:
        body = _FLOW_MOD.pack(
            flow.cookie, 0, flow.table, ofp.OFPFC_ADD, 0, 0, flow.priority,
            ofp.OFP_NO_BUFFER, 0, 0, 0) + _match(
                flow.match) + _instructions(flow.actions)
    return body
