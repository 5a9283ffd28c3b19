"""The Information Mapping Authority: every decision, none of the I/O.

One object owns the mapping database, the flow planner and the store.  The
os-ken app (app.py), the REST API (rest.py) and the registration RPC
(registration.py) translate their inputs into calls here and send what it
returns; time is always passed in.  After every change, :meth:`commit`
persists the changed records (durable before anyone is answered) and
recomputes the affected flows; the app then sends the differences.
"""

import collections
import ipaddress
import logging

from . import events as ev
from . import flows, mobility, model, packets, persist
from . import pipeline as P
from .planner import Planner
from .store import MemoryStore

LOG = logging.getLogger(__name__)


class Options:
    """Timing knobs of the authority (seconds)."""

    def __init__(self, nve_down_grace=30.0, port_down_grace=2.0,
                 mobility_options=None, max_macs_per_port=256,
                 idle_timeout=0.0):
        self.nve_down_grace = nve_down_grace
        # Learned tenant systems whose source flows counted no packet for
        # this long age out (0: never).  The counters come from the
        # periodic audit's dumps, so audit_interval must be shorter.
        self.idle_timeout = idle_timeout
        self.port_down_grace = port_down_grace
        # A port sending frames from ever new MACs (a MAC flood) stops
        # growing the database here; its extra sources are dropped.
        self.max_macs_per_port = max_macs_per_port
        self.mobility = mobility_options or mobility.MobilityOptions()


class Authority:
    """Decisions of the mapping authority, driven by events and time."""

    def __init__(self, flow_cfg=None, store=None, options=None,
                 event_log=None, start_time=0.0):
        self.flow_cfg = flow_cfg or flows.FlowConfig()
        self.options = options or Options()
        self.store = store if store is not None else MemoryStore()
        self.db = model.MappingDB(event_log)
        self.planner = Planner(self.db, self.flow_cfg)
        self.arbiter = mobility.MoveArbiter(self.db, self.options.mobility)
        self.counters = collections.Counter()
        self.listeners = []          # called with the set of changed NVEs
        self._moves = []             # move events not yet handed out
        self.convergence_ms = collections.deque(maxlen=1000)
        self.db.events.listeners.append(self._on_event)
        self._port_down = {}         # (dpid, port) -> since
        self._gleaned = {}           # (vnid, ip) -> last ARP from gateway
        self._source_counts = {}     # dpid -> {(vnid, mac): packets}
        records = self.store.load(check=persist.check_record)
        if records:
            persist.restore(self.db, records)
            # Until each NVE reconnects it counts as away since our start,
            # so one that never comes back is not tunnelled to for ever.
            for nve in self.db.nves.values():
                nve.dyn_down_since = start_time
        self.commit(start_time)

    @property
    def events(self):
        return self.db.events

    # -- the one way changes leave the authority --

    def commit(self, now):
        """Persist what changed, then recompute the flows it affects."""
        written = persist.save_changes(self.db, self.store)
        self.counters['store_records_written'] += written
        changed = self.planner.plan()
        for listener in self.listeners:
            listener(changed)
        return changed

    def run(self, now, func, /, *args, **kwargs):
        """Call a database operation and commit; a refused call changes
        nothing (model methods validate before they mutate)."""
        try:
            return func(*args, **kwargs)
        finally:
            self.commit(now)

    def _on_event(self, event):
        self.counters['events_' + event['type'].replace('-', '_')] += 1
        if event['type'] in (ev.MOVE, ev.ATTACH):
            self._moves.append(event)

    def take_moves(self):
        """Move and attach events not yet handed out (the app times how
        long their flows take to be acknowledged)."""
        moves, self._moves = self._moves, []
        return moves

    def record_convergence(self, event, seconds):
        """Every NVE a move (or attach) changed has acknowledged its new
        flows; ``convergence_ms`` only keeps the moves."""
        event['convergence_ms'] = round(seconds * 1000.0, 3)
        if event['type'] == ev.MOVE:
            self.convergence_ms.append(event['convergence_ms'])

    # -- switches --

    def switch_connected(self, dpid, ports, nve_mac, now):
        self.db.nve_connected(dpid, ports, nve_mac, now)
        for name in ports:
            self._port_down.pop((dpid, name), None)
        self.commit(now)

    def switch_disconnected(self, dpid, now):
        self.db.nve_disconnected(dpid, now)
        self.commit(now)

    def port_changed(self, dpid, name, ofport, now):
        """A port appeared (ofport) or went down/away (None).  Returns
        PacketOuts (frames of claims that the port's loss made moves)."""
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
        db, opts = self.db, self.options
        outs = self.arbiter.due(now)
        for (dpid, name), since in list(self._port_down.items()):
            if now - since < opts.port_down_grace:
                continue
            del self._port_down[(dpid, name)]
            nve = db.nves.get(dpid)
            if nve is not None and nve.ofport(name) is None:
                for att in list(db.attachments_at(dpid)):
                    if att.port == name:
                        db.remove_attachment(att, now, reason='port-down')
        if opts.idle_timeout > 0:
            for att in list(db.attachments.values()):
                nve = db.nves[att.nve]
                if att.source == 'learned' and nve.dyn_connected and \
                        now - att.last_seen >= opts.idle_timeout:
                    db.remove_attachment(att, now, reason='idle')
        for nve in list(db.nves.values()):
            if nve.dyn_down_since is not None and \
                    now - nve.dyn_down_since >= opts.nve_down_grace and any(
                        a.reachable for a in db.attachments_at(nve.dpid)):
                db.mark_unreachable(nve.dpid, now)
        self.commit(now)
        return outs

    def next_wakeup(self):
        """When :meth:`tick` next has work (a probe deadline), or None."""
        return self.arbiter.next_wakeup()

    # -- packet-ins --

    def packet_in(self, dpid, table_id, in_port, port_name, fields, data,
                  now):
        """A punted frame.  ``fields`` holds the pipeline fields of the
        packet-in (``reg6``, ``metadata``).  Returns PacketOuts to send."""
        self.counters['packet_in'] += 1
        try:
            frame = packets.parse_frame(data)
        except packets.MalformedFrame as exc:
            return self._drop(dpid, 'malformed', str(exc), now)
        nve = self.db.nves.get(dpid)
        if nve is None or port_name is None:
            return self._drop(dpid, 'unknown-port', in_port, now)
        if table_id == P.L2_FORWARD and frame.dst_mac == mobility.PROBE_MAC:
            self.counters['probe_answers'] += 1
            if self.arbiter.probe_answered(fields.get('metadata'),
                                           frame.src_mac, dpid, port_name,
                                           now):
                self.commit(now)
            return []
        if port_name in self.flow_cfg.tunnel_ports.values():
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
                self.options.max_macs_per_port:
            return self._drop(dpid, 'port_mac_limit', port_name, now)
        self.counters['packet_in_learn'] += 1
        try:
            att = self.db.learn(dpid, port_name, vlan, frame.src_mac,
                                frame.ip, now, how=frame.how)
        except model.MappingError as exc:
            self.commit(now)
            return self._drop(dpid, 'refused', exc.message, now)
        self.commit(now)
        if frame.ip is not None and frame.ip not in att.ips:
            # A registered L3 binding owns only the addresses its agent
            # gave (model.MappingDB.learns_addresses).
            return self._drop(dpid, 'unknown_source_ip', frame.ip, now)
        # Re-inject the frame at its port: the flows just sent precede it
        # on the same channel, so it is forwarded as the next frame will be.
        return [mobility.PacketOut(dpid, in_port, data, [('output', 'TABLE')])]

    def _macs_on(self, dpid, port):
        return sum(1 for att in self.db.attachments_at(dpid)
                   if att.port == port)

    def _learn_ip(self, att, ip, now):
        try:
            self.db.add_ip(att, ip, None, now)
        except model.MappingError:
            self.counters['dropped_ip_conflict'] += 1

    def observe_sources(self, dpid, flow_counts, now):
        """Packet counts of an NVE's source flows (from a dump): a tenant
        system whose counts moved since the last dump is still there."""
        totals = collections.Counter()
        for flow, packets_ in flow_counts:
            if flow.table == P.SOURCE and flow.priority in (
                    P.PRIO_HOST, P.PRIO_HOST_ANY, P.PRIO_ANNOUNCE):
                match = flow.match_dict
                totals[(match.get('metadata'), match.get('eth_src'))] += \
                    packets_
        seen = self._source_counts.setdefault(dpid, {})
        for key, count in totals.items():
            att = self.db.attachments.get(key)
            if att is not None and att.nve == dpid and \
                    count != seen.get(key):
                self.db.refresh_seen(att, now)
            seen[key] = count
        for key in set(seen) - set(totals):
            del seen[key]

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
        if now - self._gleaned.get((vnid, dst), -1e9) < 1.0:
            return []
        self._gleaned[(vnid, dst)] = now
        self.counters['gleans'] += 1
        request = packets.build_arp_request(vn.gateway_mac, gw_ip, dst)
        outs = []
        for member in sorted(self.db.members(vnid)):
            nve = self.db.nves[member]
            for ofport, vlan in flows.vn_ports(nve, vnid):
                data = request if vlan is None else \
                    packets.build_vlan_tagged(request, vlan)
                outs.append(mobility.PacketOut(member, 'CONTROLLER', data,
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
            return []
        self.counters['nd_answered'] += 1
        answer = packets.build_neighbor_advert(frame, mac)
        if reg6:
            answer = packets.build_vlan_tagged(answer, reg6)
        return [mobility.PacketOut(dpid, 'CONTROLLER', answer,
                                   [('output', in_port)])]

    def _drop(self, dpid, reason, detail, now):
        self.counters['dropped_' + reason.replace('-', '_')] += 1
        LOG.debug('dropped packet-in from %s: %s (%s)',
                  model.dpid_str(dpid), reason, detail)
        return []

    # -- views --

    def nve_view(self, nve):
        table = self.planner.tables.get(nve.dpid)
        return {
            'dpid': model.dpid_str(nve.dpid), 'name': nve.name,
            'vtep_ip': nve.vtep_ip, 'nve_mac': nve.dyn_mac,
            'connected': nve.dyn_connected, 'origin': nve.origin,
            'can_tunnel': bool(nve.vtep_ip),
            'vns': sorted(self.db.vns_of(nve.dpid)),
            'ports': {name: dict(b.to_dict(), ofport=nve.ofport(name))
                      for name, b in sorted(nve.bindings.items())},
            'flows_desired': table.n_desired if table else 0,
            'flows_pending': table.pending if table else 0,
        }

    def vn_members(self, vnid):
        vn = self.db.get_vn(vnid)
        return [{'nve': model.dpid_str(d),
                 'vtep_ip': self.db.nves[d].vtep_ip,
                 'tenant_systems': self.db.count_at(vn.vnid, d)}
                for d in sorted(self.db.members(vn.vnid))]

    def vn_mappings(self, vnid):
        vn = self.db.get_vn(vnid)
        out = []
        for att in sorted(self.db.attachments_in(vn.vnid),
                          key=lambda a: a.mac):
            out.extend(self.db.mapping_entries(att,
                                               self.flow_cfg.tunnel_ports))
        return out

    def find_mappings(self, mac=None, ip=None):
        mac = model.norm_mac(mac) if mac is not None else None
        ip = model.norm_ip(ip) if ip is not None else None
        out = []
        for att in self.db.attachments.values():
            if mac is not None and att.mac != mac:
                continue
            if ip is not None and ip not in att.ips:
                continue
            out.extend(e for e in self.db.mapping_entries(
                att, self.flow_cfg.tunnel_ports)
                if ip is None or e['ip'] == ip)
        return sorted(out, key=lambda e: (e['vnid'], e['mac'], e['ip'] or ''))


def gateway_for(vn, ip):
    """The VN's gateway address on the subnet of ``ip``, or None."""
    addr = ipaddress.ip_address(ip)
    for iface in vn.gateway_ips:
        iface = ipaddress.ip_interface(iface)
        if addr in iface.network:
            return str(iface.ip)
    return None


__all__ = ['Authority', 'Options', 'ev']
