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

A VN's tenant systems look alike from every member NVE that does not hold
them (a tunnel route, the ARP answers): one shared :class:`Layer` per VN
(and tunnel port number) keeps that view, owner -> spec, and every member
NVE's table reads it; a table keeps an entry of its own only where its NVE
sees the tenant system otherwise (where it is attached, a claimant blocked
there, a redirect), OVN's logical flows shared by the chassis.  A tenant
system costs two slots (the layer's, its own NVE's) rather than one per
member NVE: that slot was a quarter of the memory per mapping entry
(benchmarks/README.md).  Only the effective spec per owner (its own entry,
else its layer's) is the table's desired state, so everything below reads
the same as without layers.
"""

from ..authority import flows
from ..authority.owners import TS
from . import stamp

ADD, MODIFY, DELETE = 'add', 'modify', 'delete'

# A batch of more owners than this is counted when the count is asked
# (NveFlowTable.n_desired): an NVE planned in full as it connects.  A
# smaller one (an attachment, a move) is counted at once, so that a table
# keeps nothing more between two reads of its count.
COUNT_LATER = 32

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


def _same(one, other):
    """Specs that build the same flows: equal and of one type (views of
    different types may compare equal as tuples)."""
    return one is other or (type(one) is type(other) and one == other)


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


class Layer:
    """What every member NVE of VN ``key[0]`` whose tunnel port is
    ``key[1]`` holds alike for the VN's tenant systems: owner -> spec, as
    an NVE that does not hold the tenant system sees it; ``tables`` read
    it.  ``count`` and ``digest`` are those of all its specs (the flows
    they build, stamp.py's digest), kept as they change: a table that
    reads the layer adds them in one step, not one owner at a time (an
    NVE connecting reads its VNs' every tenant system)."""

    __slots__ = ('key', 'specs', 'tables', 'count', 'digest')

    def __init__(self, key):
        self.key = key
        self.specs = {}
        self.tables = set()
        self.count = 0
        self.digest = 0


class NveFlowTable:
    """Desired and installed state of one NVE; ``build(spec)`` makes the
    items (flows and meters) of a spec, and ``build(None)`` none."""

    def __init__(self, build, spec_digest=stamp.spec_digest, count=None):
        self.build = build
        self._own = {}       # owner -> spec, where it is not its layer's
        #                      (None: the NVE holds nothing of it)
        self._layers = {}    # vnid -> the Layer its tenant systems read
        self._was = {}       # owner -> spec it holds, where that differs
        self._raw = None     # key -> item: a dump not yet compared
        self._backlog = {}   # key -> (op, item): taken, not yet handed out
        self._n = 0          # flows and meters the specs build, but for:
        self._uncounted = {}  # owner -> its spec counted in _n (n_desired)
        # stamp.py: the digest of the specs (None: not asked for yet,
        # made on first use), brought up to date when asked: a change
        # notes what the digest still counts for its owner.  Hashing an
        # NVE's or a VN's spec (tens of flows) on each change put a
        # fraction of a millisecond between a move and its flows; the
        # digest is asked once the NVE is quiet (a stamp) or by REST.
        self.spec_digest = spec_digest
        self._digest = None
        self._undigested = {}  # owner -> the spec the digest counts
        self.count = count or (lambda spec: len(build(spec)))
        # The same for a layer's specs, which every member NVE reads: a
        # Memo remembers those (see Memo.remember).
        self._shared_digest = getattr(spec_digest, 'remember', spec_digest)
        self._shared_count = getattr(self.count, 'remember', self.count)

    def _layer_of(self, owner):
        if self._layers and owner.kind == TS:
            return self._layers.get(owner.vnid)
        return None

    def spec(self, owner):
        """What ``owner`` must hold on the NVE (None: nothing)."""
        own = self._own
        if owner in own:
            return own[owner]
        layer = self._layer_of(owner)
        return layer.specs.get(owner) if layer is not None else None

    def has_own(self, owner):
        """Whether the table keeps an entry of its own for ``owner`` (its
        layer's spec is not what the NVE must hold of it)."""
        return owner in self._own

    def shared_spec(self, owner):
        """The spec of ``owner`` in the layer the table reads it from
        (None if none): a view of the NVE's own can share its parts."""
        layer = self._layer_of(owner)
        return layer.specs.get(owner) if layer is not None else None

    def _effective(self):
        """(owner, spec) of everything the NVE must hold."""
        own = self._own
        for owner, spec in own.items():
            if spec is not None:
                yield owner, spec
        for layer in self._layers.values():
            for owner, spec in layer.specs.items():
                if owner not in own:
                    yield owner, spec

    @property
    def specs(self):
        """owner -> spec of everything the NVE must hold (a new dict)."""
        return dict(self._effective())

    def owners(self):
        """Owners the NVE holds or must hold."""
        out = {owner for owner, _ in self._effective()}
        out.update(self._was)
        return out

    def exceptions(self):
        """Owners the table keeps a spec of its own for, or holds another
        spec of than it must (a change not sent yet): what it must hold
        of the others is its layers'."""
        return self._own.keys() | self._was.keys()

    def layer_vnids(self):
        """The VNs whose tenant systems the table reads from a layer."""
        return set(self._layers)

    def flat_copy(self):
        """A table without layers that must hold what this one must, and
        counts it as held (a dry run plans into such copies)."""
        table = type(self)(self.build, self.spec_digest, self.count)
        table._own = self.specs
        table.n_desired = self.n_desired
        return table

    def set_owners(self, batch):
        """Set the spec of several owners (None: the owner holds nothing
        here).  Cheap: nothing is built until :meth:`take_changes`, and
        the owners of a large batch are counted when the count is asked
        (:attr:`n_desired`)."""
        own = self._own
        later = len(batch) > COUNT_LATER
        for owner, spec in batch.items():
            spec = spec or None
            layer = self._layer_of(owner)
            base = layer.specs.get(owner) if layer is not None else None
            cur = own[owner] if owner in own else base
            if _same(spec, base):
                own.pop(owner, None)
            else:
                own[owner] = spec
            if not _same(spec, cur):
                self._note(owner, cur, spec, later=later)

    @property
    def n_desired(self):
        """How many flows and meters the specs build.  The own specs of a
        large batch are counted when this is asked, not as they are set:
        counting builds their flows (tens of us for a tenant system's),
        which an NVE in sync by its stamp after a restart needs for
        nothing else."""
        if self._uncounted:
            count, n = self.count, self._n
            for owner, counted in self._uncounted.items():
                n += count(self.spec(owner)) - count(counted)
            self._n, self._uncounted = n, {}
        return self._n

    @n_desired.setter
    def n_desired(self, value):
        """Set the count (a copy's: what it was counted from)."""
        self._n, self._uncounted = value, {}

    def _note(self, owner, cur, spec, n_delta=None, shared=False,
              later=False):
        """The effective spec of ``owner`` went from ``cur`` to ``spec``
        (``shared``: both are a layer's; ``later``: counted when the
        count is asked)."""
        was = self._was
        if owner not in was:
            was[owner] = cur
        elif _same(was[owner], spec):
            del was[owner]          # back to what the NVE holds
        uncounted = self._uncounted
        if owner in uncounted:
            pass                    # counted from what it was, when asked
        elif later:
            uncounted[owner] = cur
        else:
            if n_delta is None:
                count = self._shared_count if shared else self.count
                n_delta = count(spec) - count(cur)
            self._n += n_delta
        if self._digest is not None:
            undigested = self._undigested
            if owner not in undigested:
                undigested[owner] = cur
            elif _same(undigested[owner], spec):
                del undigested[owner]   # back to what the digest counts

    def _layer_changed(self, owner, old, spec, n_delta):
        own = self._own
        if owner in own:
            if _same(own[owner], spec):
                del own[owner]      # what it holds is now the shared one
            return
        self._note(owner, old, spec, n_delta, shared=True)

    def read_layer(self, vnid, layer):
        """Read VN ``vnid``'s tenant systems from ``layer`` (None: from no
        layer): every owner not of its own takes the layer's spec."""
        old = self._layers.get(vnid)
        if old is layer:
            return
        news = layer.specs if layer is not None else {}
        own = self._own
        if old is None and layer is not None:
            self._read_new_layer(layer)
        else:
            olds = old.specs if old is not None else {}
            for specs in (olds, news):
                for owner in specs:
                    if owner in own or (specs is news and owner in olds):
                        continue
                    cur, spec = olds.get(owner), news.get(owner)
                    if not _same(cur, spec):
                        self._note(owner, cur, spec, shared=True)
        for owner in [o for o in own if o.kind == TS and o.vnid == vnid]:
            if _same(own[owner], news.get(owner)):
                del own[owner]      # what it holds is now the shared one
        if old is not None:
            old.tables.discard(self)
        if layer is None:
            del self._layers[vnid]
        else:
            self._layers[vnid] = layer
            layer.tables.add(self)

    def _read_new_layer(self, layer):
        """What :meth:`_note` does for each owner of ``layer``, read where
        no layer of its VN was read: its count and digest at once, less
        the owners the table keeps its own spec of (or counts later)."""
        news, own, was = layer.specs, self._own, self._was
        count, digest = self._shared_count, self._shared_digest
        n, value = layer.count, layer.digest
        for owner in own.keys() & news.keys():
            n -= count(news[owner])
            value ^= digest(news[owner])
        fresh = news.keys() - own.keys()
        for owner in fresh & self._uncounted.keys():
            n -= count(news[owner])
        self._n += n
        if self._digest is not None:
            # The owners noted so far are digested as they are before
            # the layer: ``value`` is what reading it changes.
            self._settle_digest()
            self._digest ^= value
        for owner in fresh & was.keys():
            if _same(was[owner], news[owner]):
                del was[owner]      # back to what the NVE holds
        # Held nothing of the others (no layer of the VN was read).
        was.update(dict.fromkeys(fresh - was.keys()))

    def digest(self):
        """The digest (stamp.py) of what the NVE must hold: its layers'
        and its own specs' (in place of its layers' for the same owner)."""
        if self._digest is None:
            value = 0
            for layer in self._layers.values():
                value ^= layer.digest
            shared = self._shared_digest
            for owner, spec in self._own.items():
                layer = self._layer_of(owner)
                if layer is not None:
                    value ^= shared(layer.specs.get(owner))
                value ^= self.spec_digest(spec)
            self._digest, self._undigested = value, {}
        elif self._undigested:
            self._settle_digest()
        return self._digest

    def _settle_digest(self):
        """Bring the digest up to date with the owners changed since it
        was last asked for."""
        value, own = self._digest, self._own
        for owner, was in self._undigested.items():
            now = own[owner] if owner in own else self.shared_spec(owner)
            digest = self.spec_digest if owner in own else self._shared_digest
            value ^= self.spec_digest(was) ^ digest(now)
        self._digest, self._undigested = value, {}

    @property
    def desired(self):
        """key -> item of everything the NVE must hold (built now)."""
        return self._items(spec for _, spec in self._effective())

    @property
    def installed(self):
        """key -> item the NVE holds once what was taken is applied."""
        if self._raw is not None:
            return dict(self._raw)
        held = dict(self._effective())
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
            for item in build(self.spec(owner)):
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
    """``fn(spec)`` of the shared layers' specs, remembered for a while: a
    tenant system's remote view is one object shared by every member NVE,
    worked out once for all of them (its flows counted, its digest
    hashed).  Only what :meth:`remember` is asked for is kept (a spec of
    one NVE's own serves that NVE alone: kept, it held a slot per mapping
    entry until the next trim); calling the memo looks up, else works
    out.  Bounded (cleared when full, and by :meth:`trim`, which the
    service calls when nothing is under way): it only has to last through
    one change, or one fleet reconnecting."""

    def __init__(self, fn, limit=1 << 18):
        self.fn = fn
        self.limit = limit
        self._memo = {}

    def __call__(self, spec):
        """``fn(spec)``: as remembered, else worked out (not kept)."""
        try:
            return self._memo[spec]
        except (KeyError, TypeError):
            return self.fn(spec)

    def remember(self, spec):
        """``fn(spec)``, kept for the NVEs that read the same spec."""
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
    each NVE must hold into them, and the shared layers they read."""

    def __init__(self, build=flows.build):
        super().__init__()
        self.build = build
        self.layers = {}     # vnid -> {layer key: Layer}
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

    def __delitem__(self, dpid):
        table = self[dpid]
        super().__delitem__(dpid)
        # Its flows are its switch's business now: only the layers forget it.
        for layer in table._layers.values():
            layer.tables.discard(table)
            self._drop_if_unread(layer)

    def pop(self, dpid, *default):
        """Forget NVE ``dpid``'s table (as ``del``)."""
        if dpid not in self:
            if default:
                return default[0]
            raise KeyError(dpid)
        table = self[dpid]
        del self[dpid]
        return table

    def layers_of(self, vnid):
        """The layers of VN ``vnid``."""
        return list(self.layers.get(vnid, {}).values())

    def read_layer(self, dpid, vnid, key, fill):
        """Make NVE ``dpid``'s table read VN ``vnid``'s tenant systems from
        the layer ``key`` (None: from none); ``fill()`` gives the specs of
        a layer made now, {owner: spec}."""
        table = self.table(dpid)
        old = table._layers.get(vnid)
        if (old.key if old is not None else None) == key:
            return
        layer = None
        if key is not None:
            by_key = self.layers.setdefault(vnid, {})
            layer = by_key.get(key)
            if layer is None:
                layer = by_key[key] = Layer(key)
                self.set_layer(layer, fill())
        table.read_layer(vnid, layer)
        if old is not None:
            self._drop_if_unread(old)

    def _drop_if_unread(self, layer):
        if not layer.tables:
            vnid = layer.key[0]
            by_key = self.layers.get(vnid, {})
            if by_key.get(layer.key) is layer:
                del by_key[layer.key]
                if not by_key:
                    del self.layers[vnid]

    def set_layer(self, layer, batch):
        """Set the shared spec of several owners (None: none); every table
        reading the layer without an entry of its own takes it."""
        specs, count = layer.specs, self.spec_count.remember
        # Looked up, not remembered: the tables whose digest is kept
        # remember what they use (a decision alone keeps no digest).
        digest = self.spec_digest
        for owner, spec in batch.items():
            spec = spec or None
            old = specs.get(owner)
            if _same(spec, old):
                continue
            if spec is None:
                del specs[owner]
            else:
                specs[owner] = spec
            n_delta = count(spec) - count(old)
            layer.count += n_delta
            layer.digest ^= digest(old) ^ digest(spec)
            for table in layer.tables:
                table._layer_changed(owner, old, spec, n_delta)

    def trim(self):
        """Forget the remembered counts and digests (see :class:`Memo`)."""
        self.spec_digest.trim()
        self.spec_count.trim()
