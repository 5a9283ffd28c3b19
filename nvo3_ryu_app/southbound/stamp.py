"""The stamp: what an NVE held when the app last knew it, in one flow.

After a restart the app rebuilds, from its durable database, what every NVE
must hold.  Comparing that with a full flow dump costs as much as reading
every flow (tens of thousands per NVE); the stamp lets an NVE whose flows
the app had acknowledged, and which nothing changed since, be recognised
from one flow instead.

The digest of an NVE's flow set is the XOR of one 64-bit hash per owner
(:func:`spec_digest`, a keyed BLAKE2b of the owner's spec): order does not
matter, and a change of one owner updates it in O(1)
(flowtable.NveFlowTable keeps it as specs change).  The flows of an owner
are a pure function of its spec and of the code that builds them, so the
hash is salted with that code (:data:`SALT`): another version of the app
never takes an old stamp for its own, and dumps instead.  The spec's
``repr`` is used because it is made of sorted tuples, ints and strings
only, the same in every process (Python's ``hash`` of a string is not).

What a matching stamp proves: the NVE holds the stamp the app wrote after
the NVE had acknowledged a flow set with that digest, and the database the
app restored implies that same flow set.  What it cannot prove: that
nobody changed the NVE's other flows by hand since.  That is why an NVE
reconciled by its stamp is *unverified* until the background audit has
dumped it in full (service.py, ``stamp_verify_interval``), and repaired what
differed.

The stamp itself is written by the channel (channel.py): only once the NVE
acknowledged everything it must hold (a barrier answered, nothing refused),
in a batch of its own after that barrier, once the NVE has had no flow
change (and no stamp) for ``stamp_interval``: a busy NVE is stamped when it
is quiet, not at every attachment.  Until then the old stamp stays on the NVE, and a crash
in between leaves a stamp that does not match: a full dump, as without
stamps.
"""

import hashlib
import os

from ..authority import pipeline as P

_HERE = os.path.dirname(os.path.abspath(__file__))
_AUTHORITY = os.path.join(os.path.dirname(_HERE), 'authority')
# The code between a spec and the bytes on the wire.
_BUILDERS = [os.path.join(_AUTHORITY, name) for name in (
    'flows.py', 'dualflows.py', 'gwflows.py', 'pipeline.py', 'owners.py')] + [
        os.path.join(_HERE, 'ofwire.py')]


def _salt():
    digest = hashlib.blake2b(digest_size=16)
    for path in _BUILDERS:
        with open(path, 'rb') as handle:
            digest.update(handle.read())
    return digest.digest()


SALT = _salt()


def spec_digest(spec, salt=SALT):
    """The 64-bit hash of an owner's spec (0 for None: holds nothing)."""
    if spec is None:
        return 0
    return int.from_bytes(hashlib.blake2b(
        repr(spec).encode(), digest_size=8, key=salt).digest(), 'big')


def digest_of(specs):
    """The digest of a flow set given as owner specs (what the
    incremental digest must equal)."""
    out = 0
    for spec in specs:
        out ^= spec_digest(spec)
    return out


def stamp_of(flows):
    """The digest an NVE's stamp carries, from the flows a stamp request
    returned (None: no stamp, or not one of ours)."""
    for flow in flows:
        if (flow.table, flow.priority, flow.match) == (P.STAMP, P.PRIO_STAMP,
                                                       ()) \
                and flow.cookie == P.COOKIE_STAMP:
            values = [a[1] for a in flow.actions if a[0] == 'metadata']
            if len(values) == 1 and len(flow.actions) == 1:
                return values[0]
    return None
