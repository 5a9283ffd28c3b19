"""Which owners on which NVEs a database change affects, and recomputing them.

The mapping database notes what it touched (VNs, NVEs, attachments).  The
planner turns that into (NVE, owner) pairs and recomputes only those, using
the same :func:`flows.compute` that a full recompute uses; that equality is
checked by the unit tests after every scenario (incremental == recompute).
"""

import collections

from . import flows
from .reconcile import NveFlowTable


class Planner:
    """Keeps every NVE's desired flows up to date with the database."""

    def __init__(self, db, cfg):
        self.db = db
        self.cfg = cfg
        self.tables = {}                            # dpid -> NveFlowTable
        self.holders = collections.defaultdict(set)  # owner -> {dpid}
        self.ts_held = collections.defaultdict(set)  # vnid -> {mac} held

    def table(self, dpid):
        table = self.tables.get(dpid)
        if table is None:
            table = self.tables[dpid] = NveFlowTable()
        return table

    def plan(self):
        """Apply the database's touched set; returns the NVEs that changed."""
        vns, nves, entries, members = self.db.take_touched()
        pairs = set()
        for vnid, mac in entries:
            pairs |= self._everywhere(('ts', vnid, mac), vnid)
        for vnid in vns:
            # The VN itself changed (or went): everything of it, everywhere.
            pairs |= self._everywhere(('vn', vnid), vnid)
            for mac in self._macs(vnid):
                pairs |= self._everywhere(('ts', vnid, mac), vnid)
        for vnid, dpid in members:
            # ``dpid`` joined or left: every member's flood list changes,
            # and ``dpid`` gains or loses every tenant system of the VN.
            pairs |= self._everywhere(('vn', vnid), vnid)
            pairs.add((dpid, ('vn', vnid)))
            pairs |= {(dpid, ('ts', vnid, mac)) for mac in self._macs(vnid)}
        for dpid in nves:
            pairs |= self._nve_affected(dpid)
        by_nve = collections.defaultdict(list)
        for dpid, owner in pairs:
            by_nve[dpid].append(owner)
        for dpid, owners in by_nve.items():
            self._recompute(dpid, owners)
        return {dpid for dpid in by_nve if self.tables[dpid].dirty}

    def _macs(self, vnid):
        return {a.mac for a in self.db.attachments_in(vnid)} | set(
            self.ts_held.get(vnid, ()))

    def _everywhere(self, owner, vnid):
        targets = self.db.flow_members(vnid) | self.holders.get(owner, set())
        return {(dpid, owner) for dpid in targets}

    def _nve_affected(self, dpid):
        """An NVE's ports, VTEP or reachability changed."""
        pairs = {(dpid, owner) for owner in flows.owners_for(self.db, dpid)}
        table = self.tables.get(dpid)
        if table is not None:
            pairs |= {(dpid, owner) for owner in table.owners()}
        # Everyone in its VNs tunnels to it: their routes and flood lists.
        for vnid in self.db.flow_vns_of(dpid):
            for member in self.db.flow_members(vnid):
                pairs.add((member, ('vn', vnid)))
                for att in self.db.attachments_at(dpid):
                    if att.vnid == vnid:
                        pairs.add((member, ('ts', vnid, att.mac)))
        return pairs

    def _recompute(self, dpid, owners):
        """Recompute ``owners`` on one NVE as one batch."""
        batch = {owner: flows.compute(self.db, self.cfg, dpid, owner)
                 for owner in owners}
        self.table(dpid).set_owners(batch)
        for owner, items in batch.items():
            if items:
                self.holders[owner].add(dpid)
                if owner[0] == 'ts':
                    self.ts_held[owner[1]].add(owner[2])
                continue
            held = self.holders.get(owner)
            if held is None:
                continue
            held.discard(dpid)
            if not held:
                del self.holders[owner]
                if owner[0] == 'ts':
                    self.ts_held[owner[1]].discard(owner[2])

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
