"""os-ken's parsed OpenFlow replies, as the plain data the app compares.

Flow-stats and meter-config replies become :class:`pipeline.Flow` and
:class:`pipeline.Meter` so that a flow table compares like with like (what
the NVE holds against what it must hold); a switch's port descriptions
become names, numbers and the bridge's MAC.  The bytes the app sends are
ofwire.py's.
"""

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from ..authority import pipeline as P

_NAMED_PORTS = {'IN_PORT': ofp.OFPP_IN_PORT, 'CONTROLLER': ofp.OFPP_CONTROLLER,
                'TABLE': ofp.OFPP_TABLE}
_PORT_NAMES = {v: k for k, v in _NAMED_PORTS.items()}


def _abstract_action(action):
    if isinstance(action, parser.OFPActionOutput):
        return ('output', _PORT_NAMES.get(action.port, action.port))
    if isinstance(action, parser.OFPActionSetField):
        # in_port is set in its NXM form (ofwire.py): 'in_port_nxm'.
        return ('set', _field_name(action.key), action.value)
    if isinstance(action, parser.NXActionRegLoad):
        return ('set', _field_name(action.dst), action.value)
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


def instruction_actions(inst):
    """An os-ken instruction as the abstract actions of a Flow."""
    if isinstance(inst, parser.OFPInstructionMeter):
        return [('meter', inst.meter_id)]
    if isinstance(inst, parser.OFPInstructionActions):
        return [_abstract_action(a) for a in inst.actions]
    if isinstance(inst, parser.OFPInstructionWriteMetadata):
        return [('metadata', inst.metadata)]
    if isinstance(inst, parser.OFPInstructionGotoTable):
        return [('goto', inst.table_id)]
    return [('unknown', repr(inst))]


def flow_from_stats(stat):
    """A flow-stats entry from the switch, as a plain Flow (ofstats.py
    makes the same from the raw bytes, faster)."""
    actions = []
    for inst in stat.instructions:
        actions.extend(instruction_actions(inst))
    return P.Flow(stat.table_id, stat.priority,
                  tuple(sorted(stat.match.items())),
                  P.canonical_order(actions), stat.cookie)


def meter_from_config(stat):
    """A meter-config entry from the switch, as a plain Meter."""
    band = stat.bands[0] if stat.bands else None
    return P.Meter(stat.meter_id, band.rate if band else 0,
                   band.burst_size if band else 0)


def port_name(port):
    """A port description's name as text."""
    name = port.name
    return name.decode('utf-8', 'replace') if isinstance(name, bytes) \
        else name


def port_up(port):
    """Whether a port is usable (link up, not administratively down)."""
    return not (port.state & ofp.OFPPS_LINK_DOWN
                or port.config & ofp.OFPPC_PORT_DOWN)


def switch_ports(ports):
    """``({name: port number}, bridge MAC)`` of a switch's port
    descriptions: its usable ports, and its LOCAL port's MAC."""
    names, mac = {}, None
    for port in ports:
        if port.port_no == ofp.OFPP_LOCAL:
            mac = port.hw_addr
        elif port.port_no < ofp.OFPP_MAX and port_up(port):
            names[port_name(port)] = port.port_no
    return names, mac
