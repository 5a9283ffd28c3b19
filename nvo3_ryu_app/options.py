"""The app's options, read through os-ken's oslo.config.

They live in the ``[nvo3]`` group of the file given with ``--config-file``.
osken-manager parses its command line before it imports apps, so the same
options are also offered as command-line flags through
``--user-flags nvo3_ryu_app/flags.py`` (see README).
"""

from os_ken import cfg as osken_cfg
from oslo_config import cfg

GROUP = 'nvo3'

OPTS = [
    cfg.StrOpt('config_file', default='',
               help='Declarative state (YAML): VNs, NVEs and their VTEPs, '
                    'access-port bindings; a topology file is accepted.'),
    cfg.StrOpt('state_dir', default='/var/lib/nvo3',
               help='Directory of the mapping database store.'),
    cfg.BoolOpt('persist', default=True,
                help='Keep the mapping database in state_dir.'),
    cfg.BoolOpt('store_fsync', default=True,
                help='fsync the journal before acknowledging a change.'),
    cfg.BoolOpt('recover_from_snapshot', default=False,
                help='Start from the last good snapshot when the store is '
                     'corrupt, instead of refusing to start.'),
    cfg.StrOpt('rest_listen_host', default='127.0.0.1'),
    cfg.PortOpt('rest_listen_port', default=8080),
    cfg.StrOpt('rpc_listen_host', default='127.0.0.1'),
    cfg.PortOpt('rpc_listen_port', default=6699),
    cfg.StrOpt('vxlan_port', default='vxlan0',
               help='Name of the flow-based VXLAN port on every NVE.'),
    cfg.StrOpt('gre_port', default='gre0',
               help='Name of the flow-based GRE port on every NVE.'),
    cfg.IntOpt('punt_rate_pps', default=100,
               help='Packet-ins per second allowed from one access port.'),
    cfg.IntOpt('max_macs_per_port', default=256,
               help='Tenant-system MACs learned on one access port at most '
                    '(a MAC flood beyond it is dropped and counted).'),
    cfg.IntOpt('miss_rate_pps', default=50,
               help='Packet-ins per second from unbound ports, per NVE.'),
    cfg.IntOpt('flow_batch', default=500,
               help='Flow changes sent to one NVE before waiting for its '
                    'barrier reply.'),
    cfg.FloatOpt('nve_down_grace', default=30.0,
                 help='Seconds an NVE may be disconnected before remote NVEs '
                      'stop tunnelling to it.'),
    cfg.FloatOpt('port_down_grace', default=2.0,
                 help='Seconds an access port may be down before its tenant '
                      'systems are withdrawn (rides through link flaps).'),
    cfg.FloatOpt('idle_timeout', default=0.0,
                 help='Seconds without a frame before a learned tenant '
                      'system ages out; 0 disables ageing.  Frames are '
                      'counted by the source flows and read by the audit, '
                      'so set audit_interval well below it.'),
    cfg.FloatOpt('move_probe_timeout', default=0.05,
                 help='Seconds to wait for a tenant system to answer at its '
                      'old location before a claimed move is accepted.'),
    cfg.IntOpt('max_moves', default=10,
               help='Moves within move_window after which an address is '
                    'frozen at its last location.'),
    cfg.FloatOpt('move_window', default=60.0),
    cfg.FloatOpt('freeze_time', default=60.0,
                 help='Seconds a flapping address stays frozen.'),
    cfg.FloatOpt('block_time', default=60.0,
                 help='Seconds a conflicting claimant stays blocked.'),
    cfg.FloatOpt('redirect_hold', default=3.0,
                 help='Seconds the old NVE keeps redirecting frames of a '
                      'tenant system that moved away.'),
    cfg.FloatOpt('audit_interval', default=30.0,
                 help='Seconds between flow audits of every NVE; 0 disables.'),
    cfg.FloatOpt('tick_interval', default=0.5,
                 help='Seconds between timer ticks (grace periods, ageing).'),
    cfg.IntOpt('gc_threshold0', default=0,
               help='Allocations between young garbage collections; 0 '
                    'keeps the interpreter\'s (700: measured the best '
                    'for REST latency under load, see gcpolicy.py).'),
    # -- what a peer may hold or cause (issue 12) --
    cfg.ListOpt('rest_allowed_hosts', default=['localhost'],
                help='Names a REST request may give in its Host header '
                     'besides IP addresses (which are always accepted); '
                     'any other name is refused, so that a web page of '
                     'another site whose name points at this address (DNS '
                     'rebinding) gets nothing.  Add the names operators '
                     'use in their browser.'),
    cfg.IntOpt('rest_max_connections', default=256, min=1,
               help='Open REST connections at most.  A new one closes the '
                    'one idle the longest (then the oldest still sending '
                    'its request); when all are busy it is refused.'),
    cfg.FloatOpt('rest_idle_timeout', default=30.0, min=0.0,
                 help='Seconds a REST connection may wait for its next '
                      'request (keep-alive); 0: no limit.'),
    cfg.FloatOpt('rest_request_timeout', default=10.0, min=0.0,
                 help='Seconds a client has to send a whole request (line, '
                      'headers, body) once it started; a slower one is '
                      'answered 408 or closed; 0: no limit.'),
    cfg.IntOpt('rpc_max_connections', default=1024, min=1,
               help='Open registration RPC connections at most (a new one '
                    'closes the one idle the longest; refused when all '
                    'are busy).'),
    cfg.FloatOpt('rpc_idle_timeout', default=300.0, min=0.0,
                 help='Seconds an RPC connection may stay silent between '
                      'requests; 0: no limit.'),
    cfg.FloatOpt('rpc_request_timeout', default=10.0, min=0.0,
                 help='Seconds to send one whole RPC request once its first '
                      'byte arrived; 0: no limit.'),
    cfg.IntOpt('of_max_connections', default=4096, min=1,
               help='OpenFlow connections at most (NVEs, and connections '
                    'still in their handshake, which are closed first to '
                    'make room).'),
    cfg.FloatOpt('of_handshake_timeout', default=15.0, min=0.0,
                 help='Seconds a new OpenFlow connection has to complete its '
                      'handshake (HELLO, features, port list); 0: no '
                      'limit.'),
    cfg.FloatOpt('nve_echo_interval', default=5.0, min=0.0,
                 help='Seconds between echo requests to every connected '
                      'NVE; 0: none.'),
    cfg.FloatOpt('nve_reply_timeout', default=30.0, min=0.0,
                 help='Seconds an NVE may leave an echo, a barrier or its '
                      'flow dump unanswered before it is disconnected (it '
                      'reconnects and is dumped afresh); 0: never.'),
    cfg.IntOpt('nve_max_queued_packets', default=1024, min=1,
               help='Packet-outs that may wait for one NVE (for its flows '
                    'or its dump); more are dropped and counted.'),
    cfg.IntOpt('peer_log_per_minute', default=20, min=0,
               help='Log lines a minute at most of each kind that peers '
                    'cause (bad messages, refused connections; os-ken\'s '
                    'parse errors); the next one says how many were not '
                    'logged.  0: no limit.'),
    cfg.FloatOpt('gc_full_interval', default=3600.0,
                 help='Seconds between full collections of the whole heap '
                      '(one long pause); in between, survivors of every '
                      'collection are frozen and reference cycles that '
                      'die wait for it (see gcpolicy.py); 0: never.'),
]


def register(conf=None, cli=False):
    """Register the options on os-ken's own ConfigOpts (not oslo's global
    one: osken-manager parses its command line and files into that)."""
    conf = conf if conf is not None else osken_cfg.CONF
    try:
        if cli:
            conf.register_cli_opts(OPTS, group=GROUP)
        else:
            conf.register_opts(OPTS, group=GROUP)
    except cfg.DuplicateOptError:
        pass
    return conf[GROUP]
