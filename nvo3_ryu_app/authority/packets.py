"""Reading tenant-system frames (attachment discovery) and building answers.

``parse_frame`` extracts what the authority learns from a frame: the source
MAC, the VLAN tag, the source IP where the frame shows one (ARP, IPv4 incl.
DHCP, IPv6 incl. neighbour discovery) and how the tenant system announced
itself.  Anything it cannot read raises :class:`MalformedFrame`; callers drop
and count it.  Never raises anything else.
"""

import ipaddress
import struct
from dataclasses import dataclass

from os_ken.lib.packet import (arp, ethernet, icmpv6, ipv4, ipv6, packet,
                               vlan)

ETH_ARP, ETH_RARP, ETH_IPV4, ETH_IPV6 = 0x0806, 0x8035, 0x0800, 0x86DD
ETH_VLAN = (0x8100, 0x88A8)
ZERO_MAC = '00:00:00:00:00:00'


class MalformedFrame(ValueError):
    """A frame too short or inconsistent to learn from."""


@dataclass
class Frame:
    """What a punted frame says about its sender: MAC, VLAN, the source address
    it proves (if any), how it was sent, and for neighbour solicitations and
    gleaning the target or destination."""

    src_mac: str
    dst_mac: str
    vlan: int = None
    ethertype: int = None
    ip: str = None           # source address the frame proves, if any
    how: str = 'frame'       # garp, rarp, arp, dhcp, ipv4, ipv6, nd-ns, ...
    nd_target: str = None    # for IPv6 neighbour solicitations
    ipv6_src: str = None
    dst_ip: str = None       # IPv4/IPv6 destination (for gleaning)


# An untagged ARP frame: destination, source, ethertype; then the ARP
# sender MAC and IP, target MAC and IP (after hardware/protocol type and
# sizes and the opcode).
_ARP_FRAME = struct.Struct('!6s6sH8x6s4s6s4s')


def _mac_text(raw):
    return '%02x:%02x:%02x:%02x:%02x:%02x' % tuple(raw)


def _plain_arp(data):
    """The :class:`Frame` of an untagged ARP frame read with ``struct``
    (the frame most packet-ins carry: a tenant system's first), exactly as
    the os-ken path below reads it; None for any other frame."""
    if len(data) < _ARP_FRAME.size or data[12:14] != b'\x08\x06':
        return None
    dst, src, _, sender_mac, sender_ip, _, target_ip = \
        _ARP_FRAME.unpack_from(data)
    src_mac = _mac_text(src)
    if src[0] & 1 or src_mac == ZERO_MAC:
        raise MalformedFrame('source MAC %s is not unicast' % src_mac)
    if sender_mac != src:
        raise MalformedFrame('ARP sender MAC %s differs from source MAC %s'
                             % (_mac_text(sender_mac), src_mac))
    frame = Frame(src_mac, _mac_text(dst), ethertype=ETH_ARP,
                  how='garp' if sender_ip == target_ip else 'arp')
    if sender_ip != b'\x00\x00\x00\x00':
        frame.ip = '%d.%d.%d.%d' % tuple(sender_ip)
    return frame


def parse_frame(data):
    """The :class:`Frame` of a punted frame's bytes, or MalformedFrame."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < 14:
        raise MalformedFrame('frame shorter than an Ethernet header')
    frame = _plain_arp(data)
    if frame is not None:
        return frame
    try:
        pkt = packet.Packet(bytes(data))
    except (struct.error, ValueError, TypeError, IndexError,
            AttributeError) as exc:
        raise MalformedFrame('unparseable frame: %s' % exc) from None
    eth = pkt.get_protocol(ethernet.ethernet)
    if eth is None:
        raise MalformedFrame('no Ethernet header')
    src = eth.src.lower()
    if int(src[:2], 16) & 1 or src == ZERO_MAC:
        raise MalformedFrame('source MAC %s is not unicast' % src)
    frame = Frame(src, eth.dst.lower(), ethertype=eth.ethertype)
    tag = pkt.get_protocol(vlan.vlan)
    if tag is not None:
        frame.vlan = tag.vid
        frame.ethertype = tag.ethertype
    if frame.ethertype == ETH_RARP:
        frame.how = 'rarp'
    elif frame.ethertype == ETH_ARP:
        _read_arp(pkt, frame)
    elif frame.ethertype == ETH_IPV4:
        _read_ipv4(pkt, frame)
    elif frame.ethertype == ETH_IPV6:
        _read_ipv6(pkt, frame)
    # Addresses as the mapping database writes them (addresses.norm_ip's
    # form): os-ken writes an IPv4-mapped IPv6 address otherwise.
    for name in ('ip', 'dst_ip', 'nd_target', 'ipv6_src'):
        value = getattr(frame, name)
        if value is not None:
            try:
                setattr(frame, name, str(ipaddress.ip_address(value)))
            except ValueError:
                raise MalformedFrame('%s %r is not an address' % (
                    name, value)) from None
    return frame


def _expect(proto, cls, what):
    if not isinstance(proto, cls):
        raise MalformedFrame('truncated or malformed %s' % what)
    return proto


def _read_arp(pkt, frame):
    msg = _expect(pkt.get_protocol(arp.arp), arp.arp, 'ARP')
    if msg.src_mac.lower() != frame.src_mac:
        raise MalformedFrame('ARP sender MAC %s differs from source MAC %s'
                             % (msg.src_mac, frame.src_mac))
    frame.how = 'garp' if msg.src_ip == msg.dst_ip else 'arp'
    if msg.src_ip != '0.0.0.0':
        frame.ip = msg.src_ip


def _read_ipv4(pkt, frame):
    hdr = _expect(pkt.get_protocol(ipv4.ipv4), ipv4.ipv4, 'IPv4')
    frame.how = 'ipv4'
    frame.dst_ip = hdr.dst
    if hdr.proto == 17 and hdr.src == '0.0.0.0':
        frame.how = 'dhcp'
        return
    if hdr.src != '0.0.0.0' and not _is_multicast4(hdr.src):
        frame.ip = hdr.src


def _is_multicast4(ip):
    first = int(ip.split('.')[0])
    return first >= 224 or first == 127


def _read_ipv6(pkt, frame):
    hdr = _expect(pkt.get_protocol(ipv6.ipv6), ipv6.ipv6, 'IPv6')
    frame.how = 'ipv6'
    frame.ipv6_src = hdr.src
    frame.dst_ip = hdr.dst
    icmp = pkt.get_protocol(icmpv6.icmpv6)
    if icmp is not None and icmp.type_ == icmpv6.ND_NEIGHBOR_SOLICIT:
        frame.how = 'nd-ns'
        frame.nd_target = getattr(icmp.data, 'dst', None)
    elif icmp is not None and icmp.type_ == icmpv6.ND_NEIGHBOR_ADVERT:
        frame.how = 'nd-na'
    if hdr.src != '::' and not hdr.src.lower().startswith('ff'):
        frame.ip = hdr.src


def build_arp_request(src_mac, src_ip, target_ip):
    """A broadcast ARP request, as the VN gateway asks for an address."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst='ff:ff:ff:ff:ff:ff', src=src_mac,
                                       ethertype=ETH_ARP))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=src_mac,
                             src_ip=src_ip, dst_mac='00:00:00:00:00:00',
                             dst_ip=target_ip))
    pkt.serialize()
    return bytes(pkt.data)


def build_arp_probe(src_mac, target_mac, target_ip):
    """An ARP probe (RFC 5227: sender IP 0) asking ``target_ip`` whether
    it is still there; a live host answers to ``src_mac``."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=target_mac, src=src_mac,
                                       ethertype=ETH_ARP))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=src_mac,
                             src_ip='0.0.0.0', dst_mac='00:00:00:00:00:00',
                             dst_ip=target_ip))
    pkt.serialize()
    return bytes(pkt.data)


def build_vlan_tagged(data, vid):
    """Put a tag back on a frame whose tag the pipeline had popped."""
    return data[:12] + struct.pack('!HH', 0x8100, vid) + data[12:]


def build_neighbor_advert(frame, target_mac):
    """The NA answering ``frame`` (an NS), as the NVE's own answer."""
    dst_ip = frame.ipv6_src if frame.ipv6_src not in (None, '::') \
        else 'ff02::1'
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=frame.src_mac, src=target_mac,
                                       ethertype=ETH_IPV6))
    pkt.add_protocol(ipv6.ipv6(src=frame.nd_target, dst=dst_ip, nxt=58,
                               hop_limit=255))
    pkt.add_protocol(icmpv6.icmpv6(
        type_=icmpv6.ND_NEIGHBOR_ADVERT,
        data=icmpv6.nd_neighbor(
            res=0x3 if dst_ip != 'ff02::1' else 0x1, dst=frame.nd_target,
            option=icmpv6.nd_option_tla(hw_src=target_mac))))
    pkt.serialize()
    return bytes(pkt.data)
