"""Deciding whether a known MAC seen somewhere new is a move (draft 7.5).

A frame from a known tenant system at another NVE or port is a *claim*.
If the old location is gone (port down or removed, NVE away) the claim is a
move at once: that is how a live migration looks.  If the old location is
still up, the arbiter probes it (an ARP probe out of the old port) and holds
the claim for ``probe_timeout``: an answer from the old location makes the
claim a conflict (the original stays, the claimant is blocked); silence
makes it a move.  An address that moves more than ``max_moves`` times within
``move_window`` is frozen at its last location and reported.

An announced migration arriving at its new place (authority/migrations.py)
is a claim like any other, decided by the same rules (law 4): while it is
probed, the frames go to both places; the move that ends it completes the
migration, and a conflict ends it too (the claimant's place is blocked).

A registration (the RPC) that would take a tenant system, or its address,
away from a live location gets the same treatment (law 4): a
:class:`Verification` holds it while every live location it would take
over is probed; one answer refuses it (a ``conflict`` event, the RPC gets
an error), silence until ``probe_timeout`` lets the authority carry it out.
A location that cannot be probed (no IPv4 address) is not taken over.

Plain Python with time passed in; the authority sends what it returns.
"""

import itertools
from dataclasses import dataclass

from . import events as ev
from . import packets
from .addresses import dpid_str
from .errors import Conflict
from .messages import PacketOut
from .model import location_of
from .pipeline import PROBE_MAC


@dataclass
class Claim:
    """A frame of a known MAC at a new place, held while its old location is
    probed."""

    vnid: int
    mac: str
    dpid: int
    port: str
    vlan: int
    ip: str
    how: str
    in_port: int
    data: bytes
    started: float
    deadline: float


@dataclass
class Verification:
    """A registration held while the live tenant systems it would take
    over are probed.  ``probed`` holds ``((vnid, mac), dpid, port)`` of
    each probed attachment where it was; ``reasons`` says, per attachment
    key, what the registration would take (``old-location-live``: the
    vNIC itself, ``ip-owner-live``: an address of another vNIC)."""

    vid: int
    command: object
    actor: str
    claimant: tuple      # (dpid, port) the registration names
    probed: frozenset
    reasons: dict
    started: float
    deadline: float


def location_live(db, att):
    """Whether ``att``'s location could still answer: its NVE connected and
    reachable, its port up."""
    nve = db.nves.get(att.nve)
    return (nve is not None and nve.dyn_connected and att.reachable
            and nve.ofport(att.port) is not None)


def probe_address(att):
    """An IPv4 address of ``att`` an ARP probe can ask for, or None."""
    return next((ip for ip in att.ips if ':' not in ip), None)


class MoveArbiter:
    """Claims in flight and the moves they become; registrations being
    verified."""

    def __init__(self, db, settings):
        self.db = db
        self.opts = settings
        self.claims = {}        # (vnid, mac) -> Claim
        self.redirecting = {}   # (vnid, mac) -> until
        self.verifications = {}  # vid -> Verification
        self._vids = itertools.count(1)

    def next_wakeup(self):
        """The next probe deadline or redirect end, or None."""
        times = [c.deadline for c in self.claims.values()]
        times += [v.deadline for v in self.verifications.values()]
        times += list(self.redirecting.values())
        return min(times) if times else None

    # -- registrations that would take over a live location --

    def verify(self, command, actor, targets, claimant, now):
        """Hold registration ``command`` while ``targets`` (``[(att, ip,
        reason)]``: each live attachment it would take over, the IPv4
        address to probe it for, and why) are probed.  Returns ``(vid,
        probes)``; refuses (Conflict) while another registration is being
        verified against one of them."""
        busy = {key for v in self.verifications.values()
                for key, _, _ in v.probed}
        for att, _, _ in targets:
            if att.key in busy:
                raise Conflict('a registration touching %s in VN %d is '
                               'being verified; try again in a moment' % (
                                   att.mac, att.vnid), 'mac')
        vid = next(self._vids)
        probed = frozenset((att.key, att.nve, att.port)
                           for att, _, _ in targets)
        reasons = {att.key: reason for att, _, reason in targets}
        self.verifications[vid] = Verification(
            vid, command, actor, claimant, probed, reasons, now,
            now + self.opts.move_probe_timeout)
        return vid, [self._probe(att, ip) for att, ip, _ in targets]

    def verification_answered(self, vnid, mac, dpid, port, now):
        """A probed tenant system answered at ``(dpid, port)``: the
        registration that would have taken it over is refused (a conflict
        event says so).  Returns the Verification refused, or None."""
        for vid, verification in list(self.verifications.items()):
            if ((vnid, mac), dpid, port) not in verification.probed:
                continue
            del self.verifications[vid]
            reason = verification.reasons[(vnid, mac)]
            with self.db.event_log.acting(verification.actor):
                self.db.event_log.record(
                    now, ev.CONFLICT, vnid=vnid, mac=mac,
                    nve=dpid_str(dpid), port=port,
                    claimant_nve=dpid_str(verification.claimant[0]),
                    claimant_port=verification.claimant[1],
                    claimant_mac=getattr(verification.command, 'mac', None),
                    reason=reason, how='registered')
            return verification
        return None

    def due_verifications(self, now):
        """Registrations whose probes went unanswered: they may go on."""
        due = [v for v in self.verifications.values() if v.deadline <= now]
        for verification in due:
            del self.verifications[verification.vid]
        return due

    def claim(self, att, dpid, port, vlan, frame, in_port, data, now,
              how=None):
        """A known MAC showed up elsewhere.  Returns packet-outs to send
        (the re-injected frame after a move, or a probe); [] drops it.
        ``data`` None: the switch forwarded the frame itself (nothing to
        re-inject); ``how`` overrides the frame's kind in the move event."""
        how = how or frame.how
        where = (dpid, port)
        if att.blocked.get(where, 0) > now:
            return []
        if att.frozen_until > now:
            self._block(att, where, now, 'frozen')
            return []
        if att.key in self.claims:
            return []            # one probe at a time; the frame is dropped
        probe_ip = probe_address(att)
        if not self._old_location_live(att) or probe_ip is None:
            return self._move(att, dpid, port, vlan, how, in_port, data, now)
        self.claims[att.key] = Claim(att.vnid, att.mac, dpid, port, vlan,
                                     frame.ip, how, in_port, data, now,
                                     now + self.opts.move_probe_timeout)
        return [self._probe(att, probe_ip)]

    def probe_answered(self, vnid, mac, dpid, port, now):
        """The probed tenant system answered at ``(dpid, port)``."""
        claim = self.claims.get((vnid, mac))
        att = self.db.attachments.get((vnid, mac))
        if claim is None or att is None or (att.nve, att.port) != (dpid, port):
            return False
        del self.claims[att.key]
        self._block(att, (claim.dpid, claim.port), now, 'old-location-live')
        return True

    def forget(self, key):
        """Drop the claim of ``key`` ((vnid, mac)) if one is in flight: what
        it was about was called off."""
        self.claims.pop(key, None)

    def location_gone(self, dpid, port, now):
        """The port ``port`` of NVE ``dpid`` went down or away: a claim
        probing a tenant system there needs no answer any more, it is a
        move now (a migrated VM's old tap often goes a moment after the VM
        announced itself at its new place)."""
        outs = []
        for key, claim in list(self.claims.items()):
            att = self.db.attachments.get(key)
            if att is None or (att.nve, att.port) != (dpid, port):
                continue
            del self.claims[key]
            outs += self._move(att, claim.dpid, claim.port, claim.vlan,
                               claim.how, claim.in_port, claim.data, now)
        return outs

    def due(self, now):
        """Claims whose probe went unanswered become moves; redirects end."""
        outs = []
        for key, claim in list(self.claims.items()):
            if claim.deadline > now:
                continue
            del self.claims[key]
            att = self.db.attachments.get(key)
            if att is not None:
                outs += self._move(att, claim.dpid, claim.port, claim.vlan,
                                   claim.how, claim.in_port, claim.data, now)
        for key, until in list(self.redirecting.items()):
            if until <= now:
                del self.redirecting[key]
                att = self.db.attachments.get(key)
                if att is not None:
                    self.db.end_redirect(att)
        return outs

    def _old_location_live(self, att):
        return location_live(self.db, att)

    def _move(self, att, dpid, port, vlan, how, in_port, data, now):
        window = [t for t in att.move_times
                  if now - t < self.opts.move_window]
        # An announced migration is the operator's word, not a flap.
        if how != 'migration' and len(window) >= self.opts.max_moves:
            self.db.freeze(att, now + self.opts.freeze_time)
            self.db.event_log.record(
                now, ev.FROZEN, vnid=att.vnid, mac=att.mac,
                **location_of(att),
                moves=len(window), window=self.opts.move_window)
            self._block(att, (dpid, port), now, 'flapping')
            return []
        self.db.unblock(att, (dpid, port))
        self.db.move(att, dpid, port, vlan, now, how)
        self.redirecting[att.key] = now + self.opts.redirect_hold
        if data is None:
            return []
        return [PacketOut(dpid, in_port, data, [('output', 'TABLE')])]

    def _block(self, att, where, now, reason):
        self.db.block(att, where, now + self.opts.block_time, now)
        self.db.event_log.record(
            now, ev.CONFLICT, vnid=att.vnid, mac=att.mac,
            **location_of(att),
            claimant_nve=dpid_str(where[0]), claimant_port=where[1],
            reason=reason)
        mig = att.migration
        if mig is not None and (mig.nve, mig.port) == where:
            # Seen alive at both places: not two locations for ever.
            self.db.end_migration(att, now, ev.MIGRATION_CANCELLED,
                                  reason=reason)

    def _probe(self, att, ip):
        frame = packets.build_arp_probe(PROBE_MAC, att.mac, ip)
        if att.vlan is not None:
            frame = packets.build_vlan_tagged(frame, att.vlan)
        ofport = self.db.nves[att.nve].ofport(att.port)
        return PacketOut(att.nve, 'CONTROLLER', frame, [('output', ofport)])
