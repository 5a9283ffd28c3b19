"""Desired against installed, for one NVE: send only the difference.

:class:`NveFlowTable` keeps, per *owner* (the database record flows come
from, see flows.py), a *spec*: a small immutable value from which
``build(spec)`` makes the owner's flows (and meters).  The desired state of
an NVE is its specs; the NVE is known to hold what the same specs built,
except for the owners whose spec changed since (``_was`` keeps what they
held).  Why specs and not flows: a tenant system's flows on its ten NVEs
are ten copies of two flow sets; kept as two shared specs they cost a
small fraction of the memory the flows would (benchmarks/README.md), and
``build`` is memoized so equal specs are built (and validated) once.

:meth:`take_changes` turns what changed into the smallest list of changes,
merged per flow key into one backlog, so that a key that passes from one
owner to another is modified in place, never deleted after its new owner
added it.  A key is (table, priority, match) as in OpenFlow, so an ADD of a
changed flow is a modify in place and nothing is ever wiped: on
(re)connect the table is given the NVE's flow dump and the same comparison
repairs whatever differs.
"""

from ..authority import flows
from . import stamp

ADD, MODIFY, DELETE = 'add', 'modify', 'delete'

# Send order: meters before the flows that use them, adds and modifies
# before deletes (make before break), meter deletes last.
_PHASE = {(True, ADD): 0, (True, MODIFY): 0, (False, ADD): 1,
          (False, MODIFY): 1, (False, DELETE): 2, (True, DELETE): 3}

# (op already queued, op of the newer change) -> op to send; None: nothing.
# The queued change has not reached the switch, the newer one was computed
# as if it had.
_MERGE = {
    (ADD, MODIFY): ADD, (ADD, DELETE): None, (MODIFY, MODIFY): MODIFY,
    (MODIFY, DELETE): DELETE, (DELETE, ADD): MODIFY,
}


class OwnerConflict(Exception):
    """Two owners want the same flow key: a flow-computation bug."""


def _is_meter(key):
    return key[0] == 'meter'


def _compare(have, want):
    """(key, op, item) that turn ``have`` into ``want`` (key -> item)."""
    for key, item in want.items():
        old = have.get(key)
        if old is None:
            yield key, ADD, item
        elif old != item:
            yield key, MODIFY, item
    for key, item in have.items():
        if key not in want:
            yield key, DELETE, item


class NveFlowTable:
    """Desired and installed state of one NVE; ``build(spec)`` makes the
    items (flows and meters) of a spec, and ``build(None)`` none."""

    def __init__(self, build, spec_digest=stamp.spec_digest, count=None):
        self.build = build
        self.specs = {}      # owner -> spec: what the NVE must hold
        self._was = {}       # owner -> spec it holds, where that differs
        self._raw = None     # key -> item: a dump not yet compared
        self._backlog = {}   # key -> (op, item): taken, not yet handed out
        self.n_desired = 0   # flows and meters the specs build
        # stamp.py: the digest of the specs, kept as they change (None:
        # not asked for yet, made on first use).
        self.spec_digest = spec_digest
        self._digest = None
        self.count = count or (lambda spec: len(build(spec)))

    def owners(self):
        """Owners the NVE holds or must hold."""
        return set(self.specs) | set(self._was)

    def set_owners(self, batch):
        """Set the spec of several owners (None: the owner holds nothing
        here).  Cheap: nothing is built until :meth:`take_changes`."""
        specs, was, build = self.specs, self._was, self.build
        for owner, spec in batch.items():
            spec = spec or None
            cur = specs.get(owner)
            if spec == cur:
                continue
            if owner not in was:
                was[owner] = cur
            elif was[owner] == spec:
                del was[owner]          # back to what the NVE holds
            if spec is None:
                del specs[owner]
            else:
                specs[owner] = spec
            self.n_desired += self.count(spec) - self.count(cur)
            if self._digest is not None:
                self._digest ^= self.spec_digest(cur) ^ self.spec_digest(spec)

    def digest(self):
        """The digest (stamp.py) of what the NVE must hold."""
        if self._digest is None:
            value = 0
            for spec in self.specs.values():
                value ^= self.spec_digest(spec)
            self._digest = value
        return self._digest

    @property
    def desired(self):
        """key -> item of everything the NVE must hold (built now)."""
        return self._items(self.specs.values())

    @property
    def installed(self):
        """key -> item the NVE holds once what was taken is applied."""
        if self._raw is not None:
            return dict(self._raw)
        held = dict(self.specs)
        held.update(self._was)
        return self._items(held.values())

    def _items(self, specs):
        out = {}
        for spec in specs:
            for item in self.build(spec):
                if out.setdefault(item.key, item) is not item:
                    raise OwnerConflict('two flows at %r' % (item.key,))
        return out

    def load_installed(self, items):
        """The switch told us what it holds (a dump): compare everything
        at the next :meth:`take_changes`.  Nothing was sent while the dump
        ran, so the dump is the whole truth."""
        self._raw = {item.key: item for item in items}
        self._was = {}
        self._backlog = {}

    def assume_installed(self):
        """The NVE holds exactly what the specs build (its stamp says so):
        nothing to send, and no dump to compare."""
        self._raw = None
        self._was = {}
        self._backlog = {}

    @property
    def pending(self):
        """How much is left to send (owners and flow keys)."""
        if self._raw is not None:    # not compared yet: all of it
            return len(self._raw) + self.n_desired
        return len(self._was) + len(self._backlog)

    @property
    def in_sync(self):
        """Nothing left to send: the NVE holds (or was sent) what it must
        hold."""
        return self._raw is None and not self._was and not self._backlog

    def take_changes(self, limit=None):
        """Up to ``limit`` changes, in send order; the rest stays queued."""
        if self._raw is not None:
            self._compare_dump()      # covers every owner
            self._was = {}
        elif self._was:
            self._queue_owner_changes()
        backlog = self._backlog
        if not backlog:
            return []
        phases = ([], [], [], [])
        for key, change in backlog.items():
            phases[_PHASE[(_is_meter(key), change[0])]].append(change)
        changes = phases[0] + phases[1] + phases[2] + phases[3]
        if limit is None or len(changes) <= limit:
            self._backlog = {}
            return changes
        changes = changes[:limit]
        for _, item in changes:
            del backlog[item.key]
        return changes

    def _queue_owner_changes(self):
        """Build the changed owners' old and new flows, all at once: a key
        one of them releases may be the key another one claims."""
        old, new = {}, {}
        build = self.build
        for owner, was in self._was.items():
            for item in build(was):
                old[item.key] = item
            for item in build(self.specs.get(owner)):
                if new.setdefault(item.key, item) is not item:
                    raise OwnerConflict('%r wants a flow another changed '
                                        'owner wants: %r' % (owner, item.key))
        self._was = {}
        for key, op, item in _compare(old, new):
            self._queue(key, op, item)

    def _queue(self, key, op, item):
        queued = self._backlog.get(key)
        if queued is not None:
            op = _MERGE[(queued[0], op)]
            if op is None:
                del self._backlog[key]
                return
        self._backlog[key] = (op, item)

    def _compare_dump(self):
        raw, self._raw = self._raw, None
        self._backlog = {key: (op, item)
                         for key, op, item in _compare(raw, self.desired)}

    def diff(self):
        """(missing, stale, different) keys between desired and installed."""
        found = {ADD: set(), DELETE: set(), MODIFY: set()}
        for key, op, _ in _compare(self.installed, self.desired):
            found[op].add(key)
        return found[ADD], found[DELETE], found[MODIFY]


class Memo:
    """``fn(spec)``, remembered for a while: a tenant system's remote view
    is one object shared by every member NVE, worked out once for all of
    them (its flows counted, its digest hashed).  Bounded (cleared when
    full, and by :meth:`trim`, which the service calls when nothing is
    under way): it only has to last through one change, or one fleet
    reconnecting."""

    def __init__(self, fn, limit=1 << 18):
        self.fn = fn
        self.limit = limit
        self._memo = {}

    def __call__(self, spec):
        memo = self._memo
        try:
            return memo[spec]
        except KeyError:
            pass
        except TypeError:           # an unhashable spec: never remembered
            return self.fn(spec)
        if len(memo) >= self.limit:
            memo.clear()
        value = memo[spec] = self.fn(spec)
        return value

    def trim(self):
        """Forget what was remembered."""
        self._memo = {}


class FlowTables(dict):
    """The flow table of every NVE (dpid -> :class:`NveFlowTable`), made
    by the service and given to the authority, whose planner writes what
    each NVE must hold into them."""

    def __init__(self, build=flows.build):
        super().__init__()
        self.build = build
        self.spec_digest = Memo(stamp.spec_digest)
        self.spec_count = Memo(lambda spec: len(build(spec)))

    def table(self, dpid):
        """NVE ``dpid``'s table, made empty on first use."""
        table = self.get(dpid)
        if table is None:
            table = self[dpid] = self.new_table()
        return table

    def new_table(self):
        """An empty table (also for the copies a dry run plans into)."""
        return NveFlowTable(self.build, self.spec_digest, self.spec_count)

    def trim(self):
        """Forget the remembered counts and digests (see :class:`Memo`)."""
        self.spec_digest.trim()
        self.spec_count.trim()
