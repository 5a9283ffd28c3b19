"""Which owners on which NVEs a database change affects, and recomputing them.

The mapping database notes what it touched (VNs, NVEs, attachments).  The
planner turns that into (NVE, owner) pairs and recomputes only those, using
the same :func:`flows.spec` that a full recompute uses; that equality is
checked by the unit tests after every scenario (incremental == recompute).

A VN's tenant systems as its member NVEs see them alike live in shared
layers of the flow tables (southbound/flowtable.py): the planner keeps
each layer's specs (``flows.shared_view``) for every tenant system it
recomputes, before the NVEs' own, and says which layer each NVE reads
(``flows.layer_key``); an NVE's table keeps only where its view differs.
Tables without ``layers`` (a dry run's copies) hold every spec themselves.
Where an NVE sees a tenant system as its layer does (attached elsewhere,
nothing of its own blocked or redirected there), nothing is worked out
for that NVE: its table reads the layer's spec.  A layer is refreshed only
for what can change a shared view (the tenant system, its VN, the NVE it
is attached to), not when an NVE's ports or memberships change: an NVE
that connects is planned in the time of its own tenant systems, not in
that of its VNs' (restart: benchmarks/README.md).
"""

import collections

from . import flows, gwflows
from . import interconnect as I
from .owners import (IC, IC_HOST, TS, VN, ExtOwner, IcHostOwner, IcOwner,
                     NveOwner, TsOwner, VnOwner)


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
        # The shared layers (None: every table holds its own specs).
        self.layered = getattr(tables, 'layers', None) is not None
        # NVEs whose flows are not planned yet (a restart: see defer).
        self.deferred = set()

    def table(self, dpid):
        """NVE ``dpid``'s flow table (made on first use)."""
        return self.tables.table(dpid)

    def defer(self, dpids):
        """Plan these NVEs' flows when they connect, not now (a restart:
        until an NVE connects its ports are unknown, and what would be
        planned for it now, for every NVE, would be planned again).  An
        NVE deferred is planned in full by the plan that sees it
        connected (or deleted), or by :meth:`plan_deferred`; until then
        it has no table, and no other plan touches it."""
        self.deferred = set(dpids)

    def plan_deferred(self):
        """Plan every NVE still deferred (those that did not connect, for
        what reads their tables: REST, traces, dry runs); returns them."""
        dpids, self.deferred = self.deferred, set()
        for dpid in sorted(dpids):
            self.full_recompute(dpid)
        return dpids

    def plan(self, touched=None):
        """Apply the database's touched set (``touched``: what
        ``take_touched`` returned, if the caller took it); returns the NVEs
        that changed."""
        vns, nves, entries, members = touched if touched is not None \
            else self.db.take_touched()
        ics, exts = self.db.take_touched_gateways()
        deferred = self.deferred
        if deferred:
            for dpid in nves & deferred:
                nve = self.db.nves.get(dpid)
                if nve is None or nve.dyn_connected:
                    # Planned in full below (_nve_affected: all it holds).
                    deferred.discard(dpid)
        # (NVE, owner) to recompute; ``local``: NVE -> owners where only
        # the NVE's own view can have changed (no shared view of a tenant
        # system depends on which NVEs are members, nor on an NVE's ports:
        # a layer is refreshed for what is in ``pairs`` only).  By NVE, as
        # they are a whole VN's owners: no pair made for each.
        pairs, local = set(), collections.defaultdict(set)
        for key in entries:
            vnid, mac = key
            pairs |= self._everywhere(self._ts_owner(key), vnid)
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
            if dpid is not None and dpid not in deferred:
                local[dpid] |= self._vn_owners(dpid, vnid)
                pairs |= {(dpid, IcOwner(ic.name))
                          for ic in self.db.interconnects_of(vnid)}
        for dpid in nves:
            if dpid in deferred:
                continue
            own, around = self._nve_affected(dpid)
            local[dpid] |= own
            pairs |= around
        for name, old in ics.items():
            pairs |= self._ic_affected(name, old)
        for name, old in exts.items():
            ext = self.db.externals.get(name)
            for one in (old, ext):
                if one is not None:
                    pairs.add((one.gateway, ExtOwner(name)))
                    for vnid in one.vnids():
                        pairs.add((one.gateway, VnOwner(vnid)))
        by_nve = local
        for dpid, owner in pairs:
            by_nve[dpid].add(owner)
        for dpid in deferred.intersection(by_nve):
            del by_nve[dpid]
        if self.layered:
            self._refresh_layers(owner for _, owner in pairs
                                 if owner.kind == TS)
        for dpid, owners in by_nve.items():
            self._recompute(dpid, owners)
        return {dpid for dpid in by_nve if not self.tables[dpid].in_sync}

    def _ts_owner(self, key):
        """The owner of the flows of the tenant system ``key`` (vnid,
        mac): its attachment's key, the one object every table and layer
        is keyed by (a new one when it is gone)."""
        att = self.db.attachments.get(key)
        return att.key if att is not None else TsOwner(*key)

    def _targets(self, vnid):
        targets = self.db.flow_members(vnid) | self.vn_holders.get(vnid,
                                                                    set())
        return targets - self.deferred if self.deferred else targets

    def _whole_vn(self, dpid, vnid):
        """The VN's owner on ``dpid`` and every tenant system of the VN
        that ``dpid`` must or may hold."""
        return {(dpid, o) for o in self._vn_owners(dpid, vnid)}

    def _vn_owners(self, dpid, vnid):
        """The owners of :meth:`_whole_vn`."""
        owners = {a.key for a in self.db.attachments_in(vnid)}
        table = self.tables.get(dpid)
        if table is not None:
            owners.update(o for o in table.owners()
                          if o.kind == TS and o.vnid == vnid)
        owners.add(VnOwner(vnid))
        return owners

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
        """An NVE's ports, VTEP or reachability changed: ``(own,
        around)``, the owners it holds itself (its own view of each: a
        tenant system's shared view does not depend on the ports of the
        NVEs that see it) and the (NVE, owner) others hold of it."""
        own = self._all_owners(dpid)
        pairs = set()
        # Everyone in its VNs tunnels to it: their routes and flood lists
        # (and the second route of a tenant system migrating to it).
        held = self.db.attachments_at(dpid) + self.db.migrating_to(dpid)
        for vnid in self.db.flow_vns_of(dpid):
            for member in self.db.flow_members(vnid) - self.deferred:
                pairs.add((member, VnOwner(vnid)))
                for att in held:
                    if att.vnid == vnid:
                        pairs.add((member, att.key))
        # Across interconnects: routes to its tenant systems, and, for a
        # gateway, every member's route to it.
        for att in self.db.attachments_at(dpid):
            pairs |= self._ts_across(att.vnid, att.mac)
        for ic in self.db.interconnects.values():
            if ic.gateway == dpid:
                pairs |= self._ic_everywhere(ic)
        return own, pairs

    def _all_owners(self, dpid):
        """What a full recompute of NVE ``dpid`` looks at: every owner it
        must hold (``flows.owners_for``) or holds.  Reading shared layers,
        less the tenant systems attached elsewhere that nothing of their
        own ties to it (no move, claimant, migration) and that its table
        keeps nothing of its own for: their layers, read again, are what
        it must hold of them (``flows.sees_as_its_layer``), and looking at each of
        its VNs' tenant systems made a connecting NVE cost its VNs' size."""
        db = self.db
        table = self.tables.get(dpid)
        if not self.layered or dpid not in db.nves:
            own = set(flows.owners_for(db, dpid))
            if table is not None:
                own |= table.owners()
            return own
        vnids = db.flow_vns_of(dpid)
        own = {NveOwner()}
        own.update(gwflows.owners_for(db, dpid))
        if table is not None:
            own |= table.exceptions()
            vnids = vnids | table.layer_vnids()
        for vnid in vnids:
            own.add(VnOwner(vnid))
            own.update(att.key for att in db.attachments_in(vnid)
                       if att.nve == dpid or att.mobility is not None
                       or att.migration is not None)
        return own

    def _refresh_layers(self, ts_owners):
        """The shared specs of these tenant systems, in every layer of
        their VNs (before the NVEs' own: those that differ are kept as
        the NVEs' own)."""
        by_vn = collections.defaultdict(set)
        for owner in ts_owners:
            by_vn[owner.vnid].add(owner)
        for vnid, owners in by_vn.items():
            for layer in self.tables.layers_of(vnid):
                self.tables.set_layer(layer, {
                    owner: flows.shared_view(self.db, self.cfg, layer.key,
                                             owner.mac)
                    for owner in owners})

    def _read_layers(self, dpid, vnids):
        """Which layer NVE ``dpid`` reads each VN's tenant systems from
        (made, and filled with every tenant system of the VN, when it is
        the first to read it)."""
        db, cfg = self.db, self.cfg
        for vnid in vnids:
            key = flows.layer_key(db, cfg, dpid, vnid)
            self.tables.read_layer(dpid, vnid, key, lambda key=key: {
                att.key: flows.shared_view(db, cfg, key, att.mac)
                for att in db.attachments_in(key[0])})

    def _recompute(self, dpid, owners):
        """Recompute ``owners`` on one NVE as one batch."""
        if self.layered:
            self._read_layers(dpid, {o.vnid for o in owners
                                     if o.kind in (VN, TS)})
        table = self.table(dpid)
        batch = {}
        for owner in owners:
            kind = owner.kind
            if kind == TS and self.layered and \
                    flows.sees_as_its_layer(self.db, dpid, owner):
                # Its view here is its layer's (spec() would make an equal
                # one): a remote tenant system costs each member NVE a
                # look-up, not a view, so an NVE that connects is planned
                # in the time of its own tenant systems, not its VNs'.
                if table.has_own(owner):
                    batch[owner] = table.shared_spec(owner)
                continue
            spec = flows.spec(self.db, self.cfg, dpid, owner)
            if kind == TS and spec is not None and self.layered:
                spec = _share_parts(spec, table.shared_spec(owner))
            batch[owner] = spec
            if kind == VN:
                self._hold(self.vn_holders, owner.vnid, dpid, spec)
            elif kind == IC:
                self._hold(self.ic_holders, owner.name, dpid, spec)
        table.set_owners(batch)

    @staticmethod
    def _hold(holders, key, dpid, spec):
        if spec:
            holders[key].add(dpid)
        elif key in holders:
            held = holders[key]
            held.discard(dpid)
            if not held:
                del holders[key]

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


def _share_parts(view, shared):
    """``view`` with the address tuples of ``shared`` (the layer's view of
    the same tenant system) where they are equal: its own NVE's view and
    the remote one then hold one copy of each (memory per mapping
    entry).  A plain view's gateway is in its ``ctx``, one tuple for
    the VN's views alike (flows.py)."""
    if shared is None or view == shared:
        return view
    parts = {f: getattr(shared, f) for f in ('ips', 'l3')
             if f in view._fields and
             getattr(view, f) is not getattr(shared, f) and
             getattr(view, f) == getattr(shared, f)}
    return view._replace(**parts) if parts else view
