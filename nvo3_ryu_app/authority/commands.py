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
    """Register an NVE or change its VTEP address or name; returns it."""

    dpid: object
    vtep_ip: str = None
    name: str = None
    origin: str = 'rest'


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


@dataclass(frozen=True)
class UnbindPort(Command):
    """Remove an access port's binding; its tenant systems detach."""

    dpid: object
    port: str


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
class ApplyConfig(Command):
    """Apply a declarative document (declared.py: VNs, NVEs, bindings)."""

    document: dict
    origin: str = 'config'
    actor: str = field(default=ACTOR_CONFIG, kw_only=True)


COMMANDS = (CreateVN, UpdateVN, DeleteVN, RegisterNVE, DeleteNVE, BindPort,
            UnbindPort, Associate, Dissociate, ApplyConfig)
