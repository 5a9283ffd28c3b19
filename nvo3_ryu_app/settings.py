"""The app's settings: one frozen :class:`Settings`, every option in one place.

Each field is one option of the ``[nvo3]`` group of the oslo.config file given
to osken-manager with ``--config-file`` (the mechanism os-ken itself uses);
:func:`register` generates the oslo options from the fields, with their
defaults and help.  osken-manager parses its command line before it imports
apps, so the same options are also offered as command-line flags through
``--user-flags nvo3_ryu_app/flags.py`` (see README).

Everything else takes a :class:`Settings` (tests build
``Settings(move_probe_timeout=...)``); nothing copies options field by field.
This module imports nothing of the app, so every layer may read it.
"""

import dataclasses
from dataclasses import dataclass, field

GROUP = 'nvo3'


def _opt(default, help_text, kind=None, minimum=None):
    """A field with its oslo option's help (and kind, when not its type's;
    and the smallest value the option accepts)."""
    return field(default=default, metadata={'help': help_text, 'kind': kind,
                                            'min': minimum})


@dataclass(frozen=True)
class Settings:
    """Every option of the app, with its default (see each field's help)."""

    config_file: str = _opt(
        '', 'Declarative state (YAML): VNs, NVEs and their VTEPs, '
            'access-port bindings; a topology file is accepted.')
    state_dir: str = _opt('/var/lib/nvo3',
                          'Directory of the mapping database store.')
    persist: bool = _opt(True, 'Keep the mapping database in state_dir.')
    store_fsync: bool = _opt(
        True, 'fsync the journal before acknowledging a change.')
    recover_from_snapshot: bool = _opt(
        False, 'Start from the last good snapshot when the store is '
               'corrupt, instead of refusing to start.')
    auth_file: str = _opt(
        '', 'JSON file of REST tokens (admin, reader) and hypervisor '
            'logins for the registration RPC (docs/contracts.md, '
            'authentication).  Without one nothing is checked, and REST and '
            'the RPC must listen on loopback addresses only.  Re-read on '
            'SIGHUP.')
    accept_unknown_nves: bool = _opt(
        True, 'Accept an OpenFlow switch whose datapath id has no NVE record '
              '(it gets one, origin "switch").  False: only NVEs registered '
              'over REST or in config_file may connect; others are refused '
              'and leave no record.')
    rest_tls_cert: str = _opt(
        '', 'Certificate (PEM, with its chain) of the REST API: with '
            'rest_tls_key, REST is served over TLS (https).')
    rest_tls_key: str = _opt('', 'Private key (PEM) of rest_tls_cert.')
    rpc_tls_cert: str = _opt(
        '', 'Certificate (PEM) of the registration RPC: with rpc_tls_key, '
            'the RPC is served over TLS.')
    rpc_tls_key: str = _opt('', 'Private key (PEM) of rpc_tls_cert.')
    rest_listen_host: str = _opt('127.0.0.1',
                                 'Address the REST API listens on.')
    rest_listen_port: int = _opt(8080, 'TCP port of the REST API.', 'port')
    rpc_listen_host: str = _opt(
        '127.0.0.1', 'Address the registration RPC listens on.')
    rpc_listen_port: int = _opt(6699, 'TCP port of the registration RPC.',
                                'port')
    vxlan_port: str = _opt(
        'vxlan0', 'Name of the flow-based VXLAN port on every NVE.')
    gre_port: str = _opt('gre0',
                         'Name of the flow-based GRE port on every NVE.')
    geneve_port: str = _opt(
        'geneve0', 'Name of the flow-based Geneve port on every NVE (where '
                   'a VN uses Geneve, and on gateways).')
    punt_rate_pps: int = _opt(
        100, 'Packet-ins per second allowed from one access port.')
    punt_burst: int = _opt(
        50, 'Burst size (packets) of the packet-in meters of access ports '
            'and of table-miss punts.')
    max_macs_per_port: int = _opt(
        256, 'Tenant-system MACs learned on one access port at most '
             '(a MAC flood beyond it is dropped and counted).')
    miss_rate_pps: int = _opt(
        50, 'Packet-ins per second from unbound ports, per NVE.')
    flow_batch: int = _opt(
        500, 'Flow changes sent to one NVE before waiting for its '
             'barrier reply.')
    nve_down_grace: float = _opt(
        30.0, 'Seconds an NVE may be disconnected before remote NVEs '
              'stop tunnelling to it.')
    port_down_grace: float = _opt(
        2.0, 'Seconds an access port may be down before its tenant '
             'systems are withdrawn (rides through link flaps).')
    idle_timeout: float = _opt(
        0.0, 'Seconds without a frame before a learned tenant system ages '
             'out; 0 disables ageing.  Frames are counted by the source '
             'flows and read by the audit, so set audit_interval well '
             'below it.')
    move_probe_timeout: float = _opt(
        0.05, 'Seconds to wait for a tenant system to answer at its old '
              'location before a claimed move is accepted.')
    max_moves: int = _opt(
        10, 'Moves within move_window after which an address is frozen at '
            'its last location.')
    move_window: float = _opt(
        60.0, 'Seconds over which max_moves counts the moves of an '
              'address.')
    freeze_time: float = _opt(60.0,
                              'Seconds a flapping address stays frozen.')
    block_time: float = _opt(
        60.0, 'Seconds a conflicting claimant stays blocked.')
    redirect_hold: float = _opt(
        3.0, 'Seconds the old NVE keeps redirecting frames of a tenant '
             'system that moved away.')
    migration_timeout: float = _opt(
        300.0, 'Seconds an announced migration (RPC migrate, POST '
               '/v1/vns/{vnid}/migrations) waits for the tenant system to '
               'appear at its new place; until then its frames go to both '
               'places.  Past it the migration ends and the old place stays '
               'as it was.', minimum=0.001)
    audit_interval: float = _opt(
        30.0, 'Seconds between flow audits of every NVE; 0 disables.')
    stamp_interval: float = _opt(
        1.0, 'Seconds an NVE must be quiet (no flow change, no stamp) '
             'before it is stamped again: once an NVE '
             'acknowledged everything it must hold, a flow of table 8 '
             'records the digest of that flow set, so that after a restart '
             'an NVE whose stamp matches the restored database is in sync '
             'without a flow dump (southbound/stamp.py).  0 disables: every '
             'connection dumps the NVE.  Never in a cluster.')
    stamp_wait: float = _opt(
        10.0, 'Seconds an NVE whose stamp does not match what it must hold '
              'yet waits, after it connected, for the other NVEs to connect '
              '(flood lists and routes depend on them) before it is dumped; '
              'once every NVE is connected a stamp that still differs is '
              'dumped at once.')
    stamp_verify_interval: float = _opt(
        0.2, 'Seconds between two audits (full dumps) of NVEs found in sync '
             'by their stamp alone, until each was dumped once: a switch '
             'changed while the app was down is repaired soon after the '
             'restart.  0: only the regular audits verify them.')
    tick_interval: float = _opt(
        0.5, 'Seconds between timer ticks (grace periods, ageing).')
    gc_threshold0: int = _opt(
        0, 'Allocations between young garbage collections; 0 keeps the '
           'interpreter\'s (see gcpolicy.py and benchmarks/README.md).')
    # -- what a peer (a switch, an RPC or HTTP client) may hold or cause --
    rest_allowed_hosts: tuple = _opt(
        ('localhost',),
        'Names a REST request may give in its Host header besides IP '
        'addresses (which are always accepted); any other name is refused, '
        'so that a web page of another site whose name points at this '
        'address (DNS rebinding) gets nothing.  Add the names operators '
        'use in their browser.', 'list')
    rest_max_connections: int = _opt(
        256, 'Open REST connections at most.  A new one closes the one idle '
             'the longest (then the oldest still sending its request); when '
             'all are busy it is refused.', minimum=1)
    rest_idle_timeout: float = _opt(
        30.0, 'Seconds a REST connection may wait for its next request '
              '(keep-alive); 0: no limit.', minimum=0.0)
    rest_request_timeout: float = _opt(
        10.0, 'Seconds a client has to send a whole request (line, headers, '
              'body) once it started; a slower one is answered 408 or '
              'closed; 0: no limit.', minimum=0.0)
    rpc_max_connections: int = _opt(
        1024, 'Open registration RPC connections at most (a new one closes '
              'the one idle the longest; refused when all are busy).',
        minimum=1)
    rpc_idle_timeout: float = _opt(
        300.0, 'Seconds an RPC connection may stay silent between requests; '
               '0: no limit.', minimum=0.0)
    rpc_request_timeout: float = _opt(
        10.0, 'Seconds to send one whole RPC request once its first byte '
              'arrived; 0: no limit.', minimum=0.0)
    of_max_connections: int = _opt(
        4096, 'OpenFlow connections at most (NVEs, and connections still in '
              'their handshake, which are closed first to make room).',
        minimum=1)
    of_handshake_timeout: float = _opt(
        15.0, 'Seconds a new OpenFlow connection has to complete its '
              'handshake (HELLO, features, port list); 0: no limit.',
        minimum=0.0)
    nve_echo_interval: float = _opt(
        5.0, 'Seconds between echo requests to every connected NVE; 0: '
             'none.', minimum=0.0)
    nve_reply_timeout: float = _opt(
        30.0, 'Seconds an NVE may leave an echo, a barrier or its flow dump '
              'unanswered before it is disconnected (it reconnects and is '
              'dumped afresh); 0: never.', minimum=0.0)
    nve_max_queued_packets: int = _opt(
        1024, 'Packet-outs that may wait for one NVE (for its flows or its '
              'dump); more are dropped and counted.', minimum=1)
    peer_log_per_minute: int = _opt(
        20, 'Log lines a minute at most of each kind that peers cause (bad '
            'messages, refused connections; os-ken\'s parse errors); the '
            'next one says how many were not logged.  0: no limit.',
        minimum=0)
    gc_full_interval: float = _opt(
        3600.0, 'Seconds between full collections of the whole heap (one '
                'long pause); in between, survivors of every collection '
                'are frozen and reference cycles that die wait for it '
                '(see gcpolicy.py); 0: never.')
    heap_trim_interval: float = _opt(
        5.0, 'Seconds at least between two returns of the freed C heap to '
             'the system, made on a timer tick when the switches were '
             'quiet since the previous one (or after 12 intervals under '
             'load that never pauses; see heaptrim.py); 0: never.',
        minimum=0)
    heap_trim_min_free: int = _opt(
        4 << 20, 'Bytes free in the C heap below which it is not trimmed.',
        minimum=0)
    # -- a cluster of authorities (docs/contracts.md, "Cluster") --
    cluster_backend: str = _opt(
        '', 'Empty: this instance runs alone on its journal in state_dir. '
            '"etcd": it is one instance of a cluster whose mapping database '
            'lives in etcd (etcd_endpoints); every NVE points at every '
            'instance and each has one OpenFlow master among them.')
    etcd_endpoints: tuple = _opt(
        ('127.0.0.1:2379',), 'Client endpoints (host:port) of the etcd '
        'cluster; the instance moves to the next when one fails.', 'list')
    instance_name: str = _opt(
        '', 'This instance\'s name in the cluster (unique among them; '
            'default: the host name).')
    etcd_prefix: str = _opt(
        '/nvo3/v1/', 'Key prefix of the cluster\'s state in etcd (one '
                     'cluster of authorities per prefix).')
    cluster_lease_ttl: int = _opt(
        3, 'Seconds of the instance\'s etcd lease: a dead or cut-off '
           'instance loses its NVEs after about this long (keep it well '
           'above etcd\'s election timeout).', minimum=2)
    etcd_timeout: float = _opt(
        2.0, 'Seconds an etcd request may take before the next endpoint is '
             'tried.', minimum=0.1)
    etcd_max_txn_ops: int = _opt(
        128, 'Operations per etcd transaction at most (etcd\'s '
             '--max-txn-ops); larger change sets are split.', minimum=2)
    # -- BGP EVPN (authority/evpn.py, peering/bgp.py); off without bgp_as --
    bgp_as: int = _opt(
        0, 'Local AS number of the BGP EVPN speaker (RFC 7432, RFC 8365); '
           '0: no BGP at all.', minimum=0)
    bgp_router_id: str = _opt(
        '', 'BGP router id (an IPv4 address); also the address part of the '
            'route distinguishers <router id>:<VNID>.')
    bgp_listen_host: str = _opt(
        '0.0.0.0', 'Address the BGP speaker accepts sessions on.')
    bgp_listen_port: int = _opt(179, 'TCP port of the BGP speaker.', 'port')
    bgp_neighbors: tuple = _opt(
        (), 'BGP EVPN neighbours as <address>:<remote AS>; the speaker '
            'accepts their connections and connects to them (port 179).',
        'list')
    # Derived, not an option: encapsulation -> tunnel port name.
    tunnel_ports: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        # oslo.config gives a list; settings never change in place.
        object.__setattr__(self, 'rest_allowed_hosts',
                           tuple(self.rest_allowed_hosts))
        object.__setattr__(self, 'etcd_endpoints',
                           tuple(self.etcd_endpoints))
        object.__setattr__(self, 'bgp_neighbors', tuple(self.bgp_neighbors))
        object.__setattr__(self, 'tunnel_ports', {
            'vxlan': self.vxlan_port, 'gre': self.gre_port,
            'geneve': self.geneve_port})

    def replace(self, **changes):
        """A copy with ``changes`` (settings never change in place)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_conf(cls, group):
        """The settings an oslo.config group (see :func:`register`) holds."""
        return cls(**{f.name: getattr(group, f.name) for f in options()})


def options():
    """The fields of :class:`Settings` that are options (all but derived)."""
    return [f for f in dataclasses.fields(Settings) if f.init]


def oslo_options():
    """The oslo.config options generated from :class:`Settings`."""
    from oslo_config import cfg   # only the app needs oslo.config
    kinds = {str: cfg.StrOpt, bool: cfg.BoolOpt, int: cfg.IntOpt,
             float: cfg.FloatOpt, 'port': cfg.PortOpt, 'list': cfg.ListOpt}
    out = []
    for f in options():
        kind = f.metadata['kind'] or f.type
        extra = {} if f.metadata['min'] is None else {
            'min': f.metadata['min']}
        default = list(f.default) if kind == 'list' else f.default
        out.append(kinds[kind](f.name, default=default,
                               help=f.metadata['help'], **extra))
    return out


def register(conf=None, cli=False):
    """Register the options on os-ken's own ConfigOpts (not oslo's global
    one: osken-manager parses its command line and files into that) and
    return the ``[nvo3]`` group."""
    from oslo_config import cfg
    if conf is None:
        from os_ken import cfg as osken_cfg
        conf = osken_cfg.CONF
    opts = oslo_options()
    try:
        if cli:
            conf.register_cli_opts(opts, group=GROUP)
        else:
            conf.register_opts(opts, group=GROUP)
    except cfg.DuplicateOptError:
        pass
    return conf[GROUP]
