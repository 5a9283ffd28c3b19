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
import re
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (CounterMetricFamily,
                                            GaugeMetricFamily)
from prometheus_client.registry import Collector

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

# How late the app's event loop wakes a greenlet that asked to sleep: what a
# REST request or a packet-in waits for whatever runs before it.  Observed
# by app.py's lag probe.
loop_lag = Histogram(
    'nvo3_event_loop_lag_seconds',
    'Lateness of a 10 ms timer on the app\'s event loop.',
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
}
DROPPED = 'dropped_'
# Drop reasons decided after a packet-in was already counted as a learn or
# a claim (so "by kind" stays a partition of all packet-ins).
LATE_DROPS = ('refused', 'ip_conflict', 'registered_elsewhere',
              'unknown_source_ip')
EVENTS = 'events_'    # the authority counts events by type itself
REFUSED = 'of_refused_'   # app.py: OpenFlow sessions refused, by reason
REFUSAL_REASONS = ('certificate', 'duplicate', 'unknown')


def _metric_name(text):
    return re.sub(r'[^a-zA-Z0-9_]', '_', text)


class AuthorityCollector(Collector):
    """Counters and gauges read from one app at scrape time."""

    def __init__(self, counters, views, event_log, sync_status=None,
                 store_stats=None, event_counts=None, bgp_status=None):
        self.bgp_status = bgp_status
        self.counters = counters
        self.views = views
        self.event_log = event_log
        self.sync_status = sync_status
        self.store_stats = store_stats
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
        yield from self._store_gauges()
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
        for key in sorted(counts):
            if key.startswith((DROPPED, EVENTS, REFUSED)):
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
        for kind in sorted(set(counts) | {'move', 'conflict'}):
            by_type.add_metric([kind], counts.get(kind, 0))
        yield by_type
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
        for dpid, _, n_desired, n_pending in figures:
            label = [dpid_str(dpid)]
            desired.add_metric(label, n_desired)
            pending.add_metric(label, n_pending)
            if self.sync_status is not None:
                status = self.sync_status(dpid)
                in_sync.add_metric(label, 1 if status.get('in_sync') else 0)
                failed.add_metric(label, status.get('failed', 0))
        yield desired
        yield pending
        if self.sync_status is not None:
            yield in_sync
            yield failed

    def _store_gauges(self):
        if self.store_stats is None:
            return
        try:
            figures = self.store_stats()
        except Exception:  # pylint: disable=broad-except
            return        # a closed or failing store must not break scrapes
        for key, value in sorted((figures or {}).items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                yield GaugeMetricFamily(PREFIX + 'store_' + _metric_name(key),
                                        'Mapping store figure %s.' % key,
                                        value=value)


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
                 store_stats=None, bgp_status=None):
        self.registry = CollectorRegistry(auto_describe=False)
        self.event_counts = collections.Counter()
        event_log.listeners.append(self._on_event)
        self.collector = AuthorityCollector(
            counters, views, event_log, sync_status, store_stats,
            self.event_counts, bgp_status)
        self.registry.register(self.collector)
        self.registry.register(handling_latency)
        self.registry.register(convergence)
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
