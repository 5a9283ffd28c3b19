"""Which owners on which NVEs a database change affects, and recomputing them.

The mapping database notes what it touched (VNs, NVEs, attachments).  The
planner turns that into (NVE, owner) pairs and recomputes only those, using
the same :func:`flows.spec` that a full recompute uses; that equality is
checked by the unit tests after every scenario (incremental == recompute).
"""

import collections

from . import flows
from . import interconnect as I
from .owners import (IC, IC_HOST, TS, VN, ExtOwner, IcHostOwner, IcOwner,
                     TsOwner, VnOwner)


class Planner:
    """Keeps every NVE's desired flows up to date with the database."""

    def __init__(self, db, cfg, tables):
        self.db = db
        self.cfg = cfg
        # dpid -> the NVE's flow table (southbound.flowtable.FlowTables):
        # given, since what holds flows is the southbound's business.
        self.tables = tables
        # vnid -> {dpid} holding the VN's flows.  A tenant system's flows
        # are only ever held where its VN's are, so this also says where
        # they must be withdrawn from.
        self.vn_holders = collections.defaultdict(set)
        # interconnect name -> {dpid} holding its flows (withdrawn from
        # there when it goes or moves).
        self.ic_holders = collections.defaultdict(set)
        # ts owner -> (the owner, its latest distinct views): the one owner
        # object every table is keyed by, and the view objects its remote
        # NVEs share (see flows.spec).
        self._views = {}

    def table(self, dpid):
        """NVE ``dpid``'s flow table (made on first use)."""
        return self.tables.table(dpid)

    def plan(self, touched=None):
        """Apply the database's touched set (``touched``: what
        ``take_touched`` returned, if the caller took it); returns the NVEs
        that changed."""
        vns, nves, entries, members = touched if touched is not None \
            else self.db.take_touched()
        ics, exts = self.db.take_touched_gateways()
        pairs = set()
        for vnid, mac in entries:
            pairs |= self._everywhere(TsOwner(vnid, mac), vnid)
            pairs |= self._ts_across(vnid, mac)
        for vnid in vns:
            # The VN itself changed (or went): everything of it, everywhere.
            for dpid in self._targets(vnid):
                pairs |= self._whole_vn(dpid, vnid)
            for ic in self.db.interconnects_of(vnid):
                pairs |= self._ic_affected(ic.name, None)
        for vnid, dpid in members:
            # ``dpid`` joined or left: every member's flood list changes,
            # and ``dpid`` gains or loses every tenant system of the VN
            # (None: an EVPN VTEP joined or left, the flood lists only).
            pairs |= self._everywhere(VnOwner(vnid), vnid)
            if dpid is not None:
                pairs |= self._whole_vn(dpid, vnid)
                pairs |= {(dpid, IcOwner(ic.name))
                          for ic in self.db.interconnects_of(vnid)}
        for dpid in nves:
            pairs |= self._nve_affected(dpid)
        for name, old in ics.items():
            pairs |= self._ic_affected(name, old)
        for name, old in exts.items():
            ext = self.db.externals.get(name)
            for one in (old, ext):
                if one is not None:
                    pairs.add((one.gateway, ExtOwner(name)))
                    for vnid in one.vnids():
                        pairs.add((one.gateway, VnOwner(vnid)))
        by_nve = collections.defaultdict(list)
        for dpid, owner in pairs:
            by_nve[dpid].append(owner)
        for dpid, owners in by_nve.items():
            self._recompute(dpid, owners)
        for key in entries:
            if key not in self.db.attachments:
                self._views.pop(TsOwner(*key), None)
        return {dpid for dpid in by_nve if not self.tables[dpid].in_sync}

    def _targets(self, vnid):
        return self.db.flow_members(vnid) | self.vn_holders.get(vnid, set())

    def _whole_vn(self, dpid, vnid):
        """The VN's owner on ``dpid`` and every tenant system of the VN
        that ``dpid`` must or may hold."""
        macs = {a.mac for a in self.db.attachments_in(vnid)}
        table = self.tables.get(dpid)
        if table is not None:
            macs.update(o.mac for o in table.owners()
                        if o.kind == TS and o.vnid == vnid)
        return {(dpid, VnOwner(vnid))} | {(dpid, TsOwner(vnid, mac))
                                          for mac in macs}

    def _everywhere(self, owner, vnid):
        return {(dpid, owner) for dpid in self._targets(vnid)}

    # -- interconnects (gwflows.py) --

    def _ic_targets(self, ic):
        return set(self.ic_holders.get(ic.name, ())) | {ic.gateway} | \
            self.db.members(ic.vns[0]) | self.db.members(ic.vns[1])

    def _ic_everywhere(self, ic):
        """The interconnect's own owner everywhere it is or may be held,
        and its VNs' owners on its gateway (steering, broadcasts)."""
        pairs = {(dpid, IcOwner(ic.name)) for dpid in self._ic_targets(ic)}
        pairs |= {(ic.gateway, VnOwner(vnid)) for vnid in ic.vns}
        return pairs

    def _ts_across(self, vnid, mac):
        """What a tenant system's change touches across interconnects: its
        route on the gateways of its VN's routed interconnects, and, if it
        is on an allowed list, those interconnects (and the other l2 ones
        of their VNs: which of them imports a MAC, and which answers for
        an address, depends on all of them)."""
        db = self.db
        if not db.interconnects:
            return set()
        pairs = set()
        for ic in db.interconnects_of(vnid):
            if I.routed(db, ic):
                pairs.add((ic.gateway, IcHostOwner(ic.name, vnid, mac)))
        for ic in I.ics_allowing(db, mac):
            for vn_id in ic.vns:
                for other in I.l2_ics(db, vn_id):
                    pairs |= self._ic_everywhere(other)
        return pairs

    def _ic_affected(self, name, old):
        """An interconnect was put, changed or removed (``old``: what it
        was): its flows everywhere, its hosts' routes on its gateway (old
        and new), its VNs' flows on every member (routers), and the other
        l2 interconnects of its VNs (imports)."""
        db = self.db
        ic = db.interconnects.get(name)
        pairs = {(dpid, IcOwner(name)) for dpid in self.ic_holders.get(
            name, ())}
        vnids, gateways = set(), set()
        for one in (old, ic):
            if one is None:
                continue
            vnids |= set(one.vns)
            gateways.add(one.gateway)
            pairs |= self._ic_everywhere(one)
        for vnid in vnids:
            pairs |= self._everywhere(VnOwner(vnid), vnid)
            for other in I.l2_ics(db, vnid):
                pairs |= self._ic_everywhere(other)
        for dpid in gateways:
            table = self.tables.get(dpid)
            if table is not None:
                pairs |= {(dpid, o) for o in table.owners()
                          if o.kind == IC_HOST and o.name == name}
            if ic is not None and ic.gateway == dpid and I.routed(db, ic):
                for vnid in ic.vns:
                    pairs |= {(dpid, IcHostOwner(name, vnid, att.mac))
                              for att in db.attachments_in(vnid)}
        return pairs

    def _nve_affected(self, dpid):
        """An NVE's ports, VTEP or reachability changed."""
        pairs = {(dpid, owner) for owner in flows.owners_for(self.db, dpid)}
        table = self.tables.get(dpid)
        if table is not None:
            pairs |= {(dpid, owner) for owner in table.owners()}
        # Everyone in its VNs tunnels to it: their routes and flood lists
        # (and the second route of a tenant system migrating to it).
        held = self.db.attachments_at(dpid) + self.db.migrating_to(dpid)
        for vnid in self.db.flow_vns_of(dpid):
            for member in self.db.flow_members(vnid):
                pairs.add((member, VnOwner(vnid)))
                for att in held:
                    if att.vnid == vnid:
                        pairs.add((member, TsOwner(vnid, att.mac)))
        # Across interconnects: routes to its tenant systems, and, for a
        # gateway, every member's route to it.
        for att in self.db.attachments_at(dpid):
            pairs |= self._ts_across(att.vnid, att.mac)
        for ic in self.db.interconnects.values():
            if ic.gateway == dpid:
                pairs |= self._ic_everywhere(ic)
        return pairs

    def _recompute(self, dpid, owners):
        """Recompute ``owners`` on one NVE as one batch."""
        batch = {}
        for owner in owners:
            spec = flows.spec(self.db, self.cfg, dpid, owner)
            kind = owner.kind
            if kind == TS:
                owner, spec = self._shared(owner, spec)
            batch[owner] = spec
            if kind == VN:
                self._hold(self.vn_holders, owner.vnid, dpid, spec)
            elif kind == IC:
                self._hold(self.ic_holders, owner.name, dpid, spec)
        self.table(dpid).set_owners(batch)

    @staticmethod
    def _hold(holders, key, dpid, spec):
        if spec:
            holders[key].add(dpid)
        elif key in holders:
            held = holders[key]
            held.discard(dpid)
            if not held:
                del holders[key]

    def _shared(self, owner, view):
        """The canonical owner object, and an equal view already held
        elsewhere if there is one (its remote NVEs see a tenant system
        alike: one object serves them all)."""
        entry = self._views.get(owner)
        if entry is None:
            if view is not None:
                self._views[owner] = (owner, view)
            return owner, view
        for known in entry[1:]:
            if known == view:
                return entry[0], known
        if view is not None:
            # Its own NVE's view and the remote one share their cookie and
            # address tuples (memory per mapping entry).
            known = entry[-1]
            shared = {f: getattr(known, f) for f in ('cookie', 'ips', 'l3')
                      if getattr(view, f) == getattr(known, f)}
            if shared:
                view = view._replace(**shared)
            # The two latest: its own NVE's view and the remote one.
            self._views[owner] = (entry[0],) + (known, view)
        return entry[0], view

    def full_recompute(self, dpid):
        """Recompute every owner of one NVE from scratch (what the flows
        benchmark compares an incremental attach with)."""
        table = self.table(dpid)
        owners = set(flows.owners_for(self.db, dpid)) | table.owners()
        self._recompute(dpid, owners)

    def expected(self, dpid):
        """What a from-scratch computation says ``dpid`` must hold."""
        out = {}
        for owner in flows.owners_for(self.db, dpid):
            for item in flows.compute(self.db, self.cfg, dpid, owner):
                out[item.key] = item
        return out
