"""Translation between plain :class:`pipeline.Flow`/`Meter` and OpenFlow 1.3.

The decision code never sees os-ken; this module is the only place that
turns its plain data into os-ken messages, and flow-stats replies back into
plain data so that the reconciler compares like with like.
"""

import functools
import struct

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from . import ofwire
from . import pipeline as P
from .reconcile import ADD, DELETE, MODIFY

_NAMED_PORTS = {'IN_PORT': ofp.OFPP_IN_PORT, 'CONTROLLER': ofp.OFPP_CONTROLLER,
                'TABLE': ofp.OFPP_TABLE}
_PORT_NAMES = {v: k for k, v in _NAMED_PORTS.items()}


def _action(act):
    kind = act[0]
    if kind == 'output':
        port = _NAMED_PORTS.get(act[1], act[1])
        max_len = ofp.OFPCML_NO_BUFFER if port == ofp.OFPP_CONTROLLER else 0
        return parser.OFPActionOutput(port, max_len)
    if kind == 'set':
        return parser.OFPActionSetField(**{act[1]: act[2]})
    if kind == 'push_vlan':
        return parser.OFPActionPushVlan(0x8100)
    if kind == 'pop_vlan':
        return parser.OFPActionPopVlan()
    if kind == 'dec_ttl':
        return parser.OFPActionDecNwTtl()
    if kind == 'move':
        return parser.NXActionRegMove(src_field=act[1], dst_field=act[2],
                                      n_bits=act[3])
    raise ValueError('not an apply-action: %r' % (act,))


def instructions(actions):
    out = []
    apply = []
    for act in actions:
        if act[0] == 'meter':
            out.append(parser.OFPInstructionMeter(act[1]))
        elif act[0] == 'metadata':
            pass
        elif act[0] == 'goto':
            pass
        else:
            apply.append(_action(act))
    if apply:
        out.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                apply))
    for act in actions:
        if act[0] == 'metadata':
            out.append(parser.OFPInstructionWriteMetadata(
                act[1], P.FULL_METADATA))
    for act in actions:
        if act[0] == 'goto':
            out.append(parser.OFPInstructionGotoTable(act[1]))
    return out


def flow_mod(datapath, op, flow):
    """An OFPFlowMod for a reconciler change of a flow."""
    match = parser.OFPMatch(**dict(flow.match))
    if op == DELETE:
        return parser.OFPFlowMod(
            datapath, cookie=flow.cookie, cookie_mask=0,
            table_id=flow.table, command=ofp.OFPFC_DELETE_STRICT,
            priority=flow.priority, out_port=ofp.OFPP_ANY,
            out_group=ofp.OFPG_ANY, match=match)
    # ADD replaces a flow with the same table/priority/match in place,
    # cookie and actions included: that is our "modify".
    return parser.OFPFlowMod(
        datapath, cookie=flow.cookie, table_id=flow.table,
        command=ofp.OFPFC_ADD, priority=flow.priority, match=match,
        instructions=instructions(flow.actions))


def meter_mod(datapath, op, meter):
    command = {ADD: ofp.OFPMC_ADD, MODIFY: ofp.OFPMC_MODIFY,
               DELETE: ofp.OFPMC_DELETE}[op]
    bands = [] if op == DELETE else [
        parser.OFPMeterBandDrop(rate=meter.rate_pps, burst_size=meter.burst)]
    return parser.OFPMeterMod(
        datapath, command=command,
        flags=ofp.OFPMF_PKTPS | ofp.OFPMF_BURST, meter_id=meter.meter_id,
        bands=bands)


def change_msg(datapath, op, item):
    if isinstance(item, P.Meter):
        return meter_mod(datapath, op, item)
    return flow_mod(datapath, op, item)


class _Wire:
    """What serializing a message needs of a datapath (every NVE speaks
    OpenFlow 1.3, so the bytes of a change do not depend on which)."""
    ofproto = ofp
    ofproto_parser = parser


_XID = struct.Struct('!I')


@functools.lru_cache(maxsize=256)
def _meter_wire(op, meter):
    msg = meter_mod(_Wire, op, meter)
    msg.set_xid(0)
    msg.serialize()
    return bytes(msg.buf)


def change_bytes(op, item, xid):
    """The wire bytes of :func:`change_msg` with transaction id ``xid``.

    Flows are packed by ofwire.py (building os-ken message objects was
    the largest cost of attaching a tenant system); meters, rare, by
    os-ken, once per (op, meter).  Raises ofwire.Unencodable."""
    if isinstance(item, P.Meter):
        try:
            buf = bytearray(_meter_wire(op, item))
        except (ValueError, OverflowError, TypeError, struct.error) as exc:
            raise ofwire.Unencodable('cannot encode %s of %r: %s' % (
                op, item, exc)) from None
        _XID.pack_into(buf, 4, xid)
        return buf
    return ofwire.flow_mod(op, item, xid)


def encode_batch(changes, next_xid):
    """One batch of reconciler changes as wire messages, each change on
    its own: a change that cannot be encoded is left out and reported,
    the others go.

    ``next_xid()`` gives transaction ids.  Returns ``(wire, inflight,
    failed)``: the messages, ``{xid: (op, item)}`` of those sent, and
    ``[(op, item, reason)]`` of those that could not be encoded."""
    wire, inflight, failed = [], {}, []
    for op, item in changes:
        xid = next_xid()
        try:
            wire.append(change_bytes(op, item, xid))
        except ofwire.Unencodable as exc:
            failed.append((op, item, str(exc)))
            continue
        inflight[xid] = (op, item)
    return wire, inflight, failed


def _abstract_action(action):
    if isinstance(action, parser.OFPActionOutput):
        return ('output', _PORT_NAMES.get(action.port, action.port))
    if isinstance(action, parser.OFPActionSetField):
        return ('set', action.key, action.value)
    if isinstance(action, parser.OFPActionPushVlan):
        return ('push_vlan',)
    if isinstance(action, parser.OFPActionPopVlan):
        return ('pop_vlan',)
    if isinstance(action, parser.OFPActionDecNwTtl):
        return ('dec_ttl',)
    if isinstance(action, parser.NXActionRegMove):
        # Parsed back, os-ken names the NXM form of a field '<name>_nxm'.
        return ('move', _field_name(action.src_field),
                _field_name(action.dst_field), action.n_bits)
    return ('unknown', repr(action))


def _field_name(name):
    return name[:-4] if name.endswith('_nxm') else name


def flow_from_stats(stat):
    """A flow-stats entry from the switch, as a plain Flow."""
    actions = []
    for inst in stat.instructions:
        if isinstance(inst, parser.OFPInstructionMeter):
            actions.append(('meter', inst.meter_id))
        elif isinstance(inst, parser.OFPInstructionActions):
            actions.extend(_abstract_action(a) for a in inst.actions)
        elif isinstance(inst, parser.OFPInstructionWriteMetadata):
            actions.append(('metadata', inst.metadata))
        elif isinstance(inst, parser.OFPInstructionGotoTable):
            actions.append(('goto', inst.table_id))
        else:
            actions.append(('unknown', repr(inst)))
    return P.Flow(stat.table_id, stat.priority,
                  tuple(sorted(stat.match.items())),
                  P.canonical_order(actions), stat.cookie)


def meter_from_config(stat):
    band = stat.bands[0] if stat.bands else None
    return P.Meter(stat.meter_id, band.rate if band else 0,
                   band.burst_size if band else 0)


def flow_stats_request(datapath):
    """Ask for our flows only (cookie prefix): foreign flows stay unseen."""
    return parser.OFPFlowStatsRequest(
        datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
        P.COOKIE_APP, P.COOKIE_APP_MASK, parser.OFPMatch())


def meter_config_request(datapath):
    return parser.OFPMeterConfigStatsRequest(datapath, 0, ofp.OFPM_ALL)


def packet_out(datapath, in_port, data, actions):
    port = _NAMED_PORTS.get(in_port, in_port)
    return parser.OFPPacketOut(
        datapath, buffer_id=ofp.OFP_NO_BUFFER, in_port=port,
        actions=[_action(a) for a in actions], data=data)
