"""One typed command per write the interfaces can ask of the authority.

REST, the registration RPC and the declarative file build one of these and
hand it to :meth:`authority.Authority.execute`, the one front door for
writes: it validates, changes the mapping database through its primitives
and commits, or refuses the command and changes nothing.  A command is plain
data (a frozen dataclass), so it can be queued to the app's event loop and
logged.

``actor`` says who asked (the audit trail): the name of a REST token, the
name of a logged-in hypervisor, ``config`` for the declarative file, or
``rest``/``rpc`` when authentication is off.  It is keyword-only, set by
the interface that builds the command, and every event the command causes
records it (events.EventLog.acting).  Changes the switches cause (learned
attachments, moves, ports and NVEs going up or down) carry ``switch``.

``origin`` says where an item is defined (``rest``, ``config``,
``registered``); it is kept with the item and shown in the REST view.

Any command can be tried first: ``Authority.execute(command, now,
dry_run=True)`` runs it against a throw-away copy of the state and says
what it would change (the flow-mods per NVE, the mapping entries, the
records, the events) with nothing applied, persisted or sent.
"""

from dataclasses import dataclass, field

ACTOR_CONFIG = 'config'
ACTOR_SWITCH = 'switch'


@dataclass(frozen=True)
class Command:
    """What every command carries: who asked for it (``actor``)."""

    actor: str = field(default=None, kw_only=True)


@dataclass(frozen=True)
class CreateVN(Command):
    """Create a VN (draft 7.1); returns the VN."""

    vnid: int
    name: str
    service: str = 'l2'
    encap: str = 'vxlan'
    gateway_mac: str = None
    gateway_ips: tuple = ()
    origin: str = 'rest'
    evpn: bool = False
    route_targets: tuple = ()


@dataclass(frozen=True)
class UpdateVN(Command):
    """Change a VN's name, service, encapsulation, gateway or BGP EVPN
    part (``changes`` maps ``name``, ``service``, ``encap``,
    ``gateway_mac``, ``gateway_ips``, ``evpn``, ``route_targets`` to new
    values); ``origin`` None keeps where it is defined.  Returns the VN."""

    vnid: int
    changes: dict = field(default_factory=dict)
    origin: str = None


@dataclass(frozen=True)
class DeleteVN(Command):
    """Delete a VN: its tenant systems detach, its port bindings go."""

    vnid: int


@dataclass(frozen=True)
class RegisterNVE(Command):
    """Register an NVE or change its VTEP address, name or role (``nve``
    or ``gateway``; None keeps it); returns it."""

    dpid: object
    vtep_ip: str = None
    name: str = None
    origin: str = 'rest'
    role: str = None


@dataclass(frozen=True)
class DeleteNVE(Command):
    """Forget an NVE: its bindings and tenant systems go, its peers stop
    tunnelling to it; a connected switch is disconnected (the app does
    that).  Returns ``{"dpid", "connected"}`` (connected: it was)."""

    dpid: object


@dataclass(frozen=True)
class BindPort(Command):
    """Bind an access port of an NVE to a VN as a whole (``vnid``) or by
    VLAN (``vlans``: VLAN ID -> VNID); returns the binding."""

    dpid: object
    port: str
    vnid: int = None
    vlans: dict = None
    origin: str = 'rest'
    override: bool = False     # over the configuration file's binding


@dataclass(frozen=True)
class UnbindPort(Command):
    """Remove an access port's binding; its tenant systems detach (an
    override gives way to the configuration file's binding under it)."""

    dpid: object
    port: str
    origin: str = 'rest'


@dataclass(frozen=True)
class Associate(Command):
    """Register a vNIC binding (registration RPC, draft 6.1); returns what
    was done (see bids.associate)."""

    nve: object
    port: str
    mac: str
    vnid: int
    ip: str = None
    vlan: int = None
    bid: int = None


@dataclass(frozen=True)
class Dissociate(Command):
    """De-register one binding (``bid``) or a vNIC without BIDs; returns
    what was removed and what remains (see bids.dissociate)."""

    nve: object
    mac: str
    bid: int = None


@dataclass(frozen=True)
class PutInterconnect(Command):
    """Create or replace an interconnect between two VNs on a gateway
    (draft 4.3; see interconnect.py): ``allowed_macs`` for l2 + l2,
    ``router`` (``{vnid: {"ip", "mac"}}``) for l2 + l3.  Returns it."""

    name: str
    gateway: object
    vns: tuple
    allowed_macs: tuple = None
    router: dict = None
    origin: str = 'rest'


@dataclass(frozen=True)
class DeleteInterconnect(Command):
    """Remove an interconnect; its flows leave every NVE."""

    name: str


@dataclass(frozen=True)
class PutExternal(Command):
    """Create or replace an external (non-VN) network on a port of a
    gateway: ``vnid`` (untagged) or ``vlans`` (VLAN ID -> VNID), and the
    MACs unicast may reach it for.  Returns it."""

    name: str
    gateway: object
    port: str
    vnid: int = None
    vlans: dict = None
    allowed_macs: tuple = None
    origin: str = 'rest'


@dataclass(frozen=True)
class DeleteExternal(Command):
    """Remove an external network; its hosts detach."""

    name: str


@dataclass(frozen=True)
class Migrate(Command):
    """Announce that vNIC ``mac`` of VN ``vnid`` is about to appear at
    (``nve``, ``port``; ``vlan`` when the port carries the VN tagged): a
    live migration (authority/migrations.py).  Returns the migration's
    view."""

    nve: object
    port: str
    mac: str
    vnid: int
    vlan: int = None


@dataclass(frozen=True)
class CancelMigration(Command):
    """Call off the announced migration of ``mac`` in VN ``vnid``: the old
    place stays as it was."""

    vnid: int
    mac: str


@dataclass(frozen=True)
class ApplyConfig(Command):
    """Apply a declarative document (declared.py: VNs, NVEs, bindings)."""

    document: dict
    origin: str = 'config'
    actor: str = field(default=ACTOR_CONFIG, kw_only=True)


COMMANDS = (CreateVN, UpdateVN, DeleteVN, RegisterNVE, DeleteNVE, BindPort,
            UnbindPort, Associate, Dissociate, PutInterconnect,
            DeleteInterconnect, PutExternal, DeleteExternal, Migrate,
            CancelMigration, ApplyConfig)
