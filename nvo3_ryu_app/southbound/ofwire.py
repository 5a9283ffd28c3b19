"""The bytes of every OpenFlow 1.3 message the app sends.

The channel (channel.py) returns abstract messages; :func:`encode` turns
each into its wire bytes: flow-mods of plain :class:`pipeline.Flow` objects,
meter-mods, barrier and echo requests, the flow and meter dump requests, and
packet-outs.  This is the product's one encoder.

Why not os-ken's message classes: building an OFPFlowMod with its OFPMatch
and actions was the largest cost of attaching a tenant system (netaddr
conversions, per-field normalisation; figures in benchmarks/README.md).
Our flows use a small declared set of fields and actions, so this module
packs them with ``struct`` directly.  The field headers and their order come
from os-ken itself at import, and tests/unit/test_ofwire.py checks the bytes
of every message against os-ken's own serialization (a reference encoder
kept in tests/), for every kind of flow the pipeline can hold, so the two
cannot drift apart.
"""

import functools
import socket
import struct

from os_ken.lib import type_desc
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from ..authority import pipeline as P
from .channel import (Barrier, EchoRequest, FlowChange, FlowStatsRequest,
                      MeterConfigRequest, RoleRequest, SendPacket,
                      StampRequest)


class Unencodable(ValueError):
    """A flow or meter holds a value its OpenFlow field cannot carry.  The
    entry points validate every address (authority/addresses.py), so this
    is a bug or a value from elsewhere: :func:`encode_all` leaves that one
    change out and reports it (its NVE's channel keeps it out of sync), the
    rest of the batch goes."""


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
        self.kind = kind = desc.type
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


_FIELDS = FIELDS = _declared_fields()   # ofstats.py reads them back


def _oxm(name, value):
    field = _FIELDS[name]
    if isinstance(value, tuple):
        return field.masked_header + field.pack(value[0]) + field.pack(
            value[1])
    return field.header + field.pack(value)


@functools.lru_cache(maxsize=1024)   # a MAC or address recurs per entry
def _oxm_cached(name, value):
    return _oxm(name, value)


# NXM_OF_IN_PORT: class 0, field 0, 2 bytes (nicira_ext.NXM_OF_IN_PORT).
_NXM_IN_PORT = struct.pack('!I', 2)


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
        # OVS refuses the OXM in_port (32 bits) as a set-field value 0
        # (OFPBAC_BAD_SET_ARGUMENT); the NXM form (16 bits) is accepted.
        oxm = _NXM_IN_PORT + _U16.pack(act[2]) if act[1] == 'in_port' \
            else _oxm(act[1], act[2])
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
    actions are in (pipeline.canonical_order) and the order a dump returns
    them in."""
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
    """The OFPT_FLOW_MOD of a flow table's change of ``flow``: ADD for add
    and modify (it replaces a flow with the same table, priority and match
    in place, cookie and actions included), DELETE_STRICT for delete.
    Raises :class:`Unencodable` for a value a field cannot carry."""
    try:
        body = _body(op == 'delete', flow)
    except (OSError, ValueError, OverflowError, TypeError, KeyError,
            IndexError, AttributeError, struct.error) as exc:
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


# --- the other messages -----------------------------------------------------

_METER_MOD = struct.Struct('!HHI')
_METER_BAND_DROP = struct.Struct('!HHII4x')
_MULTIPART = struct.Struct('!HH4x')
_FLOW_STATS = struct.Struct('!B3xII4xQQ')
_METER_CONFIG = struct.Struct('!I4x')
_PACKET_OUT = struct.Struct('!IIH6x')
_METER_COMMANDS = {'add': ofp.OFPMC_ADD, 'modify': ofp.OFPMC_MODIFY,
                   'delete': ofp.OFPMC_DELETE}


def _message(msg_type, xid, body=b''):
    return _HEADER.pack(ofp.OFP_VERSION, msg_type, 8 + len(body), xid) + body


def meter_mod(op, meter, xid):
    """The OFPT_METER_MOD of a change of ``meter`` (a packets-per-second
    limit with a burst; a delete carries no band).  Raises
    :class:`Unencodable` for a value a field cannot carry."""
    try:
        body = _METER_MOD.pack(_METER_COMMANDS[op],
                               ofp.OFPMF_PKTPS | ofp.OFPMF_BURST,
                               meter.meter_id)
        if op != 'delete':
            body += _METER_BAND_DROP.pack(ofp.OFPMBT_DROP, 16,
                                          meter.rate_pps, meter.burst)
    except (KeyError, TypeError, struct.error) as exc:
        raise Unencodable('cannot encode %s of %r: %s' % (
            op, meter, exc)) from None
    return _message(ofp.OFPT_METER_MOD, xid, body)


def echo_request(xid):
    """An OFPT_ECHO_REQUEST (liveness: the NVE must answer it)."""
    return _message(ofp.OFPT_ECHO_REQUEST, xid)


def barrier_request(xid):
    """An OFPT_BARRIER_REQUEST."""
    return _message(ofp.OFPT_BARRIER_REQUEST, xid)


def flow_stats_request(xid):
    """Ask for our flows only (cookie prefix): foreign flows stay unseen."""
    body = _MULTIPART.pack(ofp.OFPMP_FLOW, 0) + _FLOW_STATS.pack(
        ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, P.COOKIE_APP,
        P.COOKIE_APP_MASK) + _match(())
    return _message(ofp.OFPT_MULTIPART_REQUEST, xid, body)


def stamp_request(xid):
    """Ask for the NVE's stamp only (table STAMP, its exact cookie)."""
    body = _MULTIPART.pack(ofp.OFPMP_FLOW, 0) + _FLOW_STATS.pack(
        P.STAMP, ofp.OFPP_ANY, ofp.OFPG_ANY, P.COOKIE_STAMP,
        0xFFFFFFFFFFFFFFFF) + _match(())
    return _message(ofp.OFPT_MULTIPART_REQUEST, xid, body)


def meter_config_request(xid):
    """Ask for every meter's configuration."""
    body = _MULTIPART.pack(ofp.OFPMP_METER_CONFIG, 0) + _METER_CONFIG.pack(
        ofp.OFPM_ALL)
    return _message(ofp.OFPT_MULTIPART_REQUEST, xid, body)


def packet_out(in_port, data, actions, xid):
    """An OFPT_PACKET_OUT of ``data`` (no buffer) with apply-actions
    ``actions``, as if it came in by ``in_port``."""
    acts = b''.join(_action(tuple(a)) for a in actions)
    body = _PACKET_OUT.pack(ofp.OFP_NO_BUFFER,
                            _NAMED_PORTS.get(in_port, in_port), len(acts))
    return _message(ofp.OFPT_PACKET_OUT, xid, body + acts + bytes(data))


_ROLE_REQUEST = struct.Struct('!I4xQ')
_ROLES = {'master': ofp.OFPCR_ROLE_MASTER, 'slave': ofp.OFPCR_ROLE_SLAVE,
          'equal': ofp.OFPCR_ROLE_EQUAL, 'nochange': ofp.OFPCR_ROLE_NOCHANGE}


def role_request(role, generation, xid):
    """An OFPT_ROLE_REQUEST for ``role`` ('master', 'slave', 'equal',
    'nochange') under ``generation`` (a 64-bit generation id)."""
    return _message(ofp.OFPT_ROLE_REQUEST, xid, _ROLE_REQUEST.pack(
        _ROLES[role], generation & 0xFFFFFFFFFFFFFFFF))


_ENCODERS = {
    RoleRequest: lambda msg: role_request(msg.role, msg.generation, msg.xid),
    Barrier: lambda msg: barrier_request(msg.xid),
    EchoRequest: lambda msg: echo_request(msg.xid),
    FlowStatsRequest: lambda msg: flow_stats_request(msg.xid),
    StampRequest: lambda msg: stamp_request(msg.xid),
    MeterConfigRequest: lambda msg: meter_config_request(msg.xid),
    SendPacket: lambda msg: packet_out(msg.packet.in_port, msg.packet.data,
                                       msg.packet.actions, msg.xid),
}


def encode(msg):
    """The wire bytes of one of the channel's messages."""
    if type(msg) is FlowChange:     # nearly every message: no dispatch
        xid, op, item = msg
        if type(item) is P.Flow:
            return flow_mod(op, item, xid)
        return meter_mod(op, item, xid)
    return _ENCODERS[type(msg)](msg)


def encode_all(msgs):
    """The wire bytes of ``msgs`` as one write, each flow change encoded on
    its own: ``(data, failed)``, where ``failed`` lists ``(xid, reason)`` of
    the changes that could not be encoded and were left out (the others
    go)."""
    wire, failed = [], []
    for msg in msgs:
        try:
            wire.append(encode(msg))
        except Unencodable as exc:
            failed.append((msg.xid, str(exc)))
    return b''.join(wire), failed
