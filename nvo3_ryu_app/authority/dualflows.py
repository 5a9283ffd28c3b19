"""What the NVEs of a VN hold for a tenant system while it migrates.

authority/migrations.py decides; this computes the flows.  While the
attachment of a tenant system has an announced migration, flows.spec hands
its owner here.  With O the NVE and port it is at and T the NVE and port it
was announced at, every NVE of the VN holds:

* table 4, ``PRIO_HOST`` (frames from local tenant systems): to *both*
  places, the ingress NVE replicating: out of a local port for a place on
  this NVE, one tunnel copy for each other NVE (O and T once each, once in
  all when they are the same NVE);
* table 5, ``PRIO_HOST`` (frames from the tunnel): the places on this NVE
  only.  Split horizon as always: the sender sent the other copy itself;
* table 5, ``PRIO_REDIRECT`` on the NVE it left last (flows.py): frames
  still tunnelled there follow it to both places;
* the responder and L3 routes of its addresses, as before: every member
  NVE, T included, answers ARP for it;
* on T, the arrival flows on the new port (table 1, ``PRIO_ARRIVAL`` and,
  for its own announcements and address probes, ``PRIO_ARRIVAL_ANNOUNCE``
  past the responder as in ``PRIO_ANNOUNCE``): its frames there are
  admitted and forwarded, and, until its arrival is noticed, copied to the
  authority (cookie bit ``COOKIE_FORWARDED``: the packet-in is news, not a
  frame to re-inject).  These punts have no meter: a meter that refuses a
  packet drops the frame itself, not only its copy to the controller; they
  last one round trip to the authority (the first copy turns them into
  plain admission), and only the announced MAC on the announced port
  reaches them.

Everything else (its source flows at O with their anti-spoofing, blocked
claimants, BID classification) stays as flows.py builds it.  The view
(:class:`Dual`) is built from the two plain views of flows.py: the tenant
system where it is, and as if it were already at T.
"""

from typing import NamedTuple

from . import flows as F
from . import pipeline as P


class _At:
    """An attachment as if it were at another place (its migration's)."""

    __slots__ = ('_att', 'nve', 'port', 'vlan', 'reachable')

    redirect_from = None        # redirects follow where it is (``here``)

    def __init__(self, att, dpid, port, vlan, reachable):
        self._att = att
        self.nve, self.port, self.vlan = dpid, port, vlan
        self.reachable = reachable

    def __getattr__(self, name):
        return getattr(self._att, name)


class Dual(NamedTuple):
    """A migrating tenant system as one NVE sees it: a plain view of
    flows.py (``base``, built as usual) with its delivery re-pointed."""

    cookie: int
    vnid: int
    mac: str
    ips: tuple
    l3: tuple
    base: tuple             # flows.TsHere or flows.TsThere
    sources: bool           # keep the base's source flows (the old port's)
    l2: tuple               # table-4 host flow actions (() none)
    local: tuple            # table-5 host flow actions (None none, () drop)
    redirect: tuple         # table-5 redirect actions (() none)
    arrival: tuple          # (new ofport, punt) when T is this NVE
    bid: tuple              # TsHere of the new place to classify by IP

    def build(self):
        """The flows of this view (flows.build calls it)."""
        return _build(self)


def view(db, cfg, nve, vn, att, cookie):
    """The view of ``att`` (which has a migration) from NVE ``nve``."""
    here = F._ts_view(db, cfg, nve, vn, att)
    mig = att.migration
    target = db.nves.get(mig.nve)
    if target is None or db.binding_vn(mig.nve, mig.port,
                                       mig.vlan) != vn.vnid:
        return here      # its new port left the VN: deliver as before
    there = F._ts_view(db, cfg, nve, vn, _At(
        att, target.dpid, mig.port, mig.vlan, not target.dyn_unreachable))
    local, remote = [], []
    for place in (here, there):
        if isinstance(place, F.TsHere):
            if place.ofport is not None:
                local.append(place)
        elif place.route is not None and all(
                r.route != place.route for r in remote):
            remote.append(place)
    base = local[0] if local else (remote[0] if remote else here)
    l2 = []
    for place in local:
        l2 += F._local_output(place.ofport, place.vlan)
    # A place on this NVE whose port is down: what the tunnel brings for
    # it is dropped (the sender sent the other place its copy), not
    # flooded to the VN's other ports here as an unknown destination.
    ours = any(isinstance(place, F.TsHere) for place in (here, there))
    deliver_local = tuple(l2) if ours else None
    tunnels = [F._tunnel_output(vn.vnid, r.route[0], r.route[1])
               for r in remote]
    for acts in tunnels:
        l2 += acts
    redirect = []
    if isinstance(here, F.TsThere) and here.redirect:
        # Came in by the tunnel port: out of it again is IN_PORT.
        for acts in tunnels:
            redirect += acts[:-1] + [('output', 'IN_PORT')]
    new_here = isinstance(there, F.TsHere) and there.ofport is not None
    return Dual(
        cookie, vn.vnid, att.mac, here.ips, here.l3, base,
        sources=base is here, l2=tuple(l2), local=deliver_local,
        redirect=tuple(redirect),
        arrival=(there.ofport, mig.arrived is None) if new_here else None,
        bid=there if new_here and there.by_source_ip and base is not there
        else None)


# Flows of the base view that the dual view makes anew.
_REBUILT = frozenset(((P.L2_FORWARD, P.PRIO_HOST),
                      (P.LOCAL_DELIVERY, P.PRIO_HOST),
                      (P.LOCAL_DELIVERY, P.PRIO_REDIRECT)))
_SOURCE_KEPT = frozenset((P.PRIO_BLOCKED,))


def _build(view):
    out = []
    for flow in F.build(view.base):
        if (flow.table, flow.priority) in _REBUILT:
            continue
        if flow.table == P.SOURCE and not view.sources and \
                flow.priority not in _SOURCE_KEPT:
            continue          # the new place's: it gets arrival flows
        out.append(flow)
    match = {'metadata': view.vnid, 'eth_dst': view.mac}
    for table, prio, actions in ((P.L2_FORWARD, P.PRIO_HOST, view.l2),
                                 (P.LOCAL_DELIVERY, P.PRIO_REDIRECT,
                                  view.redirect)):
        if actions:
            out.append(P.flow(table, prio, match, list(actions),
                              view.cookie))
    if view.local is not None:
        out.append(P.flow(P.LOCAL_DELIVERY, P.PRIO_HOST, match,
                          list(view.local), view.cookie))
    if view.arrival is not None:
        out += _arrival_flows(view)
    if view.bid is not None:
        out += F._bid_classify_flows(view.bid)
    return tuple(out)


def _arrival_flows(view):
    """Admit the vNIC's frames on its announced port, its announcements
    past the responder; with ``punt``, a copy of each to the authority."""
    ofport, punt = view.arrival
    base = {'metadata': view.vnid, 'in_port': ofport, 'eth_src': view.mac}
    report = [('output', 'CONTROLLER')] if punt else []
    cookie = view.cookie | P.COOKIE_FORWARDED if punt else view.cookie
    out = [P.flow(P.SOURCE, P.PRIO_ARRIVAL, base,
                  report + [('goto', P.ARP_ND_RESPONDER)], cookie)]
    out += [P.flow(P.SOURCE, P.PRIO_ARRIVAL_ANNOUNCE, flow.match_dict,
                   report + [('goto', P.L3_ROUTE)], cookie)
            for flow in F._announce_flows(view, base)]
    return out


__all__ = ['view', 'Dual']
