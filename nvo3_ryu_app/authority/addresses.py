"""The one validation of identifiers and addresses.

MAC and IP addresses, datapath ids, VNIDs, VLAN IDs, names, gateways, BIDs
and choices are checked and normalised here, by every interface (REST, the
registration RPC, the configuration file) and by the mapping database: a
value is either returned in its canonical form or refused with a
BadRequest naming the field.
"""

import ipaddress
import re

from .errors import BadRequest

VNID_MAX = (1 << 24) - 1
BID_MIN, BID_MAX = 1, 0xFFFF  # 16 bits, 0 reserved (as RFC 5648 BIDs)
MAC_RE = re.compile(r'^[0-9a-f]{2}(:[0-9a-f]{2}){5}$')


def norm_mac(mac, field_name='mac'):
    """A unicast MAC address in lower case, or BadRequest naming the field."""
    if not isinstance(mac, str) or not MAC_RE.fullmatch(mac.lower()):
        raise BadRequest('%s must be a MAC address like 02:00:00:00:00:01, '
                         'not %r' % (field_name, mac), field_name)
    mac = mac.lower()
    if int(mac[:2], 16) & 1 or mac == '00:00:00:00:00:00':
        raise BadRequest('%s %s is not a unicast address' % (field_name, mac),
                         field_name)
    return mac


def norm_ip(ip, field_name='ip'):
    """A unicast host IPv4 or IPv6 address in its canonical text (what the
    flow encoder packs: southbound/ofwire.py), or BadRequest.  Every entry
    (REST, RPC, the declarative file, packets, the store) goes through
    here, so nothing reaches a flow that cannot be packed: no zone
    (``fe80::1%eth0``), no integers or bytes that ipaddress would also
    take."""
    if not isinstance(ip, str) or '%' in ip:
        raise BadRequest('%s must be an IPv4 or IPv6 address (no zone '
                         'index), not %r' % (field_name, ip), field_name)
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise BadRequest('%s must be an IPv4 or IPv6 address, not %r'
                         % (field_name, ip), field_name) from None
    if addr.is_multicast or addr.is_unspecified or addr.is_loopback:
        raise BadRequest('%s %s is not a unicast host address'
                         % (field_name, ip), field_name)
    return str(addr)


def norm_dpid(dpid, field_name='dpid'):
    """Datapath ids are ints inside; 16 hex digits at every boundary."""
    if isinstance(dpid, int) and not isinstance(dpid, bool):
        value = dpid
    elif isinstance(dpid, str) and re.fullmatch(r'[0-9a-fA-F]{1,16}', dpid):
        value = int(dpid, 16)
    else:
        raise BadRequest('%s must be a datapath id of 16 hex digits, not %r'
                         % (field_name, dpid), field_name)
    if not 0 < value < (1 << 64):
        raise BadRequest('%s out of range' % field_name, field_name)
    return value


def dpid_str(dpid):
    """A datapath id as REST and the event log show it: 16 hex digits."""
    return '%016x' % dpid


def norm_vnid(vnid, field_name='vnid'):
    """A VNID (24 bits, from an int or its decimal text), or BadRequest."""
    if isinstance(vnid, str) and re.fullmatch(r'[0-9]{1,9}', vnid):
        vnid = int(vnid)
    if not isinstance(vnid, int) or isinstance(vnid, bool) \
            or not 1 <= vnid <= VNID_MAX:
        raise BadRequest('%s must be an integer 1..%d (24 bits), not %r'
                         % (field_name, VNID_MAX, vnid), field_name)
    return vnid


def norm_vlan(vlan, field_name='vlan'):
    """A VLAN ID 1..4094 (from an int or its decimal text), or BadRequest."""
    if isinstance(vlan, str) and re.fullmatch(r'[0-9]{1,4}', vlan):
        vlan = int(vlan)
    if not isinstance(vlan, int) or isinstance(vlan, bool) \
            or not 1 <= vlan <= 4094:
        raise BadRequest('%s must be a VLAN ID 1..4094, not %r'
                         % (field_name, vlan), field_name)
    return vlan


def norm_name(name, field_name='name', max_len=64):
    """A name of letters, digits and _.:- of at most ``max_len`` characters, or
    BadRequest."""
    if not isinstance(name, str) or not name or len(name) > max_len \
            or not re.fullmatch(r'[A-Za-z0-9_.:-]+', name):
        raise BadRequest('%s must be 1..%d characters of letters, digits and '
                         '_.:-, not %r' % (field_name, max_len, name),
                         field_name)
    return name


PORT_NAME_RE = re.compile(r'[A-Za-z0-9_.-]{1,15}')


def norm_port_name(name, field_name='port_name'):
    """An access port's name as OVS and Linux accept one: 1..15 of
    letters, digits and ``_.-``, and not ``.`` or ``..``; or BadRequest."""
    if not isinstance(name, str) or not PORT_NAME_RE.fullmatch(name) \
            or name in ('.', '..'):
        raise BadRequest('%s must be 1..15 characters of letters, digits '
                         'and _.- (not "." or ".."), not %r'
                         % (field_name, name), field_name)
    return name


def norm_choice(value, choices, field_name):
    """``value`` if it is one of ``choices``, else BadRequest."""
    if value not in choices:
        raise BadRequest('%s must be one of %s, not %r'
                         % (field_name, ', '.join(choices), value), field_name)
    return value


def norm_gateway(gw_mac, gw_ips):
    """A VN gateway's MAC and interface addresses (``a.b.c.d/len``, a subnet
    each) in canonical form, or BadRequest."""
    mac = norm_mac(gw_mac, 'gateway.mac') if gw_mac is not None else None
    if not isinstance(gw_ips, (list, tuple)):
        raise BadRequest('gateway.ips must be a list of addresses with a '
                         'prefix, like 192.168.1.1/24', 'gateway.ips')
    ips = []
    for text in gw_ips:
        host, _, prefix = text.partition('/') if isinstance(text, str) \
            else (None, '', '')
        try:
            host = norm_ip(host, 'gateway.ips')
            iface = ipaddress.ip_interface(host + ('/' + prefix if prefix
                                                   else ''))
        except (BadRequest, ValueError):
            raise BadRequest('gateway.ips entries must look like '
                             '192.168.1.1/24, not %r' % (text,),
                             'gateway.ips') from None
        if iface.network.prefixlen == iface.max_prefixlen:
            raise BadRequest('gateway address %s needs a subnet prefix' % text,
                             'gateway.ips')
        ips.append(str(iface))
    return mac, tuple(ips)


def norm_bid(bid, field_name='bid'):
    """A binding identifier (draft 4.2): an integer 1..65535, or BadRequest."""
    if not isinstance(bid, int) or isinstance(bid, bool) \
            or not BID_MIN <= bid <= BID_MAX:
        raise BadRequest('%s must be an integer %d..%d, not %r'
                         % (field_name, BID_MIN, BID_MAX, bid), field_name)
    return bid


def norm_route_target(text, field_name='route_targets'):
    """A BGP route target (RFC 4360) in canonical text, or BadRequest:
    ``<AS>:<number>`` (a 2-byte AS with a 4-byte number, or a 4-byte AS
    with a 2-byte number) or ``<IPv4>:<number>`` (a 2-byte number).  Route
    distinguishers (RFC 4364) have the same three forms."""
    bad = BadRequest('%s entries must look like 65001:5001 or '
                     '10.0.0.1:5001, not %r' % (field_name, text), field_name)
    if not isinstance(text, str) or text.count(':') != 1:
        raise bad
    admin, number = text.split(':')
    if not re.fullmatch(r'[0-9]{1,10}', number):
        raise bad
    number = int(number)
    if '.' in admin:
        try:
            admin = str(ipaddress.IPv4Address(admin))
        except ValueError:
            raise bad from None
        wide = False
    elif re.fullmatch(r'[0-9]{1,10}', admin) and 0 < int(admin) < 1 << 32:
        admin = int(admin)
        wide = admin < 1 << 16
    else:
        raise bad
    if number >= (1 << 32 if wide else 1 << 16):
        raise bad
    return '%s:%d' % (admin, number)


def norm_route_targets(values, field_name='route_targets'):
    """A list of route targets (see :func:`norm_route_target`) as a tuple
    in canonical text, each once, in the order given; or BadRequest."""
    if not isinstance(values, (list, tuple)):
        raise BadRequest('%s must be a list of route targets like '
                         '65001:5001' % field_name, field_name)
    out = []
    for text in values:
        text = norm_route_target(text, field_name)
        if text not in out:
            out.append(text)
    return tuple(out)
