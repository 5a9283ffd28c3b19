"""Flows and meters in ``ovs-ofctl`` syntax, for people.

What an operator reads in a dry-run, an audit or a trace is the syntax
``ovs-ofctl -O OpenFlow13 dump-flows`` and ``ofproto/trace`` use, so a
line can be compared with a dump by eye, or given to ``ovs-ofctl add-flow``
as it is (tests/unit/test_oftext.py has ``ovs-ofctl parse-flows`` read
every flow the authority computes).  Pure formatting, no decision.
"""

from . import pipeline as P

# Our match and set-field names (os-ken's OXM names) -> ovs-ofctl's.
FIELD_NAMES = {
    'eth_src': 'dl_src', 'eth_dst': 'dl_dst', 'eth_type': 'dl_type',
    'tunnel_id': 'tun_id', 'ipv4_src': 'nw_src', 'ipv4_dst': 'nw_dst',
    'ip_proto': 'nw_proto', 'ipv6_nd_target': 'nd_target',
    'tun_ipv4_dst': 'tun_dst', 'tun_ipv6_dst': 'tun_ipv6_dst',
}
HEX_FIELDS = ('metadata', 'tunnel_id', 'eth_type')
# Move (copy) fields, as OVS names them in ``move:`` actions.
MOVE_NAMES = {
    'eth_src': 'NXM_OF_ETH_SRC[]', 'eth_dst': 'NXM_OF_ETH_DST[]',
    'arp_sha': 'NXM_NX_ARP_SHA[]', 'arp_tha': 'NXM_NX_ARP_THA[]',
    'arp_spa': 'NXM_OF_ARP_SPA[]', 'arp_tpa': 'NXM_OF_ARP_TPA[]',
}


def _value(field, value):
    if isinstance(value, tuple):
        return '%s/%s' % (_value(field, value[0]), _value(field, value[1]))
    if isinstance(value, int) and field in HEX_FIELDS:
        return '0x%x' % value
    return str(value)


def match_text(match):
    """A match (pairs or a dict of OXM fields) as ovs-ofctl writes it."""
    items = sorted(dict(match).items())
    out = []
    for field, value in items:
        if field == 'vlan_vid':
            if value == P.OFPVID_NONE:
                out.append('vlan_tci=0x0000/0x1fff')
            else:
                out.append('dl_vlan=%d' % (value & 0xFFF))
            continue
        out.append('%s=%s' % (FIELD_NAMES.get(field, field),
                              _value(field, value)))
    return ','.join(out)


def _port(port, names):
    name = (names or {}).get(port)
    return '%d' % port if name is None else '%d(%s)' % (port, name)


def actions_text(actions, port_names=None, plain=False):
    """Actions and instructions as ovs-ofctl writes them (``drop`` for
    none).  ``port_names`` (ofport -> name) adds the names of output ports
    for people; ``plain`` leaves them out (what ``add-flow`` reads)."""
    out = []
    names = None if plain else port_names
    for act in actions:
        kind = act[0]
        if kind == 'output':
            port = act[1]
            if port == 'IN_PORT':
                out.append('IN_PORT')
            elif port == 'CONTROLLER':
                out.append('CONTROLLER:65535')
            else:
                out.append('output:' + _port(port, names))
        elif kind == 'set':
            field, value = act[1], act[2]
            out.append('set_field:%s->%s' % (
                _value(field, value), FIELD_NAMES.get(field, field)))
        elif kind == 'move':
            out.append('move:%s->%s' % (MOVE_NAMES.get(act[1], act[1]),
                                        MOVE_NAMES.get(act[2], act[2])))
        elif kind == 'push_vlan':
            out.append('push_vlan:0x8100')
        elif kind == 'pop_vlan':
            out.append('pop_vlan')
        elif kind == 'dec_ttl':
            out.append('dec_ttl')
        elif kind == 'meter':
            out.append('meter:%d' % act[1])
        elif kind == 'metadata':
            out.append('write_metadata:0x%x' % act[1])
        elif kind == 'goto':
            out.append('goto_table:%d' % act[1])
        else:
            out.append(repr(act))
    return ','.join(out) or 'drop'


def flow_text(flow, port_names=None, plain=False):
    """One flow: ``cookie=0x..., table=N, priority=P,<match>
    actions=...`` (``ovs-ofctl add-flow`` reads it with ``plain``)."""
    match = match_text(flow.match)
    head = 'cookie=0x%x,table=%d,priority=%d' % (flow.cookie, flow.table,
                                                  flow.priority)
    return '%s%s actions=%s' % (head, ',' + match if match else '',
                                actions_text(flow.actions, port_names, plain))


def meter_text(meter):
    """One meter as ``ovs-ofctl add-meter`` reads it."""
    return 'meter=%d,pktps,burst,bands=type=drop,rate=%d,burst_size=%d' % (
        meter.meter_id, meter.rate_pps, meter.burst)


def item_text(item, port_names=None, plain=False):
    """A flow or a meter."""
    if isinstance(item, P.Meter):
        return meter_text(item)
    return flow_text(item, port_names, plain)


def change_text(op, item, port_names=None):
    """A flow-mod as one line: ``add``, ``modify`` or ``delete`` and the
    flow (what ovs-ofctl's add-flow, mod-flows --strict and del-flows
    --strict would be given)."""
    return '%s %s' % (op, item_text(item, port_names))


__all__ = ['flow_text', 'meter_text', 'item_text', 'change_text',
           'match_text', 'actions_text']
