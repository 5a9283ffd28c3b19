"""Desired against installed, for one NVE: send only the difference.

:class:`NveFlowTable` keeps the flows (and meters) an NVE must hold, grouped
by owner, beside a mirror of what the NVE is known to hold.  Changing an
owner's flows only marks keys dirty; :meth:`take_changes` later turns the
dirty keys into the smallest list of changes and updates the mirror.  A key
is (table, priority, match) as in OpenFlow, so an ADD of a changed flow is a
modify in place and nothing is ever wiped: on (re)connect the mirror is
loaded from a flow dump and the same comparison repairs whatever differs.
"""

ADD, MODIFY, DELETE = 'add', 'modify', 'delete'


class OwnerConflict(Exception):
    """Two owners want the same flow key: a flow-computation bug."""


def _is_meter(key):
    return key[0] == 'meter'


class NveFlowTable:
    """Desired and installed state of one NVE."""

    def __init__(self):
        self.by_owner = {}    # owner -> {key: item}
        self.desired = {}     # key -> item
        self.owner_of = {}    # key -> owner
        self.installed = {}   # key -> item, mirror of the switch
        self.dirty = set()

    def owners(self):
        return set(self.by_owner)

    def set_owner(self, owner, items):
        """Replace everything ``owner`` wants on this NVE with ``items``."""
        self.set_owners({owner: items})

    def set_owners(self, batch):
        """Replace the flows of several owners at once.

        Releases first, then claims: a flow key may pass from one owner to
        another within one batch (a port rebound to another VN, an address
        handed over) whatever order the owners come in.
        """
        news = {}
        for owner, items in batch.items():
            new = {}
            for item in items:
                if item.key in new and new[item.key] != item:
                    raise OwnerConflict('%r wants two flows at %r' % (
                        owner, item.key))
                new[item.key] = item
            news[owner] = new
        for owner, new in news.items():
            for key in self.by_owner.get(owner, {}).keys() - new.keys():
                del self.desired[key]
                del self.owner_of[key]
                self.dirty.add(key)
        for owner, new in news.items():
            for key, item in new.items():
                # After the releases, a key still owned by someone else
                # is wanted by both: a flow-computation bug.
                other = self.owner_of.get(key)
                if other is not None and other != owner:
                    raise OwnerConflict('%r and %r both want %r' % (
                        other, owner, key))
                if self.desired.get(key) != item or other is None:
                    self.desired[key] = item
                    self.owner_of[key] = owner
                    self.dirty.add(key)
            if new:
                self.by_owner[owner] = new
            else:
                self.by_owner.pop(owner, None)

    def load_installed(self, items):
        """The switch told us what it holds (a dump): compare everything."""
        self.installed = {item.key: item for item in items}
        self.dirty = set(self.desired) | set(self.installed)

    def forget_installed(self, key):
        """A change was refused by the switch: we no longer know it holds it."""
        self.installed.pop(key, None)

    @property
    def in_sync(self):
        return not self.dirty

    def take_changes(self, limit=None):
        """Pop up to ``limit`` dirty keys and return the changes they need.

        Order: meters first (flows refer to them), then adds and modifies,
        then flow deletes, then meter deletes: make before break, so a
        tenant system that moves is never unreachable in between.
        """
        keys = self.dirty
        if limit is not None and len(keys) > limit:
            keys = set(sorted(keys, key=repr)[:limit])
        self.dirty = self.dirty - keys
        adds, deletes = [], []
        for key in keys:
            want = self.desired.get(key)
            have = self.installed.get(key)
            if want == have:
                continue
            if want is None:
                deletes.append((DELETE, have))
                del self.installed[key]
            else:
                adds.append((ADD if have is None else MODIFY, want))
                self.installed[key] = want
        adds.sort(key=lambda c: (not _is_meter(c[1].key), repr(c[1].key)))
        deletes.sort(key=lambda c: (_is_meter(c[1].key), repr(c[1].key)))
        return adds + deletes

    def diff(self):
        """(missing, stale, different) keys between desired and installed."""
        missing = self.desired.keys() - self.installed.keys()
        stale = self.installed.keys() - self.desired.keys()
        different = {k for k in self.desired.keys() & self.installed.keys()
                     if self.desired[k] != self.installed[k]}
        return missing, stale, different
