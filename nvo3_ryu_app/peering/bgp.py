"""The BGP EVPN speaker's I/O: the one place that talks to os-ken's
``BGPSpeaker`` (authority/evpn.py decides what to say and what the peers'
routes mean).

Export.  :meth:`Peering.advertise` takes the changes of the desired route
set (``Evpn.take_changes``: ``{key: Route or None}``); a sender greenlet
advertises the difference from what it has advertised (never a wipe), a
chunk at a time with a yield in between: ``evpn_prefix_add`` is
synchronous and sends one UPDATE per route, so a burst would otherwise
hold the hub (OpenFlow, REST) for seconds.  One VRF per route
distinguisher, made on first use; a VN whose route targets change has its
VRF made again and its routes advertised again.

Import.  The speaker's handlers run in its own greenthreads: they only turn
each best-path change and session change into news, queued here, and ask
the app (``notify``) to take them in its one loop (:meth:`take_news`).  A
withdrawn path names its route by NLRI alone; the route it withdraws is
the one last received under that key.

Peers are known by the address configured in ``bgp_neighbors`` (os-ken
identifies a peer by the TCP source address of its session).  The speaker
accepts their sessions and connects to them on port 179 (contract 7).
"""

import json
import logging

from os_ken.lib import hub
from os_ken.lib.packet import bgp as pbgp
from os_ken.services.protocols.bgp import bgpspeaker
from os_ken.services.protocols.bgp.info_base.evpn import EvpnPath
from os_ken.services.protocols.bgp.rtconf import neighbors as nbconf

from ..authority import evpn
from . import oskenfix

LOG = logging.getLogger(__name__)

CHUNK = 50              # speaker calls between two yields to the hub
PMSI_INGRESS_REPLICATION = 6
STICKY = 1              # MAC mobility community flag (RFC 7432 7.7)

ROUTE = 'route'         # news kinds: (ROUTE, (evpn.Route, withdraw))
UP, DOWN = 'up', 'down'  # (UP|DOWN, (neighbour, remote AS, router id))


def route_of(path, withdraw, known=None):
    """The evpn.Route a received EVPN path carries, or None for another
    kind of route.  ``known``: ``{received key: Route}`` of routes received
    before (a withdraw carries no attributes: it names the route it
    withdraws)."""
    if not isinstance(path, EvpnPath) or path.source is None:
        return None
    nlri = path.nlri
    peer = path.source.ip_address
    rd = nlri.route_dist
    if nlri.ROUTE_TYPE_NAME == bgpspeaker.EVPN_MULTICAST_ETAG_ROUTE:
        kind, vtep = evpn.IMET, nlri.ip_addr
        mac = ip = None
    elif nlri.ROUTE_TYPE_NAME == bgpspeaker.EVPN_MAC_IP_ADV_ROUTE:
        kind, vtep = evpn.MAC_IP, path.nexthop
        mac, ip = nlri.mac_addr, nlri.ip_addr
    else:
        return None
    if withdraw and known is not None:
        key = (peer, rd, kind, vtep) if kind == evpn.IMET else \
            (peer, rd, kind, mac, ip)
        if key in known:
            return known[key]
    seq, sticky, rts = 0, False, ()
    communities = path.get_pattr(pbgp.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES)
    if communities is not None:
        rts = tuple(communities.rt_list)
        for community in communities.communities:
            if isinstance(community, pbgp.BGPEvpnMacMobilityExtendedCommunity):
                seq = community.sequence_number
                sticky = bool(community.flags & STICKY)
    if kind == evpn.IMET:
        pmsi = path.get_pattr(pbgp.BGP_ATTR_TYEP_PMSI_TUNNEL_ATTRIBUTE)
        vni = pmsi.vni if pmsi is not None else None
    else:
        # The 24-bit VNI (RFC 8365 5.1.3), not os-ken's MPLS reading of it.
        vni = nlri.vni
    return evpn.Route(kind, rd, vni, vtep, mac, ip, seq, sticky, rts,
                      peer=peer)


def speaker_args(route):
    """Keyword arguments of ``evpn_prefix_add`` for an exported route."""
    args = dict(route_dist=route.rd, ethernet_tag_id=0, next_hop=route.vtep,
                tunnel_type=evpn.TUNNEL_TYPES[route.encap], vni=route.vni)
    if route.kind == evpn.IMET:
        args.update(route_type=bgpspeaker.EVPN_MULTICAST_ETAG_ROUTE,
                    ip_addr=route.vtep,
                    pmsi_tunnel_type=PMSI_INGRESS_REPLICATION,
                    tunnel_endpoint_ip=route.vtep)
    else:
        args.update(route_type=bgpspeaker.EVPN_MAC_IP_ADV_ROUTE, esi=0,
                    mac_addr=route.mac, ip_addr=route.ip,
                    mac_mobility=route.seq)
    return args


def withdraw_args(route):
    """Keyword arguments of ``evpn_prefix_del`` for an exported route."""
    args = dict(route_dist=route.rd, ethernet_tag_id=0)
    if route.kind == evpn.IMET:
        args.update(route_type=bgpspeaker.EVPN_MULTICAST_ETAG_ROUTE,
                    ip_addr=route.vtep)
    else:
        args.update(route_type=bgpspeaker.EVPN_MAC_IP_ADV_ROUTE,
                    mac_addr=route.mac, ip_addr=route.ip)
    return args


class _Speaker(bgpspeaker.BGPSpeaker):
    """os-ken's speaker, telling session changes by configured address
    (its peer-up handler gets the peer's BGP identifier instead)."""

    def __init__(self, on_session, **kwargs):
        self._on_session = on_session
        super().__init__(**kwargs)

    def _notify_peer_up(self, peer):
        opened = peer.protocol.recv_open_msg
        self._on_session(UP, peer.ip_address, peer.remote_as,
                         opened.bgp_identifier)

    def _notify_peer_down(self, peer):
        self._on_session(DOWN, peer.ip_address, peer.remote_as, None)


class Peering:
    """The app's BGP EVPN speaker.  ``notify()`` is called (from the
    speaker's greenthreads) when news waits for :meth:`take_news`."""

    def __init__(self, settings, notify, counters, log=LOG):
        self.settings = settings
        self.notify = notify
        self.counters = counters
        self.log = log
        self.neighbors = evpn.neighbors(settings)
        self.speaker = None
        self.advertised = {}        # key -> evpn.Route
        self._pending = {}          # key -> Route or None, to advertise
        self._vrfs = {}             # route distinguisher -> route targets
        self._received = {}         # received key -> evpn.Route
        self._news = []
        self._wake = hub.Event()
        self._sender = None
        self.sessions = {a: {'remote_as': asn, 'state': 'Idle',
                             'router_id': None}
                         for a, asn in self.neighbors}

    def start(self):
        """Start the speaker and its sessions."""
        oskenfix.apply()
        conf = self.settings
        self.speaker = _Speaker(
            self._session, as_number=conf.bgp_as,
            router_id=conf.bgp_router_id,
            bgp_server_hosts=[conf.bgp_listen_host],
            bgp_server_port=conf.bgp_listen_port,
            best_path_change_handler=self._best_path)
        for address, asn in self.neighbors:
            # os-ken tests connect_mode with ``is``: its own constant.
            self.speaker.neighbor_add(
                address, asn, enable_evpn=True, enable_ipv4=False,
                connect_mode=nbconf.CONNECT_MODE_BOTH)
        self._sender = hub.spawn(self._send_loop)
        self.log.info('BGP EVPN speaker AS %d id %s on %s:%d, neighbours %s',
                      conf.bgp_as, conf.bgp_router_id, conf.bgp_listen_host,
                      conf.bgp_listen_port,
                      ', '.join('%s (AS %d)' % n for n in self.neighbors)
                      or 'none')

    # -- export --

    def advertise(self, changes):
        """Desired routes changed (``{key: Route or None}``): the sender
        advertises or withdraws them soon, in the hub's other turns."""
        if not changes:
            return
        self._pending.update(changes)
        self._wake.set()

    def _send_loop(self):
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = list(self._pending.items())[:CHUNK]
                for key, _ in batch:
                    del self._pending[key]
                for key, route in batch:
                    try:
                        self._apply(key, route)
                    except Exception:  # pylint: disable=broad-except
                        self.counters['bgp_export_errors'] += 1
                        self.log.exception('BGP: cannot advertise %r', route)
                hub.sleep(0)

    def _apply(self, key, route):
        old = self.advertised.get(key)
        if old == route:
            return
        if old is not None and (route is None or old.rd != route.rd):
            self.speaker.evpn_prefix_del(**withdraw_args(old))
            del self.advertised[key]
            self.counters['bgp_routes_withdrawn'] += 1
        if route is None:
            return
        self._vrf(key, route)
        self.speaker.evpn_prefix_add(**speaker_args(route))
        self.advertised[key] = route
        self.counters['bgp_routes_advertised'] += 1

    def _vrf(self, current, route):
        rts = self._vrfs.get(route.rd)
        if rts == route.rts:
            return
        if rts is not None:
            # New route targets: the VRF is made again; its routes are
            # advertised again under them (what is pending is new anyway).
            for key, old in list(self.advertised.items()):
                if old.rd == route.rd:
                    self.speaker.evpn_prefix_del(**withdraw_args(old))
                    del self.advertised[key]
                    if key != current:
                        self._pending.setdefault(key, old._replace(
                            rts=route.rts))
            self.speaker.vrf_del(route_dist=route.rd)
        self.speaker.vrf_add(route_dist=route.rd, import_rts=[],
                             export_rts=list(route.rts),
                             route_family=bgpspeaker.RF_L2_EVPN)
        self._vrfs[route.rd] = route.rts
        self._wake.set()

    # -- import (handlers run in the speaker's greenthreads) --

    def _best_path(self, event):
        try:
            route = route_of(event.path, event.is_withdraw, self._received)
        except Exception:  # pylint: disable=broad-except
            self.counters['evpn_routes_dropped_malformed'] += 1
            self.log.warning('BGP: unreadable EVPN path dropped',
                             exc_info=True)
            return
        if route is None:
            self.counters['bgp_routes_ignored'] += 1
            return
        key = route.received_key()
        if event.is_withdraw:
            if self._received.pop(key, None) is None:
                # Already forgotten: its session went down.
                return
        else:
            self._received[key] = route
        self._queue((ROUTE, (route, event.is_withdraw)))

    def _session(self, kind, address, remote_as, router_id):
        session = self.sessions.get(address)
        if session is not None:
            session['state'] = 'Established' if kind == UP else 'Idle'
            session['router_id'] = router_id
        if kind == DOWN:
            # os-ken withdraws the peer's paths one by one after this; the
            # authority forgets them all at once.
            self._received = {k: r for k, r in self._received.items()
                              if r.peer != address}
        self._queue((kind, (address, remote_as, router_id)))

    def _queue(self, item):
        first = not self._news
        self._news.append(item)
        if first:
            self.notify()

    def take_news(self):
        """What happened since the last call, in order: ``[(ROUTE,
        (Route, withdraw)) | (UP|DOWN, (neighbour, AS, router id))]``."""
        news, self._news = self._news, []
        return news

    # -- status --

    def status(self):
        """``GET /v1/bgp`` (contract 7)."""
        conf = self.settings
        states = {}
        if self.speaker is not None:
            try:
                for item in json.loads(self.speaker.neighbors_get()):
                    states[item['ip_addr']] = item['bgp_state']
            except Exception:  # pylint: disable=broad-except
                pass
        return {
            'as': conf.bgp_as, 'router_id': conf.bgp_router_id,
            'neighbors': [{'address': a, 'remote_as': s['remote_as'],
                           'state': states.get(a, s['state']),
                           'router_id': s['router_id']}
                          for a, s in sorted(self.sessions.items())],
            'routes': {'exported': len(self.advertised),
                       'imported': len(self._received),
                       'pending': len(self._pending)},
        }

    def stop(self):
        """Stop the sender and the speaker."""
        if self._sender is not None:
            hub.kill(self._sender)
            self._sender = None
        if self.speaker is not None:
            try:
                self.speaker.shutdown()
            except Exception:  # pylint: disable=broad-except
                LOG.debug('speaker shutdown', exc_info=True)
            self.speaker = None
