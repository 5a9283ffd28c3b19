"""Which instance of a cluster is the OpenFlow master of which NVE.

Plain Python with time passed in (``mono``: a monotonic clock; it keeps
running while the process is stopped, which is the point).  The shim feeds
it what etcd says (the watch: live instances, who reaches which NVE, who
owns which NVE, the leader) and the fate of its own lease; it answers what
to claim, release and say in etcd (:meth:`Mastership.actions`), and for
each NVE whether this instance may write to it (:meth:`may_write`) and
which role to ask the switch for (:meth:`role_for`).  The writes themselves
are storage/etcd.py's (EtcdCluster); the role state of each channel is
southbound/channel.py's.

The rules (measured in the spike that preceded this; docs/contracts.md,
"Cluster"):

* **Liveness** is a key on the instance's lease.  The lease is kept alive
  every TTL/3; the local fence is ``deadline = (monotonic time the last
  successful keepalive was asked) + granted TTL``, and the instance writes
  nothing (no flow-mod, no packet-out, no record, no claim) unless
  ``mono < deadline - margin``.  etcd counts the TTL from when it received
  the keepalive, later than we asked, so the local deadline always passes
  first: a frozen or cut-off instance stops before anyone can take its
  NVEs over.  After the lease is lost, the instance takes a new one and
  resynchronises (a full reload) before it claims anything again.
* **Ownership** is the key ``owner/<dpid>`` on the owner's lease, created
  only if absent; the **generation id** the OpenFlow role request carries
  is its create revision (etcd revisions only grow, so a later master
  always has a larger one and the switch refuses the older).  An owner
  key is this instance's only if it hangs on its *current* lease.
* **The plan**, the same pure function on every instance: a live owner
  connected to its NVE keeps it (sticky); an unowned NVE goes to the
  least-loaded live instance connected to it; when loads differ by more
  than one, the busiest owner hands one NVE to the idlest instance, but only
  to one alive for ``hold_down`` (an instance that just came back settles
  first: no ping-pong).  Only owners release and only unowned NVEs are
  claimed (compare-and-swap), so brief disagreements between the
  instances' views are harmless.
* **The leader** (the key ``leader``, created if absent, on its lease)
  decides for NVEs no instance masters (an NVE away from every instance).
"""

import hashlib
import json
from typing import NamedTuple

MASTER, SLAVE = 'master', 'slave'


class Owner(NamedTuple):
    """An NVE's owner key: the instance, the generation (the key's create
    revision) and the lease it hangs on."""

    name: str
    generation: int
    lease: int


class Mastership:
    """One instance's view of the cluster and its decisions (see the module
    doc).  ``name``: this instance; ``ttl``: the lease TTL asked for;
    ``hold_down``: seconds an instance must be alive before NVEs are
    handed to it (default two TTLs); ``margin``: seconds of the lease never
    relied on."""

    def __init__(self, name, ttl=3, hold_down=None, margin=0.5):
        self.name = name
        self.ttl = ttl
        self.hold_down = 2.0 * ttl if hold_down is None else hold_down
        self.margin = margin
        self.lease = None
        self.deadline = 0.0
        self.synced = False          # the view was loaded since the lease
        self.alive = {}              # name -> (first seen, info)
        self.known = set()           # every instance seen since the start
        self.conns = {}              # dpid -> {instance}
        self.owners = {}             # dpid -> Owner
        self.leader = None           # (name, lease)
        self.releasing = set()       # NVEs being given up: no writes
        self.max_gen = {}            # dpid -> largest generation seen
        self.lease_losses = 0

    # -- the lease (the keepalive greenlet, the watch) --

    def registered(self, lease, ttl, asked):
        """A new lease was granted (``asked``: when it was asked for)."""
        self.lease = lease
        self.deadline = asked + ttl
        self.synced = False

    def renewed(self, ttl, asked):
        """A keepalive asked at ``asked`` kept the lease for ``ttl`` more
        seconds; False when ``ttl`` says it is gone."""
        if ttl <= 0:
            self.lost()
            return False
        self.deadline = max(self.deadline, asked + ttl)
        return True

    def lost(self):
        """The lease is gone (expired while we were frozen or cut off):
        nothing of ours is ours any more."""
        if self.lease is not None:
            self.lease_losses += 1
        self.lease = None
        self.deadline = 0.0
        self.synced = False
        self.releasing.clear()

    def lease_ok(self, mono):
        """Whether this instance may write now (the local fence)."""
        return self.lease is not None and mono < self.deadline - self.margin

    # -- the view (the watch) --

    def reset(self):
        """Forget the view (a full reload follows)."""
        self.alive, self.conns, self.owners, self.leader = {}, {}, {}, None

    def loaded(self):
        """A full reload of the view is complete."""
        self.synced = self.lease is not None

    def observe(self, key, value, lease, create_revision, deleted, mono):
        """One key of the cluster's part of the prefix (``key`` without the
        prefix: ``inst/a``, ``conn/<dpid>/a``, ``owner/<dpid>``,
        ``leader``) was put or deleted."""
        parts = key.split('/')
        head = parts[0]
        if head == 'inst' and len(parts) == 2:
            name = parts[1]
            if deleted:
                self.alive.pop(name, None)
            else:
                self.known.add(name)
                first = self.alive.get(name, (mono, None))[0]
                try:
                    info = json.loads(value or b'{}')
                except ValueError:
                    info = None
                self.alive[name] = (first, info)
        elif head == 'conn' and len(parts) == 3:
            dpid = int(parts[1], 16)
            names = self.conns.setdefault(dpid, set())
            if deleted:
                names.discard(parts[2])
                if not names:
                    del self.conns[dpid]
            else:
                names.add(parts[2])
        elif head == 'owner' and len(parts) == 2:
            dpid = int(parts[1], 16)
            if deleted:
                self.owners.pop(dpid, None)
                self.releasing.discard(dpid)
            else:
                self.owners[dpid] = Owner(value.decode(errors='replace'),
                                          create_revision, lease)
                self.max_gen[dpid] = max(self.max_gen.get(dpid, 0),
                                         create_revision)
        elif head == 'leader' and len(parts) == 1:
            self.leader = None if deleted else (
                value.decode(errors='replace'), lease)

    # -- what is ours --

    def mine(self, dpid):
        """The generation of our mastership of NVE ``dpid``, or None."""
        owner = self.owners.get(dpid)
        if owner is not None and owner.name == self.name and \
                self.lease is not None and owner.lease == self.lease:
            return owner.generation
        return None

    def may_write(self, dpid, mono):
        """The generation we may write NVE ``dpid`` under now, or None."""
        if dpid in self.releasing or not self.lease_ok(mono):
            return None
        return self.mine(dpid)

    def is_leader(self):
        """Whether this instance leads (holds the key on its lease)."""
        return self.leader is not None and self.lease is not None and \
            self.leader == (self.name, self.lease)

    def decides(self, dpid, mono):
        """Whether decisions about NVE ``dpid`` (its tenant systems ageing
        out, being unreachable) are ours: we master it, or nobody does and
        we lead."""
        if not self.lease_ok(mono):
            return False
        if self.mine(dpid) is not None:
            return dpid not in self.releasing
        return dpid not in self.owners and self.is_leader()

    def role_for(self, dpid, mono):
        """``(role, generation)`` to ask NVE ``dpid``'s switch for: master
        with our generation, or slave with the current owner's (or the
        largest seen: a slave request must never carry a generation above
        the master's, or the switch would refuse the master's next
        request)."""
        gen = self.may_write(dpid, mono)
        if gen is not None:
            return MASTER, gen
        owner = self.owners.get(dpid)
        return SLAVE, owner.generation if owner else self.max_gen.get(dpid, 0)

    # -- decisions --

    def _rank(self, name, dpid, load):
        return (load[name], hashlib.sha1(
            ('%s/%016x' % (name, dpid)).encode()).digest())

    def plan(self, mono):
        """``{dpid: instance}``: who should master each NVE some live
        instance reaches (see the module doc)."""
        alive = self.alive
        load = {name: 0 for name in alive}
        plan = {}
        for dpid, owner in self.owners.items():
            if owner.name in alive and owner.name in self.conns.get(dpid, ()):
                plan[dpid] = owner.name
                load[owner.name] += 1
        for dpid in sorted(self.conns):
            if dpid in plan:
                continue
            cands = [n for n in self.conns[dpid] if n in alive]
            if cands:
                plan[dpid] = min(cands, key=lambda n, d=dpid: self._rank(
                    n, d, load))
                load[plan[dpid]] += 1
        for dpid in sorted(plan):
            cur = plan[dpid]
            cands = [n for n in self.conns.get(dpid, ()) if n in alive and (
                n == cur or mono - alive[n][0] >= self.hold_down)]
            idle = min(cands, key=lambda n, d=dpid: self._rank(n, d, load))
            if load[cur] - load[idle] > 1:
                load[cur] -= 1
                load[idle] += 1
                plan[dpid] = idle
        return plan

    def actions(self, connected, mono):
        """What to write in etcd now, given the NVEs this instance has a
        channel to: ``[('conn', dpid, True|False), ('claim', dpid),
        ('release', dpid), ('lead',)]``.  Nothing while the lease is not
        valid or the view is not loaded yet."""
        if not (self.lease_ok(mono) and self.synced):
            return []
        out = []
        me = self.name
        connected = set(connected)
        said = {dpid for dpid, names in self.conns.items() if me in names}
        out += [('conn', dpid, True) for dpid in sorted(connected - said)]
        out += [('conn', dpid, False) for dpid in sorted(said - connected)]
        if me not in self.alive:
            return out               # our own key is not in the view yet
        plan = self.plan(mono)
        for dpid in sorted(set(self.owners) | set(plan)):
            owner = self.owners.get(dpid)
            want = plan.get(dpid)
            if owner is None:
                if want == me and dpid in connected:
                    out.append(('claim', dpid))
            elif self.mine(dpid) is not None and dpid not in self.releasing:
                if dpid not in connected or (want is not None and want != me):
                    self.releasing.add(dpid)      # stop writing first
                    out.append(('release', dpid))
        if self.leader is None:
            out.append(('lead',))
        return out

    def claimed(self, dpid, generation):
        """Our claim of NVE ``dpid`` succeeded at ``generation`` (the watch
        would say so a moment later)."""
        self.owners[dpid] = Owner(self.name, generation, self.lease)
        self.max_gen[dpid] = max(self.max_gen.get(dpid, 0), generation)

    def masters(self):
        """``{instance: [dpid, ...]}`` of the owners in the view."""
        out = {}
        for dpid, owner in sorted(self.owners.items()):
            out.setdefault(owner.name, []).append(dpid)
        return out
