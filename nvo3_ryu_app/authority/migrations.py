"""Announced live migrations: a vNIC changes place without losing a frame.

A hypervisor knows a live migration is coming before the VM pauses, and
says so (``migrate`` on the registration RPC, ``POST
/v1/vns/{vnid}/migrations``): the vNIC is about to appear at (NVE, port).
From then on, until it is seen there:

* every member NVE delivers the vNIC's frames to both places (the flows are
  in dualflows.py): whatever instant the VM resumes at the new place, the
  frames sent to it are already there, and the old place gets them as long
  as the VM still runs there;
* the new NVE already answers ARP for the vNIC's addresses (it is in the VN
  already) and admits the vNIC's frames on the new port, copying them to
  the authority (a punt that the switch also forwards: nothing waits for
  us, nothing is dropped).

Its first frame there is its *arrival*, a claim decided by the same rules
as a learned move (mobility.py, law 4): if the old place is gone, or does
not answer the ARP probe within ``move_probe_timeout``, the claim is a
move: the old place is dropped, the location sequence number advances
once, and ``migration-completed`` says so (with the switch-over measured
once every NVE acknowledged it).  While the probe is out the frames still
go to both places.  If the old place answers, the vNIC is alive at both:
a conflict, the original stays, the new place is blocked and the migration
ends.

A migration that is cancelled, or not seen at its new place within
``migration_timeout``, ends and leaves the old place exactly as it was;
one that meets a move elsewhere, or whose vNIC goes, ends with it.  A
migration is persisted with its attachment (persist.py): a restart keeps
it, with its deadline.  Plain Python, time passed in.
"""

from . import events as ev
from .addresses import (dpid_str, norm_dpid, norm_mac, norm_port_name,
                        norm_vlan, norm_vnid)
from .errors import Conflict, NotFound
from .model import Migration

AWAITED, ARRIVED = 'awaited', 'arrived'


def view(att):
    """The migration of attachment ``att`` as the interfaces show it."""
    mig = att.migration
    return {
        'vnid': att.vnid, 'mac': att.mac,
        'from': {'nve': dpid_str(att.nve), 'port': att.port,
                 'vlan': att.vlan},
        'to': {'nve': dpid_str(mig.nve), 'port': mig.port,
               'vlan': mig.vlan},
        'started': mig.started, 'deadline': mig.deadline,
        'state': AWAITED if mig.arrived is None else ARRIVED,
        'arrived': mig.arrived,
    }


class Migrations:
    """The migrations under way (their records live in the attachments)."""

    def __init__(self, db, settings, arbiter):
        self.db = db
        self.settings = settings
        self.arbiter = arbiter

    # -- commands --

    def start(self, vnid, mac, nve, port, vlan, now):
        """Announce that ``mac`` of VN ``vnid`` is about to appear at
        (``nve``, ``port``, ``vlan``).  Returns its view, with ``action``
        ``started`` (or ``renewed``: announced again to the same place,
        the deadline starts over)."""
        db = self.db
        vnid = norm_vnid(vnid)
        db.get_vn(vnid)
        mac = norm_mac(mac)
        dpid = norm_dpid(nve, 'nve')
        port = norm_port_name(port, 'port')
        if vlan is not None:
            vlan = norm_vlan(vlan)
        target = db.nves.get(dpid)
        if target is None:
            raise NotFound('no NVE %s' % dpid_str(dpid), 'nve')
        att = db.attachments.get((vnid, mac))
        if att is None:
            raise NotFound('no tenant system %s in VN %d: a migration moves '
                           'a vNIC the authority knows' % (mac, vnid), 'mac')
        vlan = self._binding_vlan(target, port, vnid, vlan)
        dpid, port = db.location(target, port)
        if (att.nve, att.port, att.vlan) == (dpid, port, vlan):
            raise Conflict('%s is already at NVE %s port %s' % (
                mac, dpid_str(dpid), port), 'port')
        if att.frozen_until > now:
            raise Conflict('%s moved too often and is frozen where it is '
                           'for %.0f s more' % (mac, att.frozen_until - now),
                           'mac')
        old = att.migration
        deadline = now + self.settings.migration_timeout
        if old is not None:
            if old.place != (dpid, port, vlan):
                raise Conflict('%s is already migrating to NVE %s port %s; '
                               'cancel that migration first' % (
                                   mac, dpid_str(old.nve), old.port), 'mac')
            db.set_migration(att, old._replace(deadline=deadline))
            return dict(view(att), action='renewed')
        # The operator's word: a claimant blocked there before may come.
        db.unblock(att, (dpid, port))
        mig = Migration(dpid, port, vlan, now, deadline)
        db.set_migration(att, mig)
        db.migration_event(att, mig, now, ev.MIGRATION_STARTED,
                           old_nve=dpid_str(att.nve), old_port=att.port,
                           deadline=deadline)
        return dict(view(att), action='started')

    @staticmethod
    def _binding_vlan(nve, port, vnid, vlan):
        """The VLAN the port carries VN ``vnid`` on (None: untagged); the
        port must carry it, or the vNIC's frames there would be in no VN
        (or another one)."""
        binding = nve.bindings.get(port)
        if binding is not None and vlan is not None:
            if binding.vn_for(vlan) == vnid:
                return vlan
        elif binding is not None:
            if binding.vnid == vnid:
                return None
            tagged = [v for v, n in binding.vlans.items() if n == vnid]
            if tagged:
                return tagged[0]    # a port carries a VN on one VLAN only
        raise Conflict('port %s of NVE %s does not carry VN %d%s: bind it '
                       'to the VN first' % (
                           port, dpid_str(nve.dpid), vnid,
                           '' if vlan is None else ' on VLAN %d' % vlan),
                       'port')

    def cancel(self, vnid, mac, now):
        """Call the migration of ``mac`` in VN ``vnid`` off; the old place
        stays as it was.  Returns what the migration was."""
        att = self.db.attachments.get((norm_vnid(vnid), norm_mac(mac)))
        if att is None or att.migration is None:
            raise NotFound('no migration of %s in VN %s' % (mac, vnid),
                           'mac')
        was = view(att)
        self.arbiter.forget(att.key)
        self.db.end_migration(att, now, ev.MIGRATION_CANCELLED,
                              reason='requested')
        return was

    # -- the data plane's news --

    def is_arrival(self, att, dpid, port, vlan):
        """Is a frame of ``att`` at (dpid, port, vlan) its announced
        arrival?"""
        mig = att.migration
        return mig is not None and mig.place == (dpid, port, vlan)

    def arrived(self, att, frame, in_port, data, forwarded, now):
        """The vNIC's frame at its announced place.  ``forwarded``: the new
        NVE forwarded the frame itself (its arrival flows copy it to us);
        otherwise it is held and re-injected once decided.  Returns the
        packet-outs (the probe of the old place, a re-injected frame)."""
        mig = att.migration
        if mig.arrived is not None or att.key in self.arbiter.claims:
            # Already being decided: the frames go to both places meanwhile
            # (one that was not forwarded is dropped, as any frame of a
            # claim in flight).
            return []
        self.db.set_migration(att, mig._replace(arrived=now))
        return self.arbiter.claim(att, mig.nve, mig.port, mig.vlan, frame,
                                  in_port, None if forwarded else data, now,
                                  how='migration')

    # -- time --

    def due(self, now):
        """Migrations not seen at their new place by their deadline end; the
        old place stays as it was."""
        db = self.db
        for key in sorted(db.migrating):
            att = db.attachments[key]
            mig = att.migration
            if mig.arrived is not None:
                if key not in self.arbiter.claims:
                    # Its arrival claim is gone (nothing decided it):
                    # await the next frame there.
                    db.set_migration(att, mig._replace(arrived=None))
                continue
            if mig.deadline <= now:
                db.end_migration(att, now, ev.MIGRATION_TIMED_OUT,
                                 waited=round(now - mig.started, 3))

    def next_wakeup(self):
        """The earliest deadline of a migration still awaited, or None."""
        times = [self.db.attachments[key].migration.deadline
                 for key in self.db.migrating]
        return min(times) if times else None

    def holds(self, att):
        """Does a migration keep ``att`` at its old place although that
        place went down (the VM's old tap may go before it resumes at the
        new place: the migration's deadline bounds the wait)?"""
        return att.migration is not None
