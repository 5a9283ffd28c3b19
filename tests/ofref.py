"""The reference OpenFlow encoder: os-ken's own message classes.

The product packs its messages with ``struct`` (nvo3_ryu_app/southbound/
ofwire.py); test_ofwire.py checks every message it can send against the
bytes os-ken serializes from its message objects, built here.
"""

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.southbound.flowtable import ADD, DELETE, MODIFY

_NAMED_PORTS = {'IN_PORT': ofp.OFPP_IN_PORT, 'CONTROLLER': ofp.OFPP_CONTROLLER,
                'TABLE': ofp.OFPP_TABLE}


def _action(act):
    kind = act[0]
    if kind == 'output':
        port = _NAMED_PORTS.get(act[1], act[1])
        max_len = ofp.OFPCML_NO_BUFFER if port == ofp.OFPP_CONTROLLER else 0
        return parser.OFPActionOutput(port, max_len)
    if kind == 'set':
        # in_port is set in its NXM form: OVS refuses the OXM one as value 0.
        field = 'in_port_nxm' if act[1] == 'in_port' else act[1]
        return parser.OFPActionSetField(**{field: act[2]})
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
    """An OFPFlowMod for a flow table's change of a flow."""
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


WIRE = _Wire


def barrier_request(datapath):
    return parser.OFPBarrierRequest(datapath)


def echo_request(datapath):
    """An echo request (liveness)."""
    return parser.OFPEchoRequest(datapath)


def serialize(msg, xid):
    """os-ken's bytes of ``msg`` with transaction id ``xid``."""
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


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


def role_request(datapath, role, generation):
    """An OFPT_ROLE_REQUEST (a cluster's master or slave, with its
    generation id)."""
    return parser.OFPRoleRequest(datapath, {
        'master': ofp.OFPCR_ROLE_MASTER, 'slave': ofp.OFPCR_ROLE_SLAVE,
        'equal': ofp.OFPCR_ROLE_EQUAL,
        'nochange': ofp.OFPCR_ROLE_NOCHANGE}[role], generation)
