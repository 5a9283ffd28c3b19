"""Durable record store behind the mapping database.

The store knows nothing of VNs or NVEs: it keeps *records*, each named by a
``kind`` (str) and a ``key`` (int, str, or a tuple of those), whose value is
a msgpack-able dict, or None for "deleted".  Values are whole records, not
deltas, so applying a change twice is harmless.

The interface (:class:`Store`) is small on purpose, so that a replicated
engine (Raft log, etcd, ...) can back it later for a cluster of authorities:

``load(check=None)``
    Called once, before any commit.  Returns ``{(kind, key): value}`` with
    every record of every commit that returned, and nothing else.  It never
    returns partial or empty data over a damaged store: it raises
    :class:`StoreCorrupt` instead (unless told to recover, see below);
    ``check(kind, key, value)`` raises for a record its owner cannot use,
    which counts as damage.
``commit(changes)``
    ``changes`` is a list of ``(kind, key, value_or_None)``.  The commit is
    atomic (after a crash, all of it or none of it is there), ordered (a
    later commit wins) and durable when the call returns: only then may the
    caller acknowledge the change to anyone.
``stats()``
    A dict of figures for metrics: ``records``, ``journal_bytes``,
    ``snapshot_bytes``, ``last_fsync_ms``, ``commits``.
``close()``
    Releases the store; a closed store refuses commits.

One process writes a store at a time (JournalStore holds a lock file).

:class:`JournalStore` - the on-disk format and the durability policy
---------------------------------------------------------------------
A state directory holds ``snapshot.msgpack`` (the whole state at some commit
sequence number), ``journal.msgpack`` (the commits after it, append-only)
and ``journal.ack`` (how far the journal was acknowledged, see below).
Both are sequences of frames: a 14-byte header (magic ``NJ``, body length,
CRC-32 of the body, CRC-32 of the header itself) and a msgpack body.  A
journal body is ``[commit_seq, [[kind, key, value], ...]]``: one frame per
``commit()`` call, however many changes it carries.  The first journal frame
is a marker ``[base_seq, []]`` naming the snapshot the journal follows; a
snapshot is a header frame ``{'format': 1, 'seq': S, 'records': N,
'journal_ack': True}`` then one frame per record.

* **fsync policy.**  With ``fsync=True`` (the default) every ``commit()``
  writes its frame with one ``write()`` and calls ``fsync()`` before it
  returns (one fsync per call, not per record), so an acknowledged change
  survives a process kill *and* a power loss.  With ``group_commit`` set
  (the app sets it) ``commit()`` only writes, and ``sync()`` fsyncs every
  commit since the last one at once; the app calls it before anything
  that depends on those commits leaves the process (flow-mods,
  packet-outs, REST and RPC answers), so the guarantee is the same and a
  burst of packet-ins costs one fsync.  With ``start_early_fsync`` (the
  app calls it) that fsync starts in an OS thread as soon as a commit is
  written, and ``sync()`` waits for it to cover every commit so far: the
  flush overlaps with what the caller computes in between (planning the
  flows that wait for it), the guarantee stays the same.
  Snapshots and new journals are written to a temporary file, fsynced,
  renamed into place, and the directory is fsynced.  With ``fsync=False``
  nothing is fsynced: the frame still reaches the kernel with ``write()``
  before ``commit()`` returns, so a change survives a kill of the process
  but not necessarily a power loss or kernel crash.
* **Compaction.**  Once the journal holds ``snapshot_every`` changed
  records, the commit that crosses the mark also writes a snapshot of the
  whole state, keeps the previous one as ``snapshot.msgpack.prev`` and
  starts an empty journal; that one commit pays for it.  With
  ``background_compaction`` (the app sets it) the commit only starts it:
  ``compact_step()`` writes the snapshot of that moment a slice at a time
  while commits go on, and at the end the new journal holds the commits
  made meanwhile.  A crash at any point of a compaction loses nothing:
  until the new journal is in place the old one holds every commit, and
  journal frames the snapshot already contains (``commit_seq <= S``) are
  skipped on replay.
* **Torn tail.**  A frame cut short at the end of the journal (crash in
  the middle of a write, or a zero-filled tail after a power loss) was
  never acknowledged: ``load()`` truncates it away and reports it in
  ``load_report``.  It is the only thing ``load()`` may drop.
* **Nothing acknowledged goes missing.**  A journal cut short looks like a
  crash in the middle of a write, so the journal alone cannot tell.  Two
  rules make a shortened, emptied or deleted journal visible:

  1. *A snapshot is always followed by a journal* that holds at least its
     marker (a new store starts with an empty snapshot, seq 0): a missing
     or empty journal, or one without its marker, next to a snapshot is
     damage.
  2. *journal.ack* (14 bytes: magic ``NA``, a commit number, CRC-32) says
     that every commit up to that number was acknowledged: it is rewritten
     in place after every sync with one less than the last fsynced commit
     (the last record may still be torn), and never fsynced on its own:
     it is written after the fsync it describes, so whatever of it reaches
     the disk never claims more than the journal holds, and after a power
     loss it is at worst behind (weaker, never wrong).  Every commit up to
     it must be there, in the snapshot or the journal.  The snapshot's
     header says the store keeps journal.ack (``'journal_ack': True``), so
     a missing or unreadable journal.ack is damage too.

  A store written before journal.ack existed (no flag) loads as before and
  is upgraded at once: journal.ack first, then a snapshot with the flag
  and a new journal.  (An older version refuses nothing of the new format:
  it ignores the flag and the file.)
* **Content.**  ``load(check=...)``: a record whose CRC is good but whose
  content the owner refuses (``check`` raises; the app passes
  persist.check_record) is damage at its frame.
* **Corruption.**  A bad header, bad CRC, undecodable or refused body, gap
  in the commit sequence anywhere before the tail, an acknowledged commit
  missing (above), or any damage to the snapshot, makes ``load()`` raise
  :class:`StoreCorrupt` naming the file and the byte position.  With
  ``recover_from_snapshot=True`` it instead starts from the last good state
  it can prove: for a damaged journal, the snapshot plus the journal frames
  before the damage; for a damaged snapshot, ``snapshot.msgpack.prev``
  plus the journal.  What was dropped is logged and put in
  ``load_report``, the damaged file is kept aside as
  ``<name>.corrupt-<time>``, and a fresh journal.ack, snapshot and journal
  replace the damaged ones.  If no good snapshot is left, it raises.
"""

import fcntl
import logging
import math
import os
import shutil
import struct
import time
import zlib

import msgpack

LOG = logging.getLogger(__name__)

SNAPSHOT = 'snapshot.msgpack'
JOURNAL = 'journal.msgpack'
PREV = SNAPSHOT + '.prev'
ACK = 'journal.ack'
LOCK = 'lock'
MAGIC = b'NJ'
_HEAD = struct.Struct('>2sII')      # magic, body length, body CRC-32
_HCRC = struct.Struct('>I')         # CRC-32 of the 10 bytes above
HEADER_SIZE = _HEAD.size + _HCRC.size
SNAPSHOT_FORMAT = 1
# journal.ack: magic, the commit every earlier one was acknowledged
# before, CRC-32 of the 10 bytes before it.
_ACK = struct.Struct('>2sQ')
ACK_MAGIC = b'NA'
ACK_SIZE = _ACK.size + _HCRC.size


class StoreError(Exception):
    """The store cannot be used (locked, closed, I/O failure)."""


class StoreCorrupt(StoreError):
    """A store file is damaged at ``offset``; the message says where."""

    def __init__(self, path, offset, reason):
        self.path, self.offset, self.reason = path, offset, reason
        self.where = '%s is corrupt at byte %d: %s' % (path, offset, reason)
        super().__init__('%s (the recover_from_snapshot option starts from '
                         'the last good snapshot instead)' % self.where)


# --- records and frames ---------------------------------------------------

def _key_out(key):
    """Key as stored: tuples become lists (recursively)."""
    if isinstance(key, (tuple, list)):
        return [_key_out(k) for k in key]
    if isinstance(key, str) or (isinstance(key, int)
                                and not isinstance(key, bool)):
        return key
    raise TypeError('store keys are int, str or tuples of them, not %r'
                    % (key,))


def _key_in(key):
    """Key as loaded: lists become tuples again, so keys stay hashable."""
    if isinstance(key, list):
        return tuple(_key_in(k) for k in key)
    return key


def _check_change(kind, key, value):
    """Validate one change; return ``(kind, key)``, where ``key`` is as
    load() gives it back: the caller's own object when it already is (an
    int, a str or a flat tuple of them, a named tuple too, like the mapping
    database's attachment keys), so the store shares it rather than
    keeping a copy of its own; and the key as packed."""
    if not isinstance(kind, str):
        raise TypeError('record kind must be a str, not %r' % (kind,))
    if value is not None and not isinstance(value, dict):
        raise TypeError('record value must be a dict or None, not %r'
                        % (value,))
    out = _key_out(key)
    if not isinstance(key, tuple) or not all(type(k) in (int, str)
                                             for k in key):
        key = _key_in(out)          # the same object for an int or a str
    return kind, key, out


def _pack_change(kind, key, value):
    """Validate one change; return ``(kind, key, packed [kind, key,
    value])`` (the key as :func:`_check_change` gives it)."""
    kind, key, out = _check_change(kind, key, value)
    return kind, key, msgpack.packb([kind, out, value], use_bin_type=True)


# A record kept in memory names no field: the names of its fields, in
# order (its *shape*), are kept once for every record of that shape.  An
# attachment's record spelled its nine field names (60 B of its 130);
# positional, and without the kind and key its slot already holds, it is
# about 50 B.  A store holds records of a few shapes (the optional fields
# of a kind come in a few combinations); past MAX_SHAPES, or for a record
# with a field not named by a str, the record is kept as a map.
#
# Nor does it spell the values most records of its shape hold alike (an
# attachment's vlan None, seq 1, source 'learned', reachable true: 11 of
# its 50 B): the shape keeps the values of the first record of that shape
# (its *usual* ones: None, a bool, an int or a str, exactly that type;
# or, for a field whose value there was the very object of an earlier
# field, that field's value: an attachment's last_seen, its first_seen
# until it is heard again, 9 B), and a record the bit mask of the fields
# that hold them, ``[shape, mask, other field value, ...]`` (the first
# field's bit the highest: the usual ones are rather the last).  An
# attachment's bytes object was 83 B (96 B with the allocator's rounding),
# is about 64.
MAX_SHAPES = 256
_USUAL_TYPES = (type(None), bool, int, str)


class _Unusual:
    """A shape's usual value where its first record held none of
    _USUAL_TYPES (a float, a map): no value is ever that one."""

    __slots__ = ()

    def __repr__(self):
        return '<unusual>'


_UNUSUAL = _Unusual()


class _Earlier(int):
    """A shape's usual value that is the value of an earlier field of the
    same record (its position)."""

    __slots__ = ()


def _usual_values(values):
    """The usual values of a shape, from its first record's ``values``."""
    out = []
    for i, v in enumerate(values):
        if type(v) in _USUAL_TYPES:
            out.append(v)
        else:
            out.append(next((_Earlier(j) for j in range(i)
                             if values[j] is v), _UNUSUAL))
    return tuple(out)


def _same(v, usual):
    """Whether ``v`` packs to the bytes ``usual`` packs to."""
    if v is usual:
        return True
    kind = type(v)
    if kind is not type(usual):     # True is not 1, 0 not 0.0
        return False
    if kind is float:               # -0.0 is not 0.0
        return v == usual and math.copysign(1.0, v) == math.copysign(
            1.0, usual)
    return kind in _USUAL_TYPES and v == usual


class _Records:
    """``(kind, key) -> record``, stored as ``{kind: {key: bytes}}``.

    One map keyed by ``(kind, key)`` would hold a tuple of its own for every
    record (56 B, a third of an attachment's packed record); here a record
    costs its bytes and its slot only, and the key is the caller's object
    (see _check_change).  The bytes are the record's value packed by
    position, ``[shape, mask, field value, ...]`` without the values the
    mask says are the shape's usual ones (see MAX_SHAPES), or as a map;
    :meth:`frame_body` makes the ``[kind, key, value]`` a snapshot holds
    again, byte for byte as the journal's record (the fields in their
    order, the usual values of the very type they were committed with).
    Records come out grouped by kind, each kind in the order its records
    were first written.
    """

    __slots__ = ('by_kind', 'shapes', 'shape_ids', 'usual')

    def __init__(self):
        self.by_kind = {}
        self.shapes = []            # shape number -> field names
        self.shape_ids = {}         # field names -> shape number
        self.usual = []             # shape number -> usual field values

    def __len__(self):
        return sum(len(records) for records in self.by_kind.values())

    def _pack(self, value):
        names = tuple(value)
        shape = self.shape_ids.get(names)
        values = tuple(value.values())
        if shape is None:
            if len(self.shapes) >= MAX_SHAPES or \
                    not all(type(name) is str for name in names):
                return msgpack.packb(value, use_bin_type=True)
            shape = self.shape_ids[names] = len(self.shapes)
            self.shapes.append(names)
            self.usual.append(_usual_values(values))
        out = [shape, 0]
        mask, bit = 0, 1 << len(values)
        for v, usual in zip(values, self.usual[shape]):
            bit >>= 1
            if type(usual) is _Earlier:
                usual = values[usual]
            if _same(v, usual):
                mask |= bit
            else:
                out.append(v)
        out[1] = mask
        return msgpack.packb(out, use_bin_type=True)

    def value(self, packed):
        """The record's value from its bytes (a new dict)."""
        obj = _unpack(packed)
        if type(obj) is dict:       # pylint: disable=unidiomatic-typecheck
            return obj
        names, usuals = self.shapes[obj[0]], self.usual[obj[0]]
        mask, fields = obj[1], iter(obj[2:])
        values = []
        bit = 1 << len(names)
        for usual in usuals:
            bit >>= 1
            if not mask & bit:
                values.append(next(fields))
            elif type(usual) is _Earlier:
                values.append(values[usual])
            else:
                values.append(usual)
        return dict(zip(names, values))

    def put(self, kind, key, value):
        """Keep ``value`` (a dict) as the record ``(kind, key)``."""
        records = self.by_kind.get(kind)
        if records is None:
            records = self.by_kind[kind] = {}
        records[key] = self._pack(value)

    def drop(self, kind, key):
        records = self.by_kind.get(kind)
        if records is not None:
            records.pop(key, None)

    def items(self):
        """``((kind, key), value)`` of every record."""
        value = self.value
        for kind, records in self.by_kind.items():
            for key, packed in records.items():
                yield (kind, key), value(packed)

    def copy(self):
        """What a snapshot of this moment needs: ``[(kind, keys, packed
        records)]``.  Lists of the same objects: the packed records are
        immutable bytes and shapes are only ever added, so it stays the
        state of this moment while records change."""
        return [(kind, list(records), list(records.values()))
                for kind, records in self.by_kind.items()]

    def frame_body(self, kind, key, packed):
        """The packed ``[kind, key, value]`` of a record (as committed)."""
        return msgpack.packb([kind, _key_out(key), self.value(packed)],
                             use_bin_type=True)


class _Compaction:
    """A snapshot being written: at once (JournalStore._write_snapshot) or
    a slice per JournalStore.compact_step."""

    def __init__(self, seq, state, handle, started):
        self.seq = seq              # the commit the snapshot holds
        copy = state.copy()         # its records (see _Records.copy),
        self.total = sum(len(keys) for _, keys, _ in copy)
        self.bodies = self._bodies(state, copy)   # their frame bodies
        self.next = 0               # the next record to write
        self.handle = handle        # the .tmp file
        self.frames = []            # journal frames committed meanwhile
        self.synced = False         # the snapshot file is fsynced
        self.changes = 0            # and the records they change
        self.started = started

    @staticmethod
    def _bodies(state, copy):
        """The frame bodies of the records of ``copy`` (``state``'s, see
        _Records.copy), made as they are written."""
        for kind, keys, records in copy:
            for key, packed in zip(keys, records):
                yield state.frame_body(kind, key, packed)


def _unpack(body):
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


def _frame(body):
    head = _HEAD.pack(MAGIC, len(body), zlib.crc32(body))
    return head + _HCRC.pack(zlib.crc32(head)) + body


def _scan(data, path):
    """Split ``data`` into frames.

    Returns ``(frames, end, problem)``: ``frames`` is a list of
    ``(offset, body)`` of the good frames, ``end`` the offset after the last
    good one, ``problem`` None, ``('torn', reason)`` for an incomplete last
    frame, or a :class:`StoreCorrupt` for damage before the end.
    """
    frames, pos, size = [], 0, len(data)
    while pos < size:
        if size - pos < HEADER_SIZE:
            return frames, pos, ('torn', 'incomplete frame header (%d bytes)'
                                 % (size - pos))
        magic, length, body_crc = _HEAD.unpack_from(data, pos)
        (head_crc,) = _HCRC.unpack_from(data, pos + _HEAD.size)
        if magic != MAGIC or zlib.crc32(
                data[pos:pos + _HEAD.size]) != head_crc:
            if not any(data[pos:]):
                return frames, pos, ('torn', 'zero-filled tail (%d bytes)'
                                     % (size - pos))
            return frames, pos, StoreCorrupt(path, pos, 'bad frame header')
        end = pos + HEADER_SIZE + length
        if end > size:
            return frames, pos, ('torn', 'incomplete frame (%d of %d bytes)'
                                 % (size - pos, end - pos))
        body = data[pos + HEADER_SIZE:end]
        if zlib.crc32(body) != body_crc:
            return frames, pos, StoreCorrupt(path, pos, 'bad CRC')
        frames.append((pos, body))
        pos = end
    return frames, pos, None


def _valid_change(change):
    if not (isinstance(change, list) and len(change) == 3
            and isinstance(change[0], str)
            and (change[2] is None or isinstance(change[2], dict))):
        return False
    try:
        _key_out(change[1])
    except TypeError:
        return False
    return True


def _check(check, kind, key, value, path, offset):
    """A record whose content the store's owner refuses is damage too
    (its CRC is fine, but no database can be built from it)."""
    if check is None:
        return
    try:
        check(kind, key, value)
    except Exception as exc:   # noqa: BLE001 - any refusal, said plainly
        raise StoreCorrupt(path, offset, 'bad %s record %r: %s' % (
            kind, key, exc)) from None


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _no_sync(_):
    pass


class _Flusher:
    """Fsyncs the journal in an OS thread of its own, started as soon as a
    commit is written (:meth:`kick`), so that the flush runs while the
    caller computes what waits for it; :meth:`wait` returns once a given
    commit is durable.  ``threading`` is the module to take the thread and
    its condition from: under eventlet, the original one (a green thread
    would not run while the loop computes)."""

    def __init__(self, threading):
        self._cond = threading.Condition()
        self._want = 0           # the highest commit asked for
        self._done = 0           # the highest commit known durable
        self._fd = None          # the journal the asked-for commits are in
        self._busy = False
        self._started = 0        # the commit the flush under way covers
        self._stop = False
        self.error = None        # an fsync failed: nothing is durable now
        self.last_ms = 0.0       # how long the last fsync took
        self.fsyncs = 0
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='journal-fsync')
        self._thread.start()

    def kick(self, fd, seq):
        """Commits up to ``seq`` are written to ``fd``: flush them."""
        with self._cond:
            if seq > self._want:
                self._want, self._fd = seq, fd
                self._cond.notify_all()

    def wait(self, seq):
        """Block until commit ``seq`` is durable; raise the fsync's error
        if it failed.  When the thread has not started a flush covering it
        yet (it waits for a core or for the GIL on a busy machine), the
        caller flushes itself rather than wait for it to start."""
        with self._cond:
            if self.error is not None:
                raise self.error
            if self._done >= seq:
                return
            started = self._busy and self._started >= seq
            fd = self._fd
        if not started:
            start = time.perf_counter()
            try:
                os.fsync(fd)
            except OSError as exc:
                with self._cond:
                    self.error = exc
                    self._cond.notify_all()
                raise
            with self._cond:
                if seq > self._done:
                    self._done = seq
                self.last_ms = (time.perf_counter() - start) * 1000.0
                self.fsyncs += 1
                self._cond.notify_all()
            return
        with self._cond:
            while self._done < seq and self.error is None:
                self._cond.wait()
            if self.error is not None:
                raise self.error

    def quiesce(self):
        """Block until no fsync runs or is asked for (before the journal's
        file descriptor is closed or replaced)."""
        with self._cond:
            while (self._busy or self._want > self._done) and \
                    self.error is None:
                self._cond.wait()

    def stop(self):
        self.quiesce()
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def _run(self):
        cond = self._cond
        while True:
            with cond:
                while not self._stop and (self._want <= self._done
                                          or self.error is not None):
                    cond.wait()
                if self._stop:
                    return
                target, fd, self._busy = self._want, self._fd, True
                self._started = target
            start = time.perf_counter()
            try:
                os.fsync(fd)
                error = None
            except OSError as exc:
                error = exc
            with cond:
                self._busy = False
                if error is not None:
                    self.error = error
                else:
                    self._done = max(self._done, target)
                    self.last_ms = (time.perf_counter() - start) * 1000.0
                    self.fsyncs += 1
                cond.notify_all()


# --- the interface ----------------------------------------------------------

class Store:
    """A durable map of records; see the module docstring for the contract."""

    load_report = None

    def load(self, check=None):
        """Return ``{(kind, key): value}`` of everything committed.
        ``check(kind, key, value)`` (optional) raises ValueError for a
        record whose content its owner cannot use; the store treats such
        a record like a damaged one."""
        raise NotImplementedError

    def commit(self, changes):
        """Apply ``[(kind, key, value_or_None), ...]`` atomically and
        durably; return only once it would survive a crash (with
        ``group_commit``: once :meth:`sync` returns)."""
        raise NotImplementedError

    # Group commit: commits are written at once but made durable together
    # by the next sync(), which the caller runs before anything that
    # depends on them leaves the process (one fsync for many changes).
    group_commit = False

    def sync(self, offload=True):
        """Make every commit so far durable."""

    def close(self):
        """Release the store."""

    def stats(self):
        """``records``, ``journal_bytes``, ``snapshot_bytes``,
        ``last_fsync_ms``, ``commits``."""
        raise NotImplementedError


class MemoryStore(Store):
    """Keeps records in memory (tests, benchmarks, ``persist = false``).

    Values are msgpack-encoded on commit, so they round-trip exactly as
    through :class:`JournalStore` (tuples come back as lists, keys as
    tuples) and later changes to the committed dicts do not leak in.
    """

    def __init__(self):
        self._state = _Records()
        self._commits = 0
        self.load_report = {'warnings': []}

    def load(self, check=None):
        """Everything committed so far (``check`` is not needed: nothing
        was read from a file)."""
        return dict(self._state.items())

    def commit(self, changes):
        """Apply ``changes`` (a value of None deletes)."""
        checked = [_check_change(*change) for change in changes]
        for (kind, key, _), (_, _, value) in zip(checked, changes):
            if value is None:
                self._state.drop(kind, key)
            else:
                self._state.put(kind, key, value)
        self._commits += 1

    def stats(self):
        """Figures for metrics."""
        return {'records': len(self._state), 'journal_bytes': 0,
                'snapshot_bytes': 0, 'last_fsync_ms': 0.0,
                'commits': self._commits}


class JournalStore(Store):
    """Snapshot plus msgpack journal in ``state_dir`` (see module doc)."""

    def __init__(self, state_dir, fsync=True, snapshot_every=10000,
                 recover_from_snapshot=False):
        self.dir = os.path.abspath(state_dir)
        self.fsync = fsync
        self._sync = os.fsync if fsync else _no_sync
        self._sync_dir = _fsync_dir if fsync else _no_sync
        self.snapshot_every = max(1, int(snapshot_every))
        self.recover = recover_from_snapshot
        self.load_report = None
        self._state = _Records()     # (kind, key) -> packed value
        self._seq = 0                # last commit sequence number
        self._fd = None              # journal, open for append
        self._lock_fd = None
        self._broken = None
        self._journal_size = 0
        self._journal_changes = 0    # changed records since the snapshot
        self._snapshot_size = 0
        self._commits = 0
        self._compactions = 0
        self._last_fsync_ms = 0.0
        self._synced_seq = 0         # commits up to here are fsynced
        self._syncing = 0            # fsyncs of the journal in a thread
        self._fsyncs = 0
        self._compaction = None      # a snapshot being written in steps
        self._snapshot_seq = 0       # the commit the snapshot in place holds
        self._ack_fd = None          # journal.ack, rewritten in place
        self._ack_failed = False
        # Compaction in steps driven by compact_step() (the app) instead of
        # inside the commit that crosses snapshot_every; ``offload`` runs
        # the snapshot's fsync (the app passes a thread pool's).
        self.background_compaction = False
        self.offload = lambda func, *args: func(*args)
        self._flusher = None         # see start_early_fsync
        os.makedirs(self.dir, exist_ok=True)

    def _path(self, name):
        return os.path.join(self.dir, name)

    # -- loading --

    def load(self, check=None):
        """Take the lock and read the snapshot and the journal (see the module
        doc); returns every record.  A record ``check`` refuses is damage at
        its frame."""
        if self._fd is not None:
            raise StoreError('store %s is already loaded' % self.dir)
        self._take_lock()
        try:
            return self._load(check)
        except BaseException:
            self.close()
            raise

    def _take_lock(self):
        fd = os.open(self._path(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError('store %s is in use by another process'
                             % self.dir) from None
        self._lock_fd = fd

    def _load(self, check):
        report = self.load_report = {
            'snapshot': None, 'snapshot_seq': 0, 'replayed': 0, 'skipped': 0,
            'torn_bytes': 0, 'dropped': None, 'moved_aside': [],
            'warnings': [], 'acked_seq': None}
        self._journal_changes = 0
        for name in (SNAPSHOT + '.tmp', JOURNAL + '.tmp', PREV + '.tmp'):
            if os.path.exists(self._path(name)):
                os.unlink(self._path(name))
        aside, lost_window = [], False
        has_snapshot = os.path.exists(self._path(SNAPSHOT))
        try:
            values, state, base, flagged = self._read_snapshot(
                SNAPSHOT, check=check)
            if has_snapshot:
                report['snapshot'] = SNAPSHOT
        except StoreCorrupt as err:
            if not self.recover:
                raise
            try:
                values, state, base, flagged = self._read_snapshot(
                    PREV, missing_ok=False, check=check)
            except (StoreCorrupt, OSError) as prev_err:
                raise StoreCorrupt(err.path, err.offset, '%s; and no good '
                                   'previous snapshot (%s)' % (
                                       err.reason, prev_err)) from err
            report['snapshot'] = PREV
            self._warn('%s; starting from %s (commit %d)' % (
                err.where, PREV, base))
            aside.append(SNAPSHOT)
            lost_window = has_snapshot = True
        report['snapshot_seq'] = base
        self._state = state
        self._snapshot_seq = base if has_snapshot else 0
        acked = self._read_ack(flagged)
        if lost_window:
            acked = None        # known lost, and said so below

        jpath = self._path(JOURNAL)
        try:
            with open(jpath, 'rb') as f:
                data = f.read()
        except FileNotFoundError:
            data = None
        frames, end, problem = _scan(data or b'', jpath)
        commits, problem = self._check_journal(frames, problem, base,
                                               lost_window, jpath, check)
        if not isinstance(problem, StoreCorrupt):
            problem = self._missing(data, frames, end, problem, base,
                                    commits, acked, has_snapshot) or problem
        if isinstance(problem, StoreCorrupt):
            if not self.recover:
                raise problem
            size = len(data or b'')
            report['dropped'] = {'file': JOURNAL, 'offset': problem.offset,
                                 'bytes': size - problem.offset,
                                 'reason': problem.reason}
            self._warn('%s; starting from the snapshot and the %d journal '
                       'commits before byte %d, dropping %d bytes' % (
                           problem.where, len(commits), problem.offset,
                           size - problem.offset))
            aside.append(JOURNAL)
        elif problem is not None:
            report['torn_bytes'] = len(data) - end
            self._warn('%s: dropped an unacknowledged torn last record at '
                       'byte %d: %s' % (jpath, end, problem[1]))
            with open(jpath, 'r+b') as f:
                f.truncate(end)
                self._sync(f.fileno())

        if lost_window and (not commits or commits[0][0] > base):
            self._warn('commits %d..%s were only in the damaged snapshot: '
                       'their changes are lost unless later commits rewrote '
                       'the same records' % (
                           base + 1, commits[0][0] if commits else ''))
        self._seq = base
        for seq, changes in commits:
            if seq <= base:
                report['skipped'] += 1
                continue
            for change in changes:
                kind, key, _ = _check_change(*change)
                if change[2] is None:
                    values.pop((kind, key), None)
                    self._state.drop(kind, key)
                else:
                    values[(kind, key)] = change[2]
                    self._state.put(kind, key, change[2])
            self._journal_changes += len(changes)
            self._seq = seq
            report['replayed'] += 1
        self._synced_seq = self._seq     # what is on disk was loaded
        # The mark first: after a recovery commit numbers start again below
        # what the old mark said, and a snapshot written below says the
        # store keeps one.
        self._open_ack()
        self._write_ack(durable=True)
        if aside:
            # Keep the damaged file for inspection, then write the state we
            # start from as a new snapshot (not rotating a damaged snapshot
            # into .prev) and an empty journal.
            stamp = time.strftime('%Y%m%dT%H%M%S')
            for name in aside:
                if not os.path.exists(self._path(name)):
                    continue
                target = '%s.corrupt-%s' % (self._path(name), stamp)
                serial = 1
                while os.path.exists(target):
                    serial += 1
                    target = '%s.corrupt-%s-%d' % (self._path(name), stamp,
                                                   serial)
                shutil.copyfile(self._path(name), target)
                report['moved_aside'].append(target)
                LOG.warning('kept damaged %s as %s', name, target)
            self._write_snapshot(keep_prev=SNAPSHOT not in aside)
            self._new_journal()
        elif not flagged:
            # A new store, or one written before journal.ack existed: a
            # snapshot that says journal.ack is kept (and a new journal),
            # so that from now on a missing or shortened journal is seen.
            self._write_snapshot()
            self._new_journal()
        elif not report['replayed'] and commits != [(base, [])]:
            # A journal the snapshot already holds entirely (crash after a
            # snapshot, before its new journal): start a new one.
            self._new_journal()
        else:
            self._fd = os.open(jpath, os.O_WRONLY | os.O_APPEND)
            self._journal_size = end
        if os.path.exists(self._path(SNAPSHOT)):
            self._snapshot_size = os.path.getsize(self._path(SNAPSHOT))
        return values

    def _missing(self, data, frames, end, problem, base, commits, acked,
                 has_snapshot):
        """What is missing from an undamaged-looking journal: a
        StoreCorrupt, or None.  A snapshot is always followed by a journal
        that starts with its marker; and every commit before the last
        acknowledged one (journal.ack) must be there, in the snapshot or
        the journal: only a torn last record may go."""
        jpath = self._path(JOURNAL)
        if has_snapshot and not frames:
            what = ('missing' if data is None else 'empty' if not data
                    else 'cut short before its first record (%d bytes)'
                    % len(data))
            return StoreCorrupt(jpath, 0, '%s, but %s (commit %d) is always '
                                'followed by a journal' % (what, SNAPSHOT,
                                                           base))
        if acked is None:
            return None
        have = max([base] + [seq for seq, _ in commits[-1:]])
        if have >= acked:
            return None
        return StoreCorrupt(jpath, end, 'the journal ends at commit %d, but '
                            'commits up to %d were acknowledged (%s): %d '
                            'acknowledged commits are missing' % (
                                have, acked, ACK, acked - have))

    # -- journal.ack: how far the journal was acknowledged --
    #
    # A journal cut short looks like a crash in the middle of a write, so
    # the journal cannot tell on its own.  journal.ack holds the commit
    # every earlier one was acknowledged before (one less than the last
    # fsynced commit: the last record may still be torn, see load); it is
    # rewritten in place after every sync, not fsynced itself: it is
    # written after the fsync it describes, so whatever of it reaches the
    # disk never claims more than the journal holds.

    def _read_ack(self, required):
        """The acknowledged mark, or None when there is none to trust;
        raises StoreCorrupt when the store says there must be one."""
        path = self._path(ACK)
        try:
            with open(path, 'rb') as f:
                raw = f.read(ACK_SIZE + 1)
        except FileNotFoundError:
            raw = None
        problem = None
        if raw is None:
            if required:
                problem = StoreCorrupt(path, 0, 'missing, but %s says the '
                                       'store keeps it' % SNAPSHOT)
        elif len(raw) != ACK_SIZE:
            problem = StoreCorrupt(path, min(len(raw), ACK_SIZE), '%d bytes '
                                   'instead of %d' % (len(raw), ACK_SIZE))
        else:
            magic, acked = _ACK.unpack_from(raw)
            (crc,) = _HCRC.unpack_from(raw, _ACK.size)
            if magic != ACK_MAGIC or zlib.crc32(raw[:_ACK.size]) != crc:
                problem = StoreCorrupt(path, 0, 'bad checksum')
            else:
                self.load_report['acked_seq'] = acked
                return acked
        if problem is not None:
            if not self.recover:
                raise problem
            self._warn('%s; cannot check that no acknowledged commit is '
                       'missing from the journal' % problem.where)
        return None

    def _open_ack(self):
        self._ack_fd = os.open(self._path(ACK), os.O_RDWR | os.O_CREAT,
                               0o644)

    def _write_ack(self, durable=False):
        """Record that every commit before the last synced one is on disk
        (with ``durable``, fsynced: after a recovery)."""
        fd = self._ack_fd
        if fd is None:
            return
        head = _ACK.pack(ACK_MAGIC, max(0, self._synced_seq - 1))
        try:
            os.pwrite(fd, head + _HCRC.pack(zlib.crc32(head)), 0)
            if durable:
                self._sync(fd)
                self._sync_dir(self.dir)
        except OSError as exc:
            # The mark only guards against a journal shortened later; the
            # commits themselves are safe: warn, never fail a commit.
            if not self._ack_failed:
                LOG.warning('store %s: cannot write %s: %s', self.dir, ACK,
                            exc)
            self._ack_failed = True

    def _warn(self, message):
        LOG.warning('%s', message)
        self.load_report['warnings'].append(message)

    def _read_snapshot(self, name, missing_ok=True, check=None):
        """Return ``(values, packed, seq, keeps_ack)`` of a snapshot file,
        where ``packed`` (a _Records) holds the same records as kept in
        memory and ``keeps_ack`` says the store keeps journal.ack;
        raise StoreCorrupt."""
        path = self._path(name)
        try:
            with open(path, 'rb') as f:
                data = f.read()
        except FileNotFoundError:
            if missing_ok and not os.path.exists(self._path(PREV)):
                return {}, _Records(), 0, False
            if missing_ok:      # snapshots are replaced, never removed
                raise StoreCorrupt(path, 0, 'missing, but %s exists' % PREV)
            raise
        frames, end, problem = _scan(data, path)
        if problem is not None:
            if isinstance(problem, StoreCorrupt):
                raise problem
            raise StoreCorrupt(path, end, 'truncated: ' + problem[1])
        if not frames:
            raise StoreCorrupt(path, 0, 'empty snapshot')
        try:
            head = _unpack(frames[0][1])
            seq, count = head['seq'], head['records']
            if head.get('format') != SNAPSHOT_FORMAT:
                raise ValueError('unknown format %r' % head.get('format'))
            if not isinstance(seq, int) or not isinstance(count, int):
                raise ValueError('seq and records must be integers')
        except Exception as exc:   # noqa: BLE001 - any decoding failure
            raise StoreCorrupt(path, 0, 'bad snapshot header: %s' % exc)
        if len(frames) - 1 != count:
            raise StoreCorrupt(path, end, 'snapshot has %d of %d records' % (
                len(frames) - 1, count))
        values, packed = {}, _Records()
        for offset, body in frames[1:]:
            try:
                change = _unpack(body)
            except Exception:      # noqa: BLE001
                change = None
            if not _valid_change(change) or change[2] is None:
                raise StoreCorrupt(path, offset, 'malformed record')
            kind, key = change[0], _key_in(change[1])
            _check(check, kind, key, change[2], path, offset)
            values[(kind, key)] = change[2]
            packed.put(kind, key, change[2])
        return values, packed, seq, bool(head.get('journal_ack'))

    @staticmethod
    def _check_journal(frames, problem, base, lost_window, path,
                       check=None):
        """Decode journal frames: ``(commits, problem)``, where commits is
        the good prefix as ``[(seq, changes)]``."""
        commits = []
        for offset, body in frames:
            try:
                seq, changes = _unpack(body)
                ok = isinstance(seq, int) and isinstance(changes, list) \
                    and all(_valid_change(c) for c in changes)
            except Exception:      # noqa: BLE001
                ok = False
            if not ok:
                return commits, StoreCorrupt(path, offset, 'malformed record')
            try:
                for kind, key, value in changes:
                    if value is not None:
                        _check(check, kind, _key_in(key), value, path, offset)
            except StoreCorrupt as bad:
                return commits, bad
            if commits and seq != commits[-1][0] + 1:
                return commits, StoreCorrupt(
                    path, offset, 'commit %d follows commit %d' % (
                        seq, commits[-1][0]))
            if not commits and seq > base and not lost_window:
                # Not recoverable from here: the commits in between are
                # nowhere (snapshot missing or replaced by an older one).
                raise StoreCorrupt(
                    path, offset, 'journal starts at commit %d but the '
                    'snapshot holds commits up to %d only (snapshot missing '
                    'or stale)' % (seq, base))
            commits.append((seq, changes))
        return commits, problem

    # -- writing --

    def commit(self, changes):
        """Append one journal frame of ``changes``; durable when it returns, or
        at the next sync() with group commit."""
        if self._fd is None:
            raise StoreError('store %s is not loaded or closed' % self.dir)
        if self._broken:
            raise StoreError('store %s failed (%s); restart to recover'
                             % (self.dir, self._broken))
        if not changes:
            return
        packed = [_pack_change(*change) for change in changes]
        seq = self._seq + 1
        packer = msgpack.Packer(use_bin_type=True)
        body = b''.join([packer.pack_array_header(2), packer.pack(seq),
                         packer.pack_array_header(len(packed))]
                        + [p for _, _, p in packed])
        frame = _frame(body)
        try:
            _write_all(self._fd, frame)
        except OSError:
            try:            # take back a partial frame (e.g. disk full)
                os.ftruncate(self._fd, self._journal_size)
            except OSError as exc:
                self._broken = 'journal write failed: %s' % exc
            raise
        # The frame is in the journal: keep the memory state in step with it
        # (a replay will apply it) even if the fsync below fails.
        self._seq = seq
        self._journal_size += len(frame)
        for (kind, key, _), change in zip(packed, changes):
            if change[2] is None:
                self._state.drop(kind, key)
            else:
                self._state.put(kind, key, change[2])
        self._journal_changes += len(packed)
        if self._compaction is not None:
            self._compaction.frames.append(frame)
            self._compaction.changes += len(packed)
        if self._flusher is not None and self.fsync:
            # The flush starts now, while the caller plans what waits for
            # it; sync() then waits for what is left of it.
            self._flusher.kick(self._fd, seq)
        # Inline fsyncs only: a commit never yields to another greenlet
        # (the caller is in the middle of a change).
        if not self.group_commit:
            self.sync(offload=False)
        self._commits += 1
        if self._journal_changes >= self.snapshot_every and \
                self._compaction is None:
            if self.background_compaction:
                self._start_compaction()
                return
            self.sync(offload=False)
            try:
                self.compact()
            except OSError as exc:
                # The commit itself is durable; try again later.
                LOG.warning('store %s: compaction failed: %s', self.dir, exc)
                self._journal_changes = 0

    def sync(self, offload=True):
        """Make every commit so far durable.  The fsync runs through
        ``offload`` (unless told not to): in the app, a thread, while other
        greenlets (REST, os-ken's receive loops) go on; commits made
        meanwhile are covered by the next sync, not this one."""
        target, fd = self._seq, self._fd
        if self._synced_seq >= target or fd is None:
            return
        flusher = self._flusher
        if self.fsync and flusher is not None:
            flusher.kick(fd, target)
            try:
                if offload:
                    self.offload(flusher.wait, target)
                else:
                    flusher.wait(target)
            except BaseException as exc:
                self._broken = 'journal fsync failed: %r' % (exc,)
                raise
            self._last_fsync_ms = flusher.last_ms
            self._fsyncs = flusher.fsyncs
        elif self.fsync:
            start = time.perf_counter()
            self._syncing += 1
            try:
                if offload:
                    self.offload(os.fsync, fd)
                else:
                    os.fsync(fd)
            except BaseException as exc:
                # After a failed fsync the kernel may have dropped the data.
                self._broken = 'journal fsync failed: %r' % (exc,)
                raise
            finally:
                self._syncing -= 1
            self._last_fsync_ms = (time.perf_counter() - start) * 1000.0
            self._fsyncs += 1
        if target > self._synced_seq:
            self._synced_seq = target
            self._write_ack()

    def start_early_fsync(self, threading):
        """With group commit, fsync each commit in a thread of its own as
        soon as it is written (see _Flusher; ``threading``: the module to
        take the thread from), instead of in :meth:`sync`: the flush then
        overlaps with what the caller computes before it syncs."""
        if self._flusher is None and self.fsync:
            self._flusher = _Flusher(threading)

    def _quiesce(self):
        if self._flusher is not None:
            self._flusher.quiesce()

    # -- compaction in steps (background_compaction) --
    #
    # Writing a whole snapshot at once stalled the app's event loop every
    # ``snapshot_every`` changes (benchmarks/README.md).  In the background
    # the snapshot is the state at the commit where compaction started
    # (its packed records are immutable bytes: a list of them is a
    # consistent copy), written a slice at a time by compact_step(); the
    # big fsync runs through ``offload`` (the app passes a thread pool).
    # Commits go on meanwhile: to the current journal as always (a crash
    # at any point still finds snapshot + journal complete), and kept in
    # memory, so the new journal that replaces it at the end starts with
    # them.

    @property
    def compacting(self):
        """Whether a background compaction is under way."""
        return self._compaction is not None

    def _start_compaction(self):
        try:
            self._compaction = self._snapshot_job()
        except OSError as exc:
            LOG.warning('store %s: compaction failed: %s', self.dir, exc)
            self._journal_changes = 0

    def compact_step(self, max_records=2000):
        """Write the next slice of the snapshot being made; finish it when
        all is written.  Returns True while there is more to do."""
        job = self._compaction
        if job is None:
            return False
        try:
            if job.next < job.total:
                self._write_records(job, max_records)
                return True             # more slices, or the finish
            job.handle.flush()
            if not job.synced and self.fsync:
                self.offload(os.fsync, job.handle.fileno())
            job.synced = True
            if self._syncing:
                # A journal fsync is running in a thread on the journal
                # this would replace: finish at the next step.
                return True
            self._finish_compaction(job)
        except OSError as exc:
            LOG.warning('store %s: compaction failed: %s', self.dir, exc)
            self._abandon_compaction()
            self._journal_changes = 0
        return False

    def _finish_compaction(self, job):
        """Snapshot into place, then the new journal: its marker names the
        snapshot's commit, and the commits made since follow it."""
        self._compaction = None
        self._place_snapshot(job)
        self._new_journal(job.seq, job.frames)
        self._journal_changes = job.changes
        self._compactions += 1
        LOG.info('store %s: compacted %d records into a snapshot in %.0f ms '
                 '(in the background, %d commits meanwhile)', self.dir,
                 job.total, (time.perf_counter() - job.started)
                 * 1000.0, len(job.frames))

    def _abandon_compaction(self):
        job, self._compaction = self._compaction, None
        if job is not None:
            job.handle.close()
            tmp = self._path(SNAPSHOT + '.tmp')
            if os.path.exists(tmp):
                os.unlink(tmp)

    def compact(self):
        """Write a snapshot of the whole state and start an empty journal."""
        if self._fd is None or self._broken:
            raise StoreError('store %s is not usable' % self.dir)
        started = time.perf_counter()
        self._write_snapshot()
        self._new_journal()
        self._compactions += 1
        LOG.info('store %s: compacted %d records into a snapshot in %.0f ms',
                 self.dir, len(self._state),
                 (time.perf_counter() - started) * 1000.0)

    # -- snapshots: written through a job, at once or in steps --

    def _snapshot_job(self):
        """A snapshot of the state at this commit, begun: the .tmp file
        open, its header written."""
        handle = open(self._path(SNAPSHOT + '.tmp'), 'wb')
        try:
            handle.write(_frame(msgpack.packb({
                'format': SNAPSHOT_FORMAT, 'seq': self._seq,
                'records': len(self._state), 'journal_ack': True})))
        except BaseException:
            handle.close()
            raise
        return _Compaction(self._seq, self._state, handle,
                           time.perf_counter())

    @staticmethod
    def _write_records(job, count):
        count = min(count, job.total - job.next)
        job.handle.write(b''.join(_frame(next(job.bodies))
                                  for _ in range(count)))
        job.next += count

    def _write_snapshot(self, keep_prev=True):
        """Write a snapshot of the whole state at once."""
        job = self._snapshot_job()
        try:
            while job.next < job.total:
                self._write_records(job, 10000)
            job.handle.flush()
            self._sync(job.handle.fileno())
        except BaseException:
            job.handle.close()
            raise
        self._place_snapshot(job, keep_prev)

    def _place_snapshot(self, job, keep_prev=True):
        """A written and fsynced snapshot into place (the old one kept as
        .prev)."""
        self._snapshot_size = job.handle.tell()
        job.handle.close()
        tmp, path = self._path(SNAPSHOT + '.tmp'), self._path(SNAPSHOT)
        # The previous one is kept, unless it is the empty one a new store
        # starts with (it could not restore anything the journal lacks).
        if keep_prev and self._snapshot_seq and os.path.exists(path):
            prev_tmp = self._path(PREV + '.tmp')
            if os.path.exists(prev_tmp):
                os.unlink(prev_tmp)
            try:
                os.link(path, prev_tmp)
            except OSError:         # no hard links on this file system
                shutil.copyfile(path, prev_tmp)
            os.replace(prev_tmp, self._path(PREV))
        os.replace(tmp, path)
        self._sync_dir(self.dir)
        self._snapshot_seq = job.seq

    def _new_journal(self, base=None, frames=()):
        """Atomically replace the journal by one holding only the marker
        (naming snapshot commit ``base``) and ``frames``, the commits after
        it."""
        # An fsync of the journal in flight must not outlive its file.
        self._quiesce()
        tmp = self._path(JOURNAL + '.tmp')
        marker = _frame(msgpack.packb([self._seq if base is None else base,
                                       []]))
        data = marker + b''.join(frames)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                     0o644)
        try:
            _write_all(fd, data)
            self._sync(fd)
            os.replace(tmp, self._path(JOURNAL))
        except BaseException:
            os.close(fd)
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        old, self._fd = self._fd, fd   # from here on, append to the new one
        if old is not None:
            os.close(old)
        self._journal_size = len(data)
        self._journal_changes = 0
        self._synced_seq = self._seq  # every frame it holds was fsynced
        self._sync_dir(self.dir)
        self._write_ack()

    def close(self):
        """Abandon a compaction under way, close the journal and release the
        lock."""
        self._abandon_compaction()
        if self._flusher is not None:
            self._flusher.stop()
            self._flusher = None
        for name in ('_fd', '_ack_fd', '_lock_fd'):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)

    def stats(self):
        """Figures for metrics (records, sizes, commits, last fsync time)."""
        return {'records': len(self._state),
                'journal_bytes': self._journal_size,
                'snapshot_bytes': self._snapshot_size,
                'last_fsync_ms': round(self._last_fsync_ms, 3),
                'commits': self._commits, 'commit_seq': self._seq,
                'journal_records': self._journal_changes,
                'compactions': self._compactions, 'fsyncs': self._fsyncs,
                'compacting': int(self._compaction is not None)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
