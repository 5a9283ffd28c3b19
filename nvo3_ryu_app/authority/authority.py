"""The Information Mapping Authority: every decision, none of the I/O.

One object owns the mapping database, the flow planner (writing into the
flow tables it is given) and the store.  Writes come in through one front
door, :meth:`Authority.execute` with a command of commands.py (REST, the
registration RPC, the configuration file); the switches' events through
typed methods (:meth:`packet_in`, :meth:`port_changed`,
:meth:`switch_connected`, :meth:`switch_disconnected`, :meth:`tick`,
:meth:`observe_sources`), and BGP EVPN peers' through
:meth:`bgp_routes` and :meth:`bgp_session` (evpn.py decides).  Time is always passed in, and frames to send
are returned (messages.PacketOut; those a command causes, the probes of a
registration being verified, wait in :meth:`take_packet_outs`).  After
every change, :meth:`commit` persists the changed records (durable before
anyone is answered) and recomputes the affected flows; service.py then
sends the differences.

Who made each write (the audit trail): a command's ``actor`` while it is
carried out, ``switch`` while a switch's event is handled; every event
recorded meanwhile names it (events.EventLog.acting).

A registration that would take a tenant system (or its address) from a
live location is verified first (mobility.Verification): ``execute``
answers ``{"action": "pending", "verification": id, ...}`` and the
verdict (the registration's summary, or its refusal) is kept for
:meth:`take_verdict` once the probes were answered or timed out;
``verdict_listeners`` are told its id.
"""

import collections
import copy
import ipaddress
import logging

from . import bids
from . import commands as C
from . import declared, dryrun
from . import events as ev
from . import flows, migrations, mobility, model, packets, persist
from . import interconnect
from . import pipeline as P
from .addresses import dpid_str
from .commands import ACTOR_SWITCH
from .errors import Conflict, MappingError
from .evpn import Evpn, route_config
from .messages import PacketOut
from .planner import Planner
from .views import Views
from ..settings import Settings
from ..storage.store import MemoryStore

LOG = logging.getLogger(__name__)
MAX_VERDICTS = 1024          # verdicts kept for callers that stopped waiting


class Authority:
    """Decisions of the mapping authority, driven by events and time."""

    def __init__(self, tables, settings=None, store=None, event_log=None,
                 counters=None, start_time=0.0):
        self.settings = settings if settings is not None else Settings()
        self.store = store if store is not None else MemoryStore()
        self.db = model.MappingDB(event_log)
        self.planner = Planner(self.db, self.settings, tables)
        self.arbiter = mobility.MoveArbiter(self.db, self.settings)
        self.migrations = migrations.Migrations(self.db, self.settings,
                                                self.arbiter)
        self._commands = dict(self._handlers)
        self._commands[C.Migrate] = lambda db, c, now: \
            self.migrations.start(c.vnid, c.mac, c.nve, c.port, c.vlan, now)
        self._commands[C.CancelMigration] = lambda db, c, now: \
            self.migrations.cancel(c.vnid, c.mac, now)
        self.traffic = interconnect.Traffic()
        self.views = Views(self.db, self.settings, tables, self.traffic)
        self.counters = counters if counters is not None \
            else ev.Counters()
        self.evpn = Evpn(self.db, self.settings, self.counters)
        if self.evpn.enabled:
            # A VN that cannot be advertised is refused before it is made.
            self.db.evpn_check = lambda vnid, rts: route_config(
                self.settings, vnid, rts)
        # Called with the set of NVEs whose flows changed, and the time.
        self.listeners = []
        self._moves = []             # move events not yet handed out
        self.convergence_ms = collections.deque(maxlen=1000)
        self.db.event_log.listeners.append(self._on_event)
        self._port_down = {}         # (dpid, port) -> since
        self._gleaned = {}           # (vnid, ip) -> last ARP from gateway
        self._source_counts = {}     # dpid -> {(vnid, mac): packets}
        # Whether decisions about an NVE (its tenant systems ageing out,
        # being withdrawn, reachable or not) are this authority's: always
        # alone; in a cluster, those of the NVE's master (the service sets
        # it), so that one instance decides and the others get the records.
        self.decides = lambda dpid: True
        self._outs = []              # packet-outs commands caused
        self.verdicts = collections.OrderedDict()   # vid -> (result, error)
        self.verdict_listeners = []
        records = self.store.load(check=persist.check_record)
        # Until then (a restart), NVEs are planned as they connect (their
        # ports known): planning the whole fleet first, for nothing but to
        # plan each NVE again as it comes, held the start of a large one
        # (benchmarks/README.md, restart); those that stay away are
        # planned at the first tick from then on.
        self._plan_deferred_at = start_time + self.settings.stamp_wait
        if records:
            persist.restore(self.db, records)
            self.db.assume_away(start_time)
            self.planner.defer(self.db.nves)
        self.commit(start_time)

    @property
    def event_log(self):
        """The event log of the mapping database (REST /v1/events)."""
        return self.db.event_log

    # -- the one way changes leave the authority --

    def commit(self, now):
        """Settle what EVPN routes imply for the change (imported entries,
        moves across the boundary), persist what changed, then recompute
        the flows and the routes to advertise it affects."""
        self.evpn.settle(now)
        written = persist.save_changes(self.db, self.store, event_seq=True)
        self.counters['store_records_written'] += written
        touched = self.db.take_touched()
        changed = self.planner.plan(touched)
        self.evpn.note(touched)
        for listener in self.listeners:
            listener(changed, now)
        return changed

    def execute(self, command, now, dry_run=False):
        """The one front door for writes: carry out one command of
        commands.py and commit.  A refused command (MappingError, or
        declared.ConfigError for a bad document) changes nothing: the
        database validates completely before it mutates.

        With ``dry_run`` the command runs on a throw-away copy and the
        answer is a dryrun.DryRun saying what it would change (flow-mods
        per NVE, mapping entries, records, events): nothing applied,
        persisted or sent, no event recorded."""
        handler = self._commands.get(type(command))
        if handler is None:
            raise TypeError('not a command: %r' % (command,))
        if dry_run:
            # The copies it plans into start from every NVE's table.
            self.planner.plan_deferred()
            if type(command) is C.Associate:
                handler = lambda db, c, now: self._associate(c, None, now, db)
            elif type(command) in (C.Migrate, C.CancelMigration):
                handler = self._dry_migration
            return dryrun.dry_run(self, handler, command, now)
        actor = getattr(command, 'actor', None) or 'unknown'
        LOG.info('%s by %s', type(command).__name__, actor)
        with self.db.event_log.acting(actor):
            try:
                if type(command) is C.Associate:
                    # Not the table's: it may hold the registration while
                    # the switches are asked (and needs the arbiter).
                    return self._associate(command, actor, now)
                return handler(self.db, command, now)
            finally:
                self.commit(now)

    _handlers = {
        C.CreateVN: lambda db, c, now: db.create_vn(
            c.vnid, c.name, c.service, c.encap, c.gateway_mac,
            c.gateway_ips, origin=c.origin, now=now, evpn=c.evpn,
            route_targets=c.route_targets),
        C.UpdateVN: lambda db, c, now: db.update_vn(
            c.vnid, now=now, origin=c.origin, **c.changes),
        C.DeleteVN: lambda db, c, now: db.delete_vn(c.vnid, now=now),
        C.RegisterNVE: lambda db, c, now: db.register_nve(
            c.dpid, c.vtep_ip, c.name, origin=c.origin, now=now,
            role=c.role),
        C.DeleteNVE: lambda db, c, now: _deleted(db.delete_nve(c.dpid,
                                                               now=now)),
        C.BindPort: lambda db, c, now: db.bind_port(
            c.dpid, c.port, vnid=c.vnid, vlans=c.vlans, origin=c.origin,
            now=now, override=c.override),
        C.UnbindPort: lambda db, c, now: db.unbind_port(
            c.dpid, c.port, now=now, origin=c.origin),
        C.Associate: lambda db, c, now: bids.associate(
            db, c.nve, c.port, c.mac, c.vnid, ip=c.ip, vlan=c.vlan,
            bid=c.bid, now=now),
        C.Dissociate: lambda db, c, now: bids.dissociate(
            db, c.nve, c.mac, bid=c.bid, now=now),
        C.PutInterconnect: lambda db, c, now: interconnect.put_interconnect(
            db, c.name, c.gateway, c.vns, c.allowed_macs, c.router,
            origin=c.origin, now=now),
        C.DeleteInterconnect: lambda db, c, now:
            interconnect.delete_interconnect(db, c.name, now),
        C.PutExternal: lambda db, c, now: interconnect.put_external(
            db, c.name, c.gateway, c.port, c.vnid, c.vlans, c.allowed_macs,
            origin=c.origin, now=now),
        C.DeleteExternal: lambda db, c, now: interconnect.delete_external(
            db, c.name, now),
        C.ApplyConfig: lambda db, c, now: declared.apply(
            db, c.document, now, origin=c.origin),
    }

    # -- registrations that would take over a live location --

    def _dry_migration(self, db, command, now):
        """A migration command on a dry run's copy ``db``: its own arbiter
        (a copy of ours over ``db``), so nothing of ours changes."""
        arbiter = copy.copy(self.arbiter)
        arbiter.db = db
        arbiter.claims = dict(self.arbiter.claims)
        arbiter.redirecting = dict(self.arbiter.redirecting)
        arbiter.verifications = dict(self.arbiter.verifications)
        dry = migrations.Migrations(db, self.settings, arbiter)
        if type(command) is C.Migrate:
            return dry.start(command.vnid, command.mac, command.nve,
                             command.port, command.vlan, now)
        return dry.cancel(command.vnid, command.mac, now)

    def _associate(self, command, actor, now, db=None):
        """Carry out a registration at once, or hold it while what it
        would take over is probed (module docstring).  On another ``db``
        (a dry run's copy) a registration that would be held says so and
        nothing is probed."""
        c = command
        db = self.db if db is None else db
        plan = bids.plan_associate(db, c.nve, c.port, c.mac, c.vnid,
                                   ip=c.ip, vlan=c.vlan, bid=c.bid)
        targets = bids.live_targets(
            db, plan, lambda att: mobility.location_live(db, att))
        if not targets:
            return bids.apply_plan(db, plan, now)
        for att, ip, _ in targets:
            if ip is None:
                raise Conflict(
                    '%s is live in VN %d at NVE %s port %s and has no IPv4 '
                    'address to probe it for: a registration does not take '
                    'it over (de-register it there first)' % (
                        att.mac, att.vnid, dpid_str(att.nve), att.port),
                    'mac')
        held = {'action': 'pending', 'mac': plan.mac,
                'vnid': plan.vn.vnid, 'nve': dpid_str(plan.dpid),
                'port': plan.port,
                'probed': [{'mac': att.mac, 'vnid': att.vnid,
                            'nve': dpid_str(att.nve), 'port': att.port,
                            'reason': reason}
                           for att, _, reason in targets]}
        if db is not self.db:
            return held
        vid, probes = self.arbiter.verify(c, actor, targets,
                                          (plan.dpid, plan.port), now)
        self._outs.extend(probes)
        self.counters['registrations_verified'] += 1
        return dict(held, verification=vid)

    def _verified(self, verification, now):
        """Its probes went unanswered: carry the registration out, unless
        the database changed so that it would take over something else
        live."""
        c = verification.command
        with self.db.event_log.acting(verification.actor):
            try:
                plan = bids.plan_associate(self.db, c.nve, c.port, c.mac,
                                           c.vnid, ip=c.ip, vlan=c.vlan,
                                           bid=c.bid)
                targets = bids.live_targets(
                    self.db, plan,
                    lambda att: mobility.location_live(self.db, att))
                if any((att.key, att.nve, att.port) not in
                       verification.probed for att, _, _ in targets):
                    raise Conflict('what %s would take over changed while it '
                                   'was verified; register again' % c.mac,
                                   'mac')
                result = bids.apply_plan(self.db, plan, now)
            except MappingError as exc:
                self._verdict(verification.vid, None, exc)
            else:
                self._verdict(verification.vid, result, None)

    def _verdict(self, vid, result, error):
        self.verdicts[vid] = (result, error)
        while len(self.verdicts) > MAX_VERDICTS:
            self.verdicts.popitem(last=False)
        self.counters['registrations_%s' % (
            'refused' if error is not None else 'verified_ok')] += 1
        for listener in self.verdict_listeners:
            listener(vid)

    def take_verdict(self, vid):
        """``(result, error)`` of registration ``vid`` once decided (and
        forgotten), else None."""
        return self.verdicts.pop(vid, None)

    def take_packet_outs(self):
        """Frames commands asked to send (probes), and forget them."""
        outs, self._outs = self._outs, []
        return outs

    def expected_flows(self, dpid):
        """What a from-scratch computation says NVE ``dpid`` must hold
        (key -> flow or meter): audits compare it with the flow table."""
        return self.planner.expected(dpid)

    def _on_event(self, event):
        self.counters['events_' + event['type'].replace('-', '_')] += 1
        if event['type'] in (ev.MOVE, ev.ATTACH, ev.MIGRATION_COMPLETED):
            self._moves.append(event)

    def take_moves(self):
        """Move, attach and migration-completed events not yet handed out
        (the app times how long their flows take to be acknowledged)."""
        moves, self._moves = self._moves, []
        return moves

    def record_convergence(self, event, seconds):
        """Every NVE a move (or attach) changed has acknowledged its new
        flows; ``convergence_ms`` only keeps the moves."""
        event['convergence_ms'] = round(seconds * 1000.0, 3)
        if event['type'] == ev.MOVE:
            self.convergence_ms.append(event['convergence_ms'])
        elif event['type'] == ev.MIGRATION_COMPLETED:
            # Timed from its first frame at the new place: until then the
            # frames went to both places, from then on to the new only.
            event['switch_over_ms'] = event['convergence_ms']

    # -- BGP EVPN peers (peering/bgp.py hands their news in) --

    def bgp_routes(self, routes, now):
        """Peers advertised or withdrew routes: ``[(evpn.Route,
        withdraw)]``, in the order they came."""
        for route, withdraw in routes:
            self.evpn.receive(route, withdraw)
        self.commit(now)

    def bgp_session(self, neighbor, up, now, remote_as=None, router_id=None):
        """The BGP session with ``neighbor`` (its configured address) came
        up or went down; down, every route it sent is gone."""
        if up:
            self.db.event_log.record(now, ev.BGP_UP, neighbor=neighbor,
                                     remote_as=remote_as,
                                     router_id=router_id)
        else:
            self.db.event_log.record(now, ev.BGP_DOWN, neighbor=neighbor,
                                     remote_as=remote_as)
            self.evpn.peer_down(neighbor)
        self.commit(now)

    # -- switches --

    def switch_connected(self, dpid, ports, nve_mac, now):
        """NVE ``dpid`` connected with ``ports`` (name -> OpenFlow port) and
        its bridge MAC: its ports count as up again, and every flow it must
        hold is planned."""
        with self.db.event_log.acting(ACTOR_SWITCH):
            self.db.nve_connected(dpid, ports, nve_mac, now,
                                  decides=self.decides(dpid))
            for name in ports:
                self._port_down.pop((dpid, name), None)
            self.commit(now)

    def took_over(self, dpid, ports, nve_mac, now):
        """This instance became NVE ``dpid``'s master (a cluster): what its
        connection decides (the NVE is a record, its tenant systems are
        reachable) is decided now, by us."""
        self.switch_connected(dpid, ports, nve_mac, now)

    def apply_records(self, changes, now):
        """Records written elsewhere (``{(kind, key): value or None}``:
        another instance's change, or etcd's values after a refused write
        of ours) put in place, and their flows planned.  Returns the
        records left out (persist.apply)."""
        skipped = persist.apply(self.db, changes, now)
        self.counters['records_replicated'] += len(changes) - len(skipped)
        if skipped:
            self.counters['records_not_replicated'] += len(skipped)
            for (kind, key), why in sorted(skipped.items(), key=repr)[:5]:
                LOG.warning('replicated %s record %r left out: %s', kind,
                            key, why)
        self.commit(now)
        return skipped

    def switch_disconnected(self, dpid, now):
        """NVE ``dpid``'s channel went down: it is away (tunnelled to until its
        grace period ends)."""
        with self.db.event_log.acting(ACTOR_SWITCH):
            self.db.nve_disconnected(dpid, now)
            self.commit(now)

    def port_changed(self, dpid, name, ofport, now):
        """A port appeared (ofport) or went down/away (None).  Returns
        PacketOuts (frames of claims that the port's loss made moves)."""
        with self.db.event_log.acting(ACTOR_SWITCH):
            return self._port_changed(dpid, name, ofport, now)

    def _port_changed(self, dpid, name, ofport, now):
        outs = []
        if ofport is None:
            self._port_down.setdefault((dpid, name), now)
        else:
            self._port_down.pop((dpid, name), None)
        self.db.port_status(dpid, name, ofport, now)
        if ofport is None:
            outs = self.arbiter.location_gone(dpid, name, now)
        self.commit(now)
        return outs

    def tick(self, now):
        """Time passes: probes time out, grace periods and redirects end.
        Returns PacketOuts (frames of claims that became moves)."""
        with self.db.event_log.acting(ACTOR_SWITCH):
            return self._tick(now)

    def _tick(self, now):
        db, opts = self.db, self.settings
        outs = self.arbiter.due(now)
        decides = self.decides
        self.migrations.due(now)
        for verification in self.arbiter.due_verifications(now):
            self._verified(verification, now)
        for (dpid, name), since in list(self._port_down.items()):
            if now - since < opts.port_down_grace or not decides(dpid):
                continue
            del self._port_down[(dpid, name)]
            nve = db.nves.get(dpid)
            if nve is not None and nve.ofport(name) is None:
                for att in list(db.attachments_at(dpid)):
                    if att.port != name:
                        continue
                    if self.migrations.holds(att):
                        self._port_down[(dpid, name)] = since  # ask again
                    else:
                        db.remove_attachment(att, now, reason='port-down')
        if opts.idle_timeout > 0:
            for att in list(db.attachments.values()):
                if att.source != 'learned':
                    continue             # imported ones: their routes say
                nve = db.nves[att.nve]
                if nve.dyn_connected and \
                        now - att.last_seen >= opts.idle_timeout and \
                        decides(att.nve):
                    db.remove_attachment(att, now, reason='idle')
        for nve in list(db.nves.values()):
            if nve.dyn_down_since is not None and \
                    now - nve.dyn_down_since >= opts.nve_down_grace and \
                    decides(nve.dpid) and any(
                        a.reachable for a in db.attachments_at(nve.dpid)):
                db.mark_unreachable(nve.dpid, now)
        if self.planner.deferred and now >= self._plan_deferred_at:
            self.planner.plan_deferred()
        self.commit(now)
        return outs

    def next_wakeup(self):
        """When :meth:`tick` next has work (a probe or migration deadline),
        or None."""
        times = [t for t in (self.arbiter.next_wakeup(),
                             self.migrations.next_wakeup()) if t is not None]
        return min(times) if times else None

    # -- packet-ins --

    def packet_in(self, dpid, table_id, in_port, port_name, fields, data,
                  now):
        """A punted frame.  ``fields`` holds the pipeline fields of the
        packet-in (``reg6``, ``metadata``) and the ``cookie`` of the flow
        that sent it.  Returns PacketOuts to send."""
        with self.db.event_log.acting(ACTOR_SWITCH):
            return self._packet_in(dpid, table_id, in_port, port_name,
                                   fields, data, now)

    def _packet_in(self, dpid, table_id, in_port, port_name, fields, data,
                   now):
        self.counters['packet_in'] += 1
        per_nve = getattr(self.counters, 'per_nve', None)
        if per_nve is not None:
            per_nve[dpid]['packet_in'] += 1
        try:
            frame = packets.parse_frame(data)
        except packets.MalformedFrame as exc:
            return self._drop(dpid, 'malformed', str(exc), now)
        nve = self.db.nves.get(dpid)
        if table_id == P.INTERCONNECT and nve is not None:
            # A gateway's frame for a routed subnet across an interconnect
            # whose host is not known yet (its in_port was cleared).
            return self._glean_across(dpid, fields.get('metadata'), frame,
                                      now)
        if nve is None or port_name is None:
            return self._drop(dpid, 'unknown-port', in_port, now)
        if table_id == P.L2_FORWARD and frame.dst_mac == P.PROBE_MAC:
            self.counters['probe_answers'] += 1
            vnid = fields.get('metadata')
            refused = self.arbiter.verification_answered(
                vnid, frame.src_mac, dpid, port_name, now)
            if refused is not None:
                self._verdict(refused.vid, None, Conflict(
                    '%s answered at NVE %s port %s: the registration of %s '
                    'at NVE %s port %s would take it over (refused; '
                    'de-register it there first)' % (
                        frame.src_mac, dpid_str(dpid), port_name,
                        refused.command.mac, dpid_str(refused.claimant[0]),
                        refused.claimant[1]), 'mac'))
            if self.arbiter.probe_answered(vnid, frame.src_mac, dpid,
                                           port_name, now) or refused:
                self.commit(now)
            return []
        if port_name in self.settings.tunnel_ports.values():
            return self._drop(dpid, 'unknown-vnid', port_name, now)
        reg6 = fields.get('reg6') or None
        vlan = frame.vlan if table_id == P.CLASSIFY else reg6
        vnid = self.db.binding_vn(dpid, port_name, vlan)
        if vnid is None:
            return self._drop(dpid, 'unbound-port', port_name, now)
        if table_id == P.ARP_ND_RESPONDER and frame.how == 'nd-ns':
            return self._answer_ns(dpid, vnid, frame, in_port, reg6)
        if table_id == P.L3_ROUTE:
            return self._glean(dpid, vnid, frame, now)
        if vlan is not None and table_id != P.CLASSIFY:
            data = packets.build_vlan_tagged(data, vlan)  # popped in table 0
        att = self.db.attachments.get((vnid, frame.src_mac))
        if att is not None and self.migrations.is_arrival(att, dpid,
                                                          port_name, vlan):
            self.counters['packet_in_claim'] += 1
            forwarded = bool(fields.get('cookie', 0) & P.COOKIE_FORWARDED)
            outs = self.migrations.arrived(att, frame, in_port, data,
                                           forwarded, now)
            self.commit(now)
            return outs
        if att is not None and (att.nve, att.port, att.vlan) != (
                dpid, port_name, vlan):
            self.counters['packet_in_claim'] += 1
            if att.source == 'registered':
                return self._drop(dpid, 'registered-elsewhere',
                                  frame.src_mac, now)
            outs = self.arbiter.claim(att, dpid, port_name, vlan, frame,
                                      in_port, data, now)
            if outs and outs[0].dpid == dpid and frame.ip \
                    and frame.ip not in att.ips:
                self._learn_ip(att, frame.ip, now)
            self.commit(now)
            return outs
        if att is None and self._macs_on(dpid, port_name) >= \
                self.settings.max_macs_per_port:
            return self._drop(dpid, 'port_mac_limit', port_name, now)
        self.counters['packet_in_learn'] += 1
        try:
            att = self.db.learn(dpid, port_name, vlan, frame.src_mac,
                                frame.ip, now, how=frame.how)
        except MappingError as exc:
            self.commit(now)
            return self._drop(dpid, 'refused', exc.message, now)
        self.commit(now)
        if frame.ip is not None and frame.ip not in att.ips:
            # A registered L3 binding owns only the addresses its agent
            # gave (model.MappingDB.learns_addresses).
            return self._drop(dpid, 'unknown_source_ip', frame.ip, now)
        # Re-inject the frame at its port: the flows just sent precede it
        # on the same channel, so it is forwarded as the next frame will be.
        return [PacketOut(dpid, in_port, data, [('output', 'TABLE')])]

    def _macs_on(self, dpid, port):
        return sum(1 for att in self.db.attachments_at(dpid)
                   if att.port == port)

    def _learn_ip(self, att, ip, now):
        try:
            self.db.add_ip(att, ip, None, now)
        except MappingError:
            self.counters['dropped_ip_conflict'] += 1

    def observe_sources(self, dpid, flow_counts, now):
        """Packet counts of an NVE's source flows (from a dump): a tenant
        system whose counts moved since the last dump is still there."""
        totals = collections.Counter()
        for flow, packets_, *_ in flow_counts:
            if flow.table == P.SOURCE and flow.priority in (
                    P.PRIO_HOST, P.PRIO_HOST_ANY, P.PRIO_ANNOUNCE):
                match = flow.match_dict
                totals[(match.get('metadata'), match.get('eth_src'))] += \
                    packets_
        seen = self._source_counts.setdefault(dpid, {})
        decides = self.decides(dpid)
        for key, count in totals.items():
            att = self.db.attachments.get(key)
            if att is not None and att.nve == dpid and decides and \
                    count != seen.get(key):
                self.db.refresh_seen(att, now)
            seen[key] = count
        for key in set(seen) - set(totals):
            del seen[key]

    def observe_gateway(self, dpid, flow_counts, now):
        """Counters of a gateway's flows (from a dump: ``[(Flow, packets,
        bytes)]``): the traffic of its interconnects."""
        self.traffic.observe(self.db, dpid, flow_counts, now)

    def _glean(self, dpid, vnid, frame, now):
        """A routed packet for an address nobody announced: ask for it
        from the gateway on every member NVE's access ports of the VN."""
        vn = self.db.vns.get(vnid)
        dst = frame.dst_ip
        if vn is None or vn.service != 'l3' or dst is None or ':' in dst:
            return self._drop(dpid, 'not_routable', dst, now)
        if self.db.lookup_ip(vnid, dst) is not None:
            return []              # its routes are on their way
        gw_ip = gateway_for(vn, dst)
        if gw_ip is None:
            return self._drop(dpid, 'no_route', dst, now)
        return self._ask(vnid, vn.gateway_mac, gw_ip, dst, now)

    def _glean_across(self, dpid, vnid, frame, now):
        """The same for a subnet across a routed interconnect of gateway
        ``dpid``: asked in the other VN, from the gateway's address
        there."""
        db, dst = self.db, frame.dst_ip
        if dst is None or ':' in dst:
            return self._drop(dpid, 'not_routable', dst, now)
        for ic in db.interconnects_of(vnid):
            other = ic.other(vnid)
            if ic.gateway != dpid or not interconnect.routed(db, ic) or \
                    not interconnect.routable(db, ic, other, dst):
                continue
            if db.lookup_ip(other, dst) is not None:
                return []          # its route is on its way
            gw_mac, ifaces = interconnect.side(db, ic, other)
            for iface in ifaces:
                iface = ipaddress.ip_interface(iface)
                if ipaddress.ip_address(dst) in iface.network:
                    return self._ask(other, gw_mac, str(iface.ip), dst, now)
        return self._drop(dpid, 'no_route', dst, now)

    def _ask(self, vnid, gw_mac, gw_ip, dst, now):
        """An ARP request for ``dst`` from ``gw_ip`` out of the VN's ports
        on every member NVE, at most once a second per address."""
        if now - self._gleaned.get((vnid, dst), -1e9) < 1.0:
            return []
        self._gleaned[(vnid, dst)] = now
        self.counters['gleans'] += 1
        request = packets.build_arp_request(gw_mac, gw_ip, dst)
        outs = []
        for member in sorted(self.db.members(vnid)):
            nve = self.db.nves[member]
            for ofport, vlan in flows.bum_ports(self.db, nve, vnid):
                data = request if vlan is None else \
                    packets.build_vlan_tagged(request, vlan)
                outs.append(PacketOut(member, 'CONTROLLER', data,
                                               [('output', ofport)]))
        return outs

    def _answer_ns(self, dpid, vnid, frame, in_port, reg6):
        att = self.db.lookup_ip(vnid, frame.nd_target)
        vn = self.db.vns.get(vnid)
        if att is not None and att.mac == frame.src_mac:
            # Its own solicitation (DAD from ``::``, or of its own address):
            # an answer would make the guest give its address up.  Table 1
            # sends these past the responder; a frame that was punted
            # before its flows were in place can still get here.
            self.counters['nd_own_not_answered'] += 1
            return []
        if att is not None:
            mac = att.mac
        elif vn is not None and vn.service == 'l3' and \
                frame.nd_target in vn.gateway_host_ips():
            mac = vn.gateway_mac
        else:
            mac = interconnect.answer_for(self.db, vnid, frame.nd_target)
            if mac is None:
                return []
        self.counters['nd_answered'] += 1
        answer = packets.build_neighbor_advert(frame, mac)
        if reg6:
            answer = packets.build_vlan_tagged(answer, reg6)
        return [PacketOut(dpid, 'CONTROLLER', answer,
                                   [('output', in_port)])]

    def _drop(self, dpid, reason, detail, now):
        self.counters['dropped_' + reason.replace('-', '_')] += 1
        LOG.debug('dropped packet-in from %s: %s (%s)',
                  dpid_str(dpid), reason, detail)
        return []


def _deleted(nve):
    return {'dpid': dpid_str(nve.dpid), 'connected': nve.dyn_connected}


def gateway_for(vn, ip):
    """The VN's gateway address on the subnet of ``ip``, or None."""
    addr = ipaddress.ip_address(ip)
    for iface in vn.gateway_ips:
        iface = ipaddress.ip_interface(iface)
        if addr in iface.network:
            return str(iface.ip)
    return None


__all__ = ['Authority', 'ev']
