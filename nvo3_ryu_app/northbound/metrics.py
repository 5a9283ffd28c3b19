"""Prometheus metrics of the mapping authority (served at ``GET /metrics``).

Why a registry of our own: prometheus_client's global registry also carries
process and platform collectors and anything a library registers; a private
:class:`CollectorRegistry` per app makes the scrape exactly ours and lets
tests build as many apps as they like without "duplicated timeseries"
errors.

Why a custom collector: the app already counts what happens in one
``Counters`` object (authority/events.py: packet_in, dropped_<reason>,
flow_mods, ...) and already holds the state the gauges describe (VNs,
attachments, flow tables).  Reading them at scrape time, through the narrow
interfaces the collector is given (the counters, the read-only views, the
event log, a sync-status and a store-figures callable), keeps the decision
code free of prometheus_client and every figure exactly consistent with the
REST view.  Only what nobody else counts is counted here: events by type
(through an EventLog listener), REST requests and latencies (observed by
rest/server.py), and the latency histograms other modules ``observe()``.

Process-wide histograms (:data:`handling_latency`, :data:`convergence`,
:data:`loop_lag`, :data:`gc_pause`) are module objects, unregistered, that
every :class:`Metrics` registry adds; a collector may sit in several
registries, so this costs nothing.
"""

import collections
import gc
import platform
import re
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (CounterMetricFamily,
                                            GaugeMetricFamily)
from prometheus_client.registry import Collector

from .. import __version__
from ..authority.addresses import dpid_str

PREFIX = 'nvo3_'

# Packet-in handling time (parse, learn, commit, plan): observed by app.py.
handling_latency = Histogram(
    'nvo3_packet_in_seconds', 'Time to handle one packet-in.',
    buckets=(.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1.0),
    registry=None)

# Time from a move being seen to every member NVE acknowledging its flows.
convergence = Histogram(
    'nvo3_move_convergence_seconds',
    'Time from a tenant-system move to all member NVEs in sync.',
    buckets=(.005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0),
    registry=None)

# An announced migration's switch-over: from the vNIC's first frame at its
# new place (its frames already went to both places) to every member NVE
# acknowledging that only the new place remains.
switch_over = Histogram(
    'nvo3_migration_switchover_seconds',
    'Time from a migrating vNIC\'s first frame at its new place to every '
    'member NVE delivering to that place only.',
    buckets=(.005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0),
    registry=None)

# How late the app's event loop wakes a greenlet that asked to sleep: what a
# REST request or a packet-in waits for whatever runs before it.  Observed
# by app.py's lag probe.
loop_lag = Histogram(
    'nvo3_event_loop_lag_seconds',
    'Lateness of a 10 ms timer on the app\'s event loop.',
    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5),
    registry=None)

# A cluster of authorities: how long each etcd transaction of the mapping
# database took (one per drain: group commit), observed by the store.
etcd_txn = Histogram(
    'nvo3_etcd_txn_seconds', 'Time of one etcd transaction of the mapping '
    'database (a cluster).',
    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5),
    registry=None)

# Pauses of Python's cyclic garbage collector, by generation: a full
# (generation 2) collection stops everything and grows with the heap.
gc_pause = Histogram(
    'nvo3_gc_pause_seconds', 'Cyclic garbage collector pauses.',
    ['generation'],
    buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0),
    registry=None)


def _gc_timer():
    started = [0.0]

    def callback(phase, info):
        if phase == 'start':
            started[0] = time.perf_counter()
        else:
            gc_pause.labels(str(info['generation'])).observe(
                time.perf_counter() - started[0])
    return callback


gc.callbacks.append(_gc_timer())

# Counters of authority.counters that get a name of their own (and help
# text); any other key ``foo`` is exposed as ``nvo3_foo_total``.
NAMED_COUNTERS = {
    'packet_in': ('packet_ins_received', 'Packet-ins received.'),
    'packet_in_learn': ('packet_ins_learned',
                        'Packet-ins that reached learning.'),
    'nd_answered': ('nd_answered',
                    'IPv6 neighbour solicitations answered by the app.'),
    'flow_mods': ('flow_mods_sent', 'Flow and meter changes sent to NVEs.'),
    'of_errors': ('of_errors', 'OpenFlow error messages received.'),
    'audits': ('audits', 'Flow audits completed.'),
    'audit_repairs': ('audit_repairs',
                      'Flow differences an audit found and repaired.'),
    'sync_repairs': ('sync_repairs',
                     'Flow differences repaired when an NVE connected.'),
    'stamp_matches': ('stamp_matches',
                      'NVEs found in sync by their stamp when they connected '
                      '(no dump; verified by an audit later).'),
    'stamp_mismatches': ('stamp_mismatches',
                         'NVEs whose stamp was missing or not the digest of '
                         'what they must hold when they connected (dumped).'),
    'stamp_writes': ('stamp_writes',
                     'Stamps written (one flow-mod each, not counted in '
                     'flow_mods_sent).'),
    'stamp_refused': ('stamp_refused',
                      'Stamps an NVE refused (it is not stamped again).'),
    'store_records_written': ('store_records_written',
                              'Records written to the mapping store.'),
    'packet_in_claim': ('packet_ins_claimed',
                        'Packet-ins of a known tenant system at a new '
                        'place (a move or a conflict).'),
    'probe_answers': ('probe_answers', 'Answers to mobility probes.'),
    'flow_mods_unencodable': (
        'flow_mods_unencodable',
        'Flow changes left out of a batch because a value could not be '
        'encoded (the rest of the batch is sent).'),
    'flow_mods_refused': ('flow_mods_refused',
                          'Flow changes an NVE refused with an error.'),
    'of_bad_messages': ('openflow_bad_messages',
                        'OpenFlow messages rejected as nonsense (the switch '
                        'was disconnected).'),
    'of_ignored_messages': ('openflow_ignored_messages',
                            'Valid OpenFlow messages the app never asks '
                            'for, dropped unparsed.'),
    'nve_reply_timeouts': ('nve_reply_timeouts',
                           'NVEs disconnected for leaving an echo, barrier '
                           'or dump unanswered.'),
    'packet_outs_dropped': ('packet_outs_dropped',
                            'Packet-outs dropped: too many waiting for one '
                            'NVE, or its send queue full.'),
    'gleans': ('gleans', 'ARP requests or neighbour solicitations the app '
               'sent for an address of a tenant system it did not know yet.'),
    'nd_own_not_answered': (
        'nd_own_not_answered',
        'Duplicate-address probes of a tenant system for its own address, '
        'left unanswered (an answer would make it give the address up).'),
    'rpc_timeouts': ('rpc_timeouts', 'Registration RPC connections closed '
                     'for sending a request too slowly.'),
    'rpc_bad_messages': ('rpc_bad_messages',
                         'Registration RPC messages that were not '
                         'msgpack-RPC (the connection was closed).'),
    'rpc_notifications_ignored': (
        'rpc_notifications_ignored',
        'Registration RPC notifications (requests without an id), ignored.'),
    # heaptrim.py: freed heap given back to the system when switches rest.
    'heap_trims': ('heap_trims', 'Times the freed C heap was given back to '
                   'the system (malloc_trim).'),
    'heap_trimmed_bytes': ('heap_trimmed_bytes', 'Resident memory the heap '
                           'trims gave back to the system.'),
    'heap_trim_seconds': ('heap_trim_seconds', 'Time the event loop spent '
                          'in heap trims.'),
}
RPC_REQUESTS = 'rpc_requests_'
# Figures of storage/store.py: (metric name, help, factor to base units).
STORE_FIGURES = {
    'records': ('store_records', 'Records in the mapping store.', 1),
    'journal_bytes': ('store_journal_bytes',
                      'Size of the mapping store\'s journal.', 1),
    'snapshot_bytes': ('store_snapshot_bytes',
                       'Size of the mapping store\'s newest snapshot.', 1),
    'last_fsync_ms': ('store_last_fsync_seconds',
                      'Duration of the newest fsync of the journal.', 1e-3),
    'commits': ('store_commits', 'Commits of the mapping store since '
                'start (a gauge: the store counts them).', 1),
}
DROPPED = 'dropped_'
# Drop reasons decided after a packet-in was already counted as a learn or
# a claim (so "by kind" stays a partition of all packet-ins).
LATE_DROPS = ('refused', 'ip_conflict', 'registered_elsewhere',
              'unknown_source_ip')
EVENTS = 'events_'    # the authority counts events by type itself
MIGRATION_EVENTS = {'migration-started': 'started',
                    'migration-completed': 'completed',
                    'migration-cancelled': 'cancelled',
                    'migration-timed-out': 'timed-out'}
REFUSED = 'of_refused_'   # app.py: OpenFlow sessions refused, by reason
REFUSAL_REASONS = ('certificate', 'duplicate', 'unknown')


def _os_ken_version():
    try:
        from importlib import metadata
        return metadata.version('os-ken')
    except Exception:  # pylint: disable=broad-except
        return 'unknown'


def _metric_name(text):
    return re.sub(r'[^a-zA-Z0-9_]', '_', text)


class AuthorityCollector(Collector):
    """Counters and gauges read from one app at scrape time."""

    def __init__(self, counters, views, event_log, sync_status=None,
                 store_stats=None, event_counts=None, cluster_status=None,
                 clock=time.time, bgp_status=None):
        self.clock = clock
        self.bgp_status = bgp_status
        self.counters = counters
        self.views = views
        self.event_log = event_log
        self.sync_status = sync_status
        self.store_stats = store_stats
        self.cluster_status = cluster_status
        self.event_counts = event_counts if event_counts is not None \
            else collections.Counter()

    def describe(self):
        """Nothing: see the comment."""
        # Returning nothing makes the registry skip a collect() at
        # registration time (the authority may be half built then).
        return []

    def collect(self):
        """Every family, read now."""
        yield from self._counters()
        yield from self._events()
        yield from self._vn_gauges()
        yield from self._nve_gauges()
        yield from self._interconnects()
        yield from self._store_gauges()
        yield from self._cluster_gauges()
        yield from self._bgp_gauges()
        settings = getattr(self.views, 'settings', None)
        if settings is not None:
            yield GaugeMetricFamily(
                PREFIX + 'accept_unknown_nves',
                '1 when a switch whose datapath id has no NVE record may '
                'connect (and gets one); 0 when it is refused.',
                value=1 if settings.accept_unknown_nves else 0)
        # gcpolicy.py freezes survivors of collections: what it holds back
        # from the collector (cyclic garbage among it waits for the
        # periodic full collection).
        yield GaugeMetricFamily(PREFIX + 'gc_frozen_objects',
                                'Objects in the collector\'s permanent '
                                'generation.', value=gc.get_freeze_count())
        info = GaugeMetricFamily(
            PREFIX + 'build_info', 'Always 1: the versions running, as '
            'labels.', labels=['version', 'python', 'os_ken'])
        info.add_metric([__version__, platform.python_version(),
                         _os_ken_version()], 1)
        yield info

    # -- counters kept by the authority --

    def _counters(self):
        counts = dict(self.counters)
        dropped = CounterMetricFamily(
            PREFIX + 'packet_ins_dropped',
            'Packet-ins dropped (and counted), by reason; malformed frames '
            'are reason="malformed".', labels=['reason'])
        for reason in ('malformed', 'unknown_port', 'unknown_vnid',
                       'unbound_port', 'refused'):
            counts.setdefault(DROPPED + reason, 0)
        for key in sorted(counts):
            if key.startswith(DROPPED):
                dropped.add_metric([key[len(DROPPED):].replace('_', '-')],
                                   counts[key])
        yield dropped
        by_kind = CounterMetricFamily(
            PREFIX + 'packet_ins',
            'Packet-ins by kind, each counted once: learn (new or known '
            'location), claim (a known tenant system seen elsewhere: move '
            'or conflict), probe (answers to mobility probes), dropped '
            '(before any of those), other (neighbour solicitations for the '
            'responder).', labels=['kind'])
        kinds = {'learn': counts.get('packet_in_learn', 0),
                 'claim': counts.get('packet_in_claim', 0),
                 'probe': counts.get('probe_answers', 0),
                 'dropped': sum(v for k, v in counts.items()
                                if k.startswith(DROPPED)
                                and k[len(DROPPED):] not in LATE_DROPS)}
        total = counts.get('packet_in', 0)
        kinds['other'] = max(0, total - sum(kinds.values()))
        for kind, value in kinds.items():
            by_kind.add_metric([kind], value)
        yield by_kind
        refused = CounterMetricFamily(
            PREFIX + 'openflow_sessions_refused',
            'OpenFlow sessions closed at their handshake, by reason: a TLS '
            'certificate that does not name the datapath id, a second '
            'session of a connected NVE, an unknown NVE.',
            labels=['reason'])
        for reason in REFUSAL_REASONS:
            refused.add_metric([reason], counts.get(REFUSED + reason, 0))
        yield refused
        for key, (name, doc) in NAMED_COUNTERS.items():
            counts.setdefault(key, 0)
        rpc = CounterMetricFamily(
            PREFIX + 'rpc_requests', 'Registration RPC requests by method '
            'and outcome (ok, error, or the error code).',
            labels=['method', 'outcome'])
        for method in ('login', 'associate', 'dissociate', 'query'):
            counts.setdefault('%s%s_ok' % (RPC_REQUESTS, method), 0)
        for key in sorted(counts):
            if key.startswith(RPC_REQUESTS):
                method, _, outcome = key[len(RPC_REQUESTS):].partition('_')
                rpc.add_metric([method, outcome.replace('_', '-')],
                               counts[key])
        yield rpc
        for key in sorted(counts):
            if key.startswith((DROPPED, EVENTS, REFUSED, RPC_REQUESTS)):
                continue
            name, doc = NAMED_COUNTERS.get(
                key, (_metric_name(key), 'Authority counter %s.' % key))
            yield CounterMetricFamily(PREFIX + name, doc, value=counts[key])

    def _event_counts(self):
        """Events by type: the authority's own counts (``events_<type>``)
        when it keeps them, else what our EventLog listener saw."""
        counts = {k[len(EVENTS):].replace('_', '-'): v
                  for k, v in self.counters.items()
                  if k.startswith(EVENTS)}
        return counts or dict(self.event_counts)

    def _events(self):
        counts = self._event_counts()
        by_type = CounterMetricFamily(
            PREFIX + 'events', 'Events recorded since start, by type.',
            labels=['type'])
        for kind in sorted(set(counts) | {'move', 'conflict'} |
                           set(MIGRATION_EVENTS)):
            by_type.add_metric([kind], counts.get(kind, 0))
        yield by_type
        migrations = CounterMetricFamily(
            PREFIX + 'migrations',
            'Announced migrations by outcome: started, completed, cancelled '
            '(asked, or ended by a conflict or a move elsewhere), '
            'timed-out.', labels=['outcome'])
        for kind, outcome in MIGRATION_EVENTS.items():
            migrations.add_metric([outcome], counts.get(kind, 0))
        yield migrations
        yield GaugeMetricFamily(
            PREFIX + 'migrations_pending',
            'Announced migrations whose vNIC is not yet settled at its new '
            'place (its frames go to both places).',
            value=self.views.migrations_pending())
        yield CounterMetricFamily(PREFIX + 'moves',
                                  'Tenant-system moves.',
                                  value=counts.get('move', 0))
        yield CounterMetricFamily(PREFIX + 'conflicts',
                                  'Conflicting location or address claims.',
                                  value=counts.get('conflict', 0))
        log = self.event_log
        yield GaugeMetricFamily(PREFIX + 'event_seq',
                                'Sequence number of the newest event.',
                                value=log.seq)
        yield GaugeMetricFamily(PREFIX + 'event_log_size',
                                'Events held in the recent-events ring.',
                                value=len(log))

    # -- gauges computed from the database --

    def _vn_gauges(self):
        entries = GaugeMetricFamily(
            PREFIX + 'mapping_entries', 'Mapping table entries per VN.',
            labels=['vnid', 'vn'])
        systems = GaugeMetricFamily(
            PREFIX + 'tenant_systems', 'Tenant systems attached per VN.',
            labels=['vnid', 'vn'])
        members = GaugeMetricFamily(
            PREFIX + 'vn_members', 'Member NVEs per VN.',
            labels=['vnid', 'vn'])
        vns = 0
        for vnid, name, n_entries, n_systems, n_members in \
                self.views.vn_figures():
            labels = [str(vnid), name]
            entries.add_metric(labels, n_entries)
            systems.add_metric(labels, n_systems)
            members.add_metric(labels, n_members)
            vns += 1
        yield entries
        yield systems
        yield members
        yield GaugeMetricFamily(PREFIX + 'vns', 'VNs defined.', value=vns)
        frozen = GaugeMetricFamily(
            PREFIX + 'frozen_addresses', 'Tenant systems whose location is '
            'frozen because they moved more often than max_moves in '
            'move_window.', labels=['vnid', 'vn'])
        for vnid, name, count in self.views.frozen_addresses(self.clock()):
            frozen.add_metric([str(vnid), name], count)
        yield frozen

    def _nve_gauges(self):
        figures = list(self.views.nve_figures())
        yield GaugeMetricFamily(PREFIX + 'nves_registered', 'NVEs known.',
                                value=len(figures))
        yield GaugeMetricFamily(
            PREFIX + 'nves_connected', 'NVEs with an OpenFlow channel up.',
            value=sum(1 for f in figures if f[1]))
        desired = GaugeMetricFamily(PREFIX + 'flows_desired',
                                    'Flows and meters an NVE must hold.',
                                    labels=['nve'])
        pending = GaugeMetricFamily(
            PREFIX + 'flows_pending',
            'Flow changes computed but not yet sent to an NVE.',
            labels=['nve'])
        in_sync = GaugeMetricFamily(
            PREFIX + 'nve_in_sync',
            '1 when a connected NVE acknowledged all its flow changes.',
            labels=['nve'])
        failed = GaugeMetricFamily(
            PREFIX + 'flows_failed',
            'Flow changes an NVE refused or that could not be encoded '
            '(they keep it out of sync until an audit resends them).',
            labels=['nve'])
        connected = GaugeMetricFamily(
            PREFIX + 'nve_connected', '1 when the NVE\'s OpenFlow channel is '
            'up, 0 when it is down (a down NVE is not "syncing").',
            labels=['nve', 'name'])
        info = GaugeMetricFamily(
            PREFIX + 'nve_info', 'Always 1: an NVE\'s name beside its '
            'datapath id (join on "nve" to name any per-NVE series).',
            labels=['nve', 'name'])
        per_nve = getattr(self.counters, 'per_nve', {})
        packet_ins = CounterMetricFamily(
            PREFIX + 'nve_packet_ins', 'Packet-ins received from the NVE.',
            labels=['nve', 'name'])
        repairs = CounterMetricFamily(
            PREFIX + 'nve_audit_repairs', 'Flow differences audits found '
            'on the NVE and repaired.', labels=['nve', 'name'])
        for dpid, is_up, n_desired, n_pending in figures:
            label = [dpid_str(dpid)]
            named = label + [self.views.nve_label(dpid)]
            connected.add_metric(named, 1 if is_up else 0)
            info.add_metric(named, 1)
            counts = per_nve.get(dpid, {})
            packet_ins.add_metric(named, counts.get('packet_in', 0))
            repairs.add_metric(named, counts.get('audit_repairs', 0))
            desired.add_metric(label, n_desired)
            pending.add_metric(label, n_pending)
            if self.sync_status is not None:
                status = self.sync_status(dpid)
                in_sync.add_metric(label, 1 if status.get('in_sync') else 0)
                failed.add_metric(label, status.get('failed', 0))
        yield connected
        yield info
        yield packet_ins
        yield repairs
        yield desired
        yield pending
        if self.sync_status is not None:
            yield in_sync
            yield failed

    def _interconnects(self):
        """Per interconnect (draft 4.3), what crossed it at its gateway:
        the counters of the gateway's flows that route or admit a frame
        into the other VN, as of the gateway's last flow dump (audit)."""
        figures = list(self.views.interconnect_figures())
        labels = ['interconnect', 'gateway', 'kind']
        frames = CounterMetricFamily(
            PREFIX + 'interconnect_frames',
            'Frames an interconnect carried into the other VN through its '
            'gateway (from the gateway\'s flow counters, as of its last '
            'flow dump).', labels=labels)
        nbytes = CounterMetricFamily(
            PREFIX + 'interconnect_bytes',
            'Bytes an interconnect carried into the other VN through its '
            'gateway (as above).', labels=labels)
        for name, gateway, kind, n_frames, n_bytes in figures:
            label = [name, dpid_str(gateway), kind]
            frames.add_metric(label, n_frames)
            nbytes.add_metric(label, n_bytes)
        yield frames
        yield nbytes
        yield GaugeMetricFamily(PREFIX + 'interconnects',
                                'Interconnects defined.', value=len(figures))

    def _store_gauges(self):
        if self.store_stats is None:
            return
        try:
            figures = self.store_stats()
        except Exception:  # pylint: disable=broad-except
            return        # a closed or failing store must not break scrapes
        for key, value in sorted((figures or {}).items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                name, doc, factor = STORE_FIGURES.get(key, (
                    'store_' + _metric_name(key),
                    'Mapping store figure %s.' % key, 1))
                yield GaugeMetricFamily(PREFIX + name, doc,
                                        value=value * factor)


    def _cluster_gauges(self):
        """The cluster as GET /v1/cluster shows it: instances alive, the
        master of each NVE, this instance's role on each, its lease, etcd
        reachable and its members' health.  Alone: one instance, master of
        every NVE connected."""
        if self.cluster_status is None:
            return
        try:
            status = self.cluster_status()
        except Exception:  # pylint: disable=broad-except
            return
        alive = GaugeMetricFamily(
            PREFIX + 'cluster_instance_alive',
            '1 while an instance of the cluster holds its etcd lease.',
            labels=['instance'])
        master = GaugeMetricFamily(
            PREFIX + 'nve_master', '1 for the instance that is an NVE\'s '
            'OpenFlow master.', labels=['nve', 'instance'])
        for inst in status['instances']:
            alive.add_metric([inst['name']], 1 if inst['alive'] else 0)
            for dpid in inst['masters']:
                master.add_metric([dpid, inst['name']], 1)
        yield alive
        yield master
        me = status['instance']
        yield GaugeMetricFamily(
            PREFIX + 'cluster_is_leader', '1 when this instance leads the '
            'cluster.', value=1 if status['leader'] == me else 0)
        if status.get('etcd') is None:
            return
        role = GaugeMetricFamily(
            PREFIX + 'nve_role', 'This instance\'s OpenFlow role on each '
            'NVE (1 for the role it has).', labels=['nve', 'role'])
        for dpid, which in sorted(status.get('roles', {}).items()):
            role.add_metric([dpid, which], 1)
        yield role
        yield GaugeMetricFamily(
            PREFIX + 'cluster_lease_ok', '1 while this instance holds a '
            'valid etcd lease (it may write).',
            value=1 if status.get('lease_ok') else 0)
        etcd = status['etcd']
        yield GaugeMetricFamily(
            PREFIX + 'etcd_reachable', '1 when this instance\'s last etcd '
            'request was answered.', value=1 if etcd.get('reachable') else 0)
        healthy = GaugeMetricFamily(
            PREFIX + 'etcd_member_healthy', '1 when an etcd member says it '
            'is healthy.', labels=['endpoint'])
        for member in etcd.get('endpoints', ()):
            healthy.add_metric([member['endpoint']],
                               1 if member['healthy'] else 0)
        yield healthy


    def _bgp_gauges(self):
        status = self.bgp_status() if self.bgp_status is not None else None
        if status is None:
            return
        sessions = GaugeMetricFamily(
            PREFIX + 'bgp_sessions_established',
            'BGP EVPN sessions Established (1) or not (0), by neighbour.',
            labels=['neighbor'])
        for peer in status['neighbors']:
            sessions.add_metric([peer['address']],
                                int(peer['state'] == 'Established'))
        yield sessions
        routes = GaugeMetricFamily(
            PREFIX + 'bgp_routes', 'BGP EVPN routes advertised (out) and '
            'received as best paths (in).', labels=['direction'])
        routes.add_metric(['out'], status['routes']['exported'])
        routes.add_metric(['in'], status['routes']['imported'])
        yield routes


class Metrics:
    """One app's metrics: its registry, REST instruments and collector."""

    def __init__(self, counters, views, event_log, sync_status=None,
                 store_stats=None, cluster_status=None, clock=time.time,
                 bgp_status=None):
        self.registry = CollectorRegistry(auto_describe=False)
        self.event_counts = collections.Counter()
        event_log.listeners.append(self._on_event)
        self.collector = AuthorityCollector(
            counters, views, event_log, sync_status, store_stats,
            self.event_counts, cluster_status, clock, bgp_status)
        self.registry.register(self.collector)
        self.registry.register(handling_latency)
        self.registry.register(etcd_txn)
        self.registry.register(convergence)
        self.registry.register(switch_over)
        self.registry.register(loop_lag)
        self.registry.register(gc_pause)
        self.rest_requests = Counter(
            PREFIX + 'rest_requests', 'REST requests by route and status.',
            ['method', 'route', 'status'], registry=self.registry)
        self.rest_latency = Histogram(
            PREFIX + 'rest_request_seconds', 'REST request handling time.',
            ['method', 'route'], registry=self.registry,
            buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1.0))

    def _on_event(self, event):
        self.event_counts[event.get('type', 'unknown')] += 1

    def observe_request(self, method, route, status, seconds):
        """Count one REST request and its handling time."""
        self.rest_requests.labels(method, route, str(status)).inc()
        self.rest_latency.labels(method, route).observe(seconds)

    def exposition(self):
        """The scrape body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
