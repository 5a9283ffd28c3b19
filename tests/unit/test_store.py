"""The record store: journal replay, torn tails, corruption, compaction,
recovery, and a process killed with SIGKILL at a random moment."""

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import msgpack
import pytest

from nvo3_ryu_app.storage import store as store_module
from nvo3_ryu_app.storage.store import (ACK, HEADER_SIZE, JOURNAL, PREV,
                                        SNAPSHOT, JournalStore, MemoryStore,
                                        StoreCorrupt, StoreError)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def opened(path, **kwargs):
    kwargs.setdefault('fsync', False)
    store = JournalStore(str(path), **kwargs)
    return store, store.load()


def reload(path, **kwargs):
    store, data = opened(path, **kwargs)
    store.close()
    return data, store


def put(store, i, **extra):
    store.commit([('n', i, dict({'i': i}, **extra))])


def numbered(data):
    return sorted(k[1] for k in data if k[0] == 'n')


def frame_offsets(path):
    """Start offsets of the frames of a store file."""
    data = open(path, 'rb').read()
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        length = int.from_bytes(data[pos + 2:pos + 6], 'big')
        pos += HEADER_SIZE + length
    assert pos == len(data)
    return offsets


def flip(path, offset):
    with open(path, 'r+b') as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


# --- the interface --------------------------------------------------------

@pytest.mark.parametrize('make', ['memory', 'journal'])
def test_records_round_trip(tmp_path, make):
    store = MemoryStore() if make == 'memory' else opened(tmp_path)[0]
    value = {'ips': {'10.0.0.1': None}, 'vlans': {10: 5}, 'f': 1.5,
             'gw': ('a', 'b')}
    store.commit([('att', (7, '02:00:00:00:00:01'), value),
                  ('nve', 1, {'name': 'x'}), ('vn', 'name', {'a': 1})])
    store.commit([('nve', 1, None), ('vn', 'name', {'a': 2})])
    value['f'] = 99                      # later edits must not leak in
    if make == 'journal':
        store.close()
        data, store = reload(tmp_path)
    else:
        data = store.load()
    assert data == {('att', (7, '02:00:00:00:00:01')): {
        'ips': {'10.0.0.1': None}, 'vlans': {10: 5}, 'f': 1.5,
        'gw': ['a', 'b']}, ('vn', 'name'): {'a': 2}}
    key = next(k for k in data if k[0] == 'att')
    assert isinstance(key[1], tuple)
    stats = store.stats()
    assert {'records', 'journal_bytes', 'snapshot_bytes', 'last_fsync_ms',
            'commits'} <= set(stats)
    store.close()


@pytest.mark.parametrize('make', ['memory', 'journal'])
def test_records_of_many_shapes_round_trip(tmp_path, make, monkeypatch):
    """In memory a record is kept by position, its field names once per
    shape; past the shapes it keeps (and for a field not named by a str)
    as a map: every one comes back as committed."""
    monkeypatch.setattr(store_module, 'MAX_SHAPES', 4)
    store = MemoryStore() if make == 'memory' else opened(tmp_path)[0]
    values = {i: {('f%d' % j): [i, j] for j in range(i % 7)}
              for i in range(20)}
    values[20] = {1: 'one', 'two': 2}
    values[21] = {}
    store.commit([('n', i, value) for i, value in values.items()])
    if make == 'journal':
        store.compact()
        store.close()
        data, store = reload(tmp_path)
    else:
        data = store.load()
    assert data == {('n', i): value for i, value in values.items()}
    assert [list(v) for _, v in sorted(data.items())] == \
        [list(v) for _, v in sorted(values.items())]      # field order
    store.close()


@pytest.mark.parametrize('make', ['memory', 'journal'])
def test_records_keep_their_usual_values_by_type(tmp_path, make):
    """A record kept in memory leaves out the values its shape's first
    record held alike; each comes back of the type it was committed with
    (True is not 1, 0 is not False nor 0.0, None is not 0), floats and
    maps always as they were."""
    store = MemoryStore() if make == 'memory' else opened(tmp_path)[0]
    first = {'a': None, 'b': 1, 'c': 'learned', 'd': True, 'e': 0.0,
             'f': {'x': None}, 'g': 0}
    values = {0: first, 1: dict(first),
              2: {'a': 0, 'b': True, 'c': 'learned ', 'd': 1, 'e': -0.0,
                  'f': {}, 'g': False},
              3: {'a': False, 'b': 1.0, 'c': b'learned', 'd': 'True',
                  'e': 0, 'f': None, 'g': 0.0},
              4: {'a': None, 'b': 2, 'c': 'registered', 'd': False,
                  'e': 0.0, 'f': {'x': None}, 'g': 0}}
    store.commit([('att', i, value) for i, value in values.items()])
    if make == 'journal':
        store.compact()
        store.close()
        data, store = reload(tmp_path)
    else:
        data = store.load()
    assert data == {('att', i): value for i, value in values.items()}
    for i, value in values.items():
        got = data[('att', i)]
        assert [type(v) for v in got.values()] == \
            [type(v) for v in value.values()], i
        assert str(got) == str(value)         # -0.0 stays -0.0
    store.close()


def test_a_usual_record_is_kept_in_fewer_bytes():
    """An attachment's record like the first of its shape is kept in
    under 48 B (a bytes object of at most 80 B with the allocator's
    rounding); in 31 B (64 B) when it was heard once (its last_seen is
    its first_seen, as in the first record) at an NVE of a small dpid."""
    records = store_module._Records()
    now = 2.5
    att = {'nve': 1 << 40, 'port': 'p1', 'vlan': None,
           'ips': {'10.0.0.1': None}, 'seq': 1, 'source': 'learned',
           'reachable': True, 'first_seen': now, 'last_seen': now}
    records.put('att', (7, '02:00:00:00:00:01'), att)
    other = dict(att, nve=(1 << 40) + 1, port='p2',
                 ips={'10.0.0.2': None}, first_seen=1e9 + 0.5,
                 last_seen=1e9 + 0.75)
    records.put('att', (7, '02:00:00:00:00:02'), other)
    packed = records.by_kind['att'][(7, '02:00:00:00:00:02')]
    assert len(packed) < 48
    assert records.value(packed) == other
    assert list(records.value(packed)) == list(att)
    now = 1.7e9 + 0.123
    once = dict(att, nve=999, port='p3', ips={'10.3.13.66': None},
                first_seen=now, last_seen=now)
    records.put('att', (7, '02:00:00:00:00:03'), once)
    packed = records.by_kind['att'][(7, '02:00:00:00:00:03')]
    assert len(packed) <= 31
    assert records.value(packed) == once


@pytest.mark.parametrize('first, later, folded', [
    (2.5, 2.5, True),           # the same object
    (2.5, float('2.5'), True),  # an equal float
    (0.0, -0.0, False),         # packs to other bytes
    (float('nan'), float('nan'), False),
    (1, 1.0, False), (True, 1, False), ({}, {}, False)])
def test_a_field_like_an_earlier_one_comes_back_as_it_was(first, later,
                                                          folded):
    """A field whose value in the shape's first record was an earlier
    field's very object is left out where it packs as that field does,
    and comes back of its type and sign."""
    records = store_module._Records()
    shared = 7.25
    records.put('k', 1, {'a': shared, 'b': 'x', 'c': shared})
    records.put('k', 2, {'a': first, 'b': 'x', 'c': later})
    packed = records.by_kind['k'][2]
    got = records.value(packed)
    assert repr(got) == repr({'a': first, 'b': 'x', 'c': later})
    assert [type(v) for v in got.values()] == [type(first), str,
                                               type(later)]
    assert len(packed) == len(msgpack.packb([0, 0, first])) + (
        0 if folded else len(msgpack.packb(later)))


def test_snapshot_records_are_the_journal_records(tmp_path):
    """A snapshot's record is the bytes the journal wrote for it (made
    again from the positional form kept in memory)."""
    store, _ = opened(tmp_path)
    att = {'nve': 1 << 40, 'port': 'p1', 'vlan': None,
           'ips': {'10.0.0.1': None}, 'seq': 1, 'source': 'learned',
           'reachable': True, 'first_seen': 2.5, 'last_seen': 3.25}
    store.commit([('att', (7, '02:00:00:00:00:01'), att),
                  ('meta', 'events', {'seq': 4})])
    store.commit([('att', (7, '02:00:00:00:00:02'), dict(att, bid=5))])
    # Of the first one's shape, usual values and others (seq True is not
    # the usual 1, vlan 0 not None).
    store.commit([('att', (7, '02:00:00:00:00:03'), dict(
        att, nve=2, vlan=0, seq=True, source='registered', last_seen=4))])
    journal = open(tmp_path / JOURNAL, 'rb').read()
    store.compact()
    store.close()
    snapshot = open(tmp_path / SNAPSHOT, 'rb').read()
    records = [snapshot[pos + HEADER_SIZE:end] for pos, end in zip(
        frame_offsets(tmp_path / SNAPSHOT)[1:],
        frame_offsets(tmp_path / SNAPSHOT)[2:] + [len(snapshot)])]
    assert len(records) == 4
    for body in records:
        assert body in journal


def test_bad_changes_are_refused_before_writing(tmp_path):
    store, _ = opened(tmp_path)
    size = store.stats()['journal_bytes']
    with pytest.raises(TypeError):
        store.commit([('n', 1, {'ok': 1}), ('n', 2, ['not', 'a', 'dict'])])
    with pytest.raises(TypeError):
        store.commit([(3, 1, {})])
    with pytest.raises(TypeError):
        store.commit([('n', 1.5, {})])
    assert store.stats()['journal_bytes'] == size
    store.close()
    assert reload(tmp_path)[0] == {}


def test_store_is_locked_and_closed(tmp_path):
    store, _ = opened(tmp_path)
    with pytest.raises(StoreError, match='in use'):
        opened(tmp_path)
    store.close()
    with pytest.raises(StoreError):
        put(store, 1)
    opened(tmp_path)[0].close()


# --- journal replay and torn tails ----------------------------------------

def test_journal_replay(tmp_path):
    store, data = opened(tmp_path, fsync=True)
    assert data == {}
    for i in range(1, 21):
        store.commit([('n', i, {'i': i}), ('last', 'one', {'i': i})])
    store.commit([('n', i, None) for i in range(1, 21, 2)])
    assert store.stats()['last_fsync_ms'] >= 0
    store.close()
    data, again = reload(tmp_path)
    assert numbered(data) == list(range(2, 21, 2))
    assert data[('last', 'one')] == {'i': 20}
    assert again.load_report['replayed'] == 21
    assert again.load_report['warnings'] == []
    # and new commits continue the sequence
    store, _ = opened(tmp_path)
    put(store, 99)
    store.close()
    assert numbered(reload(tmp_path)[0]) == list(range(2, 21, 2)) + [99]


def test_group_commit_makes_a_burst_durable_with_one_fsync(tmp_path):
    store, _ = opened(tmp_path, fsync=True)
    store.group_commit = True
    before = store.stats()['fsyncs']
    for i in range(50):
        put(store, i)
    # Written (a kill of the process keeps them), not yet fsynced.
    assert store.stats()['fsyncs'] == before
    store.sync()
    assert store.stats()['fsyncs'] == before + 1
    store.sync()                      # nothing new: no second fsync
    assert store.stats()['fsyncs'] == before + 1
    store.close()
    assert numbered(reload(tmp_path)[0]) == list(range(50))


def test_a_commit_made_while_a_sync_runs_needs_the_next_sync(tmp_path):
    store, _ = opened(tmp_path, fsync=True)
    store.group_commit = True
    put(store, 1)

    def meanwhile(func, fd):          # another greenlet commits meanwhile
        store.offload = lambda f, *a: f(*a)
        put(store, 2)
        return func(fd)
    store.offload = meanwhile
    store.sync()
    before = store.stats()['fsyncs']
    store.sync()                      # commit 2 is not covered yet
    assert store.stats()['fsyncs'] == before + 1
    store.close()


def test_without_group_commit_every_commit_is_fsynced(tmp_path):
    store, _ = opened(tmp_path, fsync=True)
    before = store.stats()['fsyncs']
    for i in range(5):
        put(store, i)
    assert store.stats()['fsyncs'] == before + 5
    store.close()


def _compacting(path):
    """A store whose 20th commit just started a background compaction."""
    store, _ = opened(path, fsync=True, snapshot_every=20)
    store.background_compaction = True
    for i in range(20):
        put(store, i)
    assert store.compacting
    return store


def _copy_loads(src, dst):
    """What a crash at this moment would leave: the files, loaded."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns('lock'))
    return numbered(reload(dst)[0])


def test_background_compaction_keeps_every_commit_at_every_step(tmp_path):
    src = tmp_path / 'store'
    store = _compacting(src)
    committed, step = list(range(20)), 0
    while store.compacting:
        # A crash now (files as they are) loses nothing committed.
        assert _copy_loads(src, tmp_path / ('crash%d' % step)) == committed
        put(store, 100 + step)            # commits go on meanwhile
        committed.append(100 + step)
        store.compact_step(max_records=3)
        step += 1
    assert step > 3
    assert store.stats()['compactions'] == 1
    put(store, 999)
    committed.append(999)
    store.close()
    data, again = reload(src)
    assert numbered(data) == committed
    # The snapshot holds the state where compaction began; the journal
    # starts with the commits made while it was written.
    assert again.load_report['snapshot_seq'] == 20
    assert again.load_report['replayed'] == step + 1


def test_crash_between_new_snapshot_and_new_journal_loses_nothing(
        tmp_path, monkeypatch):
    src = tmp_path / 'store'
    store = _compacting(src)
    put(store, 50)                        # committed during the compaction

    def crash(*_args, **_kwargs):
        raise OSError('killed here')
    monkeypatch.setattr(store, '_new_journal', crash)
    while store.compact_step():
        pass
    # The new snapshot is in place, the old journal still holds everything.
    assert _copy_loads(src, tmp_path / 'crash') == list(range(20)) + [50]


def test_a_failed_background_compaction_leaves_the_store_usable(tmp_path):
    src = tmp_path / 'store'
    store = _compacting(src)

    def full(func, fd):
        if fd != store._fd:               # the snapshot's fsync fails
            raise OSError('disk full')
        return func(fd)
    store.offload = full
    while store.compact_step():
        pass
    assert not store.compacting and not (src / (SNAPSHOT + '.tmp')).exists()
    put(store, 21)
    store.close()
    assert numbered(reload(src)[0]) == list(range(20)) + [21]


def test_torn_last_record_at_every_offset(tmp_path):
    base = tmp_path / 'base'
    store, _ = opened(base)
    for i in range(1, 5):
        put(store, i, pad='x' * 20)
    start = store.stats()['journal_bytes']
    put(store, 5, pad='y' * 20)
    end = store.stats()['journal_bytes']
    store.close()
    assert frame_offsets(base / JOURNAL)[-1] == start
    for cut in range(start, end):
        work = tmp_path / ('cut%d' % cut)
        shutil.copytree(base, work)
        os.truncate(work / JOURNAL, cut)
        data, store = reload(work)
        assert numbered(data) == [1, 2, 3, 4], cut
        assert store.load_report['torn_bytes'] == cut - start
        assert bool(store.load_report['warnings']) == (cut > start)
        assert os.path.getsize(work / JOURNAL) == start
        store, _ = opened(work)             # appends after the cut point
        put(store, 6)
        store.close()
        assert numbered(reload(work)[0]) == [1, 2, 3, 4, 6]
        shutil.rmtree(work)


def test_zero_filled_tail_is_torn(tmp_path):
    store, _ = opened(tmp_path)
    put(store, 1)
    store.close()
    with open(tmp_path / JOURNAL, 'ab') as f:
        f.write(bytes(100))
    data, store = reload(tmp_path)
    assert numbered(data) == [1]
    assert store.load_report['torn_bytes'] == 100


def test_flipped_byte_in_a_middle_record_is_corrupt(tmp_path):
    store, _ = opened(tmp_path)
    for i in range(1, 6):
        put(store, i, pad='z' * 10)
    store.close()
    path = tmp_path / JOURNAL
    offsets = frame_offsets(path)
    start, end = offsets[3], offsets[4]
    pristine = open(path, 'rb').read()
    for pos in range(start, end):
        flip(path, pos)
        with pytest.raises(StoreCorrupt) as err:
            opened(tmp_path)
        assert err.value.path == str(path)
        assert err.value.offset == start
        assert str(path) in str(err.value)
        assert 'byte %d' % start in str(err.value)
        assert 'recover_from_snapshot' in str(err.value)
        assert open(path, 'rb').read()[pos] != pristine[pos]  # untouched
        open(path, 'wb').write(pristine)
    assert numbered(reload(tmp_path)[0]) == [1, 2, 3, 4, 5]


def test_damaged_last_complete_record_is_corrupt_not_torn(tmp_path):
    store, _ = opened(tmp_path)
    put(store, 1)
    put(store, 2)
    store.close()
    flip(tmp_path / JOURNAL, os.path.getsize(tmp_path / JOURNAL) - 1)
    with pytest.raises(StoreCorrupt, match='bad CRC'):
        opened(tmp_path)


def test_recover_from_corrupt_journal(tmp_path):
    store, _ = opened(tmp_path, snapshot_every=6)
    for i in range(1, 11):         # snapshot at 6, journal holds 7..10
        put(store, i)
    store.close()
    offsets = frame_offsets(tmp_path / JOURNAL)
    flip(tmp_path / JOURNAL, offsets[3] + HEADER_SIZE + 2)   # commit 9
    with pytest.raises(StoreCorrupt):
        opened(tmp_path)
    store, data = opened(tmp_path, recover_from_snapshot=True)
    assert numbered(data) == list(range(1, 9))
    report = store.load_report
    assert report['dropped']['offset'] == offsets[3]
    assert report['dropped']['file'] == JOURNAL
    assert any('byte %d' % offsets[3] in w for w in report['warnings'])
    [aside] = report['moved_aside']
    assert os.path.basename(aside).startswith(JOURNAL + '.corrupt-')
    put(store, 11)
    store.close()
    data, store = reload(tmp_path)      # clean again, no option needed
    assert numbered(data) == list(range(1, 9)) + [11]
    assert store.load_report['warnings'] == []


# --- snapshots and compaction -----------------------------------------------

def test_compaction_keeps_state_and_bounds_the_journal(tmp_path):
    store, _ = opened(tmp_path, snapshot_every=50)
    rng = random.Random(7)
    expect = {}
    biggest = 0
    for i in range(2000):
        key = rng.randrange(40)
        if rng.random() < 0.2:
            store.commit([('k', key, None)])
            expect.pop(key, None)
        else:
            store.commit([('k', key, {'v': i, 'pad': 'p' * 30})])
            expect[key] = i
        biggest = max(biggest, store.stats()['journal_bytes'])
    stats = store.stats()
    assert stats['compactions'] == 2000 // 50
    assert biggest < 50 * 80
    assert stats['records'] == len(expect)
    store.close()
    assert os.path.exists(tmp_path / PREV)
    data, store = reload(tmp_path)
    assert {k[1]: v['v'] for k, v in data.items()} == expect


def test_corrupt_snapshot_stops_the_start(tmp_path):
    store, _ = opened(tmp_path, snapshot_every=4)
    for i in range(1, 6):
        put(store, i)
    store.close()
    path = tmp_path / SNAPSHOT
    offsets = frame_offsets(path)
    flip(path, offsets[2] + HEADER_SIZE)
    with pytest.raises(StoreCorrupt) as err:
        opened(tmp_path)
    assert err.value.path == str(path)
    assert err.value.offset == offsets[2]
    assert '%s is corrupt at byte %d' % (path, offsets[2]) in str(err.value)
    # no previous snapshot yet: even the option refuses to start
    with pytest.raises(StoreCorrupt, match='no good previous snapshot'):
        opened(tmp_path, recover_from_snapshot=True)


def test_truncated_or_missing_snapshot_stops_the_start(tmp_path):
    store, _ = opened(tmp_path, snapshot_every=2)
    for i in range(1, 6):
        put(store, i)
    store.close()
    pristine = open(tmp_path / SNAPSHOT, 'rb').read()
    os.truncate(tmp_path / SNAPSHOT, len(pristine) - 3)
    with pytest.raises(StoreCorrupt, match='truncated'):
        opened(tmp_path)
    os.unlink(tmp_path / SNAPSHOT)
    with pytest.raises(StoreCorrupt, match='missing'):
        opened(tmp_path)
    os.unlink(tmp_path / PREV)          # journal alone: snapshot missing
    with pytest.raises(StoreCorrupt, match='snapshot missing or stale'):
        opened(tmp_path)
    with pytest.raises(StoreCorrupt, match='snapshot missing or stale'):
        opened(tmp_path, recover_from_snapshot=True)


def test_corrupt_snapshot_falls_back_to_prev_with_the_option(tmp_path):
    store, _ = opened(tmp_path, snapshot_every=3)
    for i in range(1, 9):    # prev at commit 3, snapshot at 6, journal 7, 8
        put(store, i)
    store.close()
    flip(tmp_path / SNAPSHOT, frame_offsets(tmp_path / SNAPSHOT)[1] + 20)
    with pytest.raises(StoreCorrupt):
        opened(tmp_path)
    store, data = opened(tmp_path, recover_from_snapshot=True)
    # 4..6 were only in the damaged snapshot
    assert numbered(data) == [1, 2, 3, 7, 8]
    report = store.load_report
    assert report['snapshot'] == PREV
    assert any('commits 4..6 ' in w for w in report['warnings'])
    assert any(SNAPSHOT + '.corrupt-' in p for p in report['moved_aside'])
    put(store, 9)
    store.close()
    data, store = reload(tmp_path)
    assert numbered(data) == [1, 2, 3, 7, 8, 9]
    assert store.load_report['warnings'] == []
    # the damaged snapshot was not rotated into .prev
    prev = JournalStore(str(tmp_path))._read_snapshot(PREV, False)[0]
    assert numbered(prev) == [1, 2, 3]


def test_crash_between_snapshot_and_journal_reset(tmp_path):
    store, _ = opened(tmp_path, snapshot_every=1000)
    for i in range(1, 11):
        put(store, i)
    store.commit([('n', 3, None), ('n', 4, {'i': 'four'})])
    old_journal = open(tmp_path / JOURNAL, 'rb').read()
    store.compact()
    store.close()
    # the crash: new snapshot in place, journal not yet replaced
    open(tmp_path / JOURNAL, 'wb').write(old_journal)
    data, store = reload(tmp_path)
    assert numbered(data) == [1, 2] + list(range(4, 11))
    assert data[('n', 4)] == {'i': 'four'}
    assert store.load_report['replayed'] == 0
    assert store.load_report['skipped'] == 12
    assert store.stats()['journal_bytes'] < 30      # reset to the marker
    store, _ = opened(tmp_path)
    put(store, 11)
    store.close()
    assert numbered(reload(tmp_path)[0]) == [1, 2] + list(range(4, 12))


def test_journal_older_than_snapshot_is_reset(tmp_path):
    store, _ = opened(tmp_path)
    store.close()
    marker_only = open(tmp_path / JOURNAL, 'rb').read()
    store, _ = opened(tmp_path)
    for i in range(1, 6):
        put(store, i)
    store.compact()
    store.close()
    open(tmp_path / JOURNAL, 'wb').write(marker_only)   # commit 0 only
    store, data = opened(tmp_path)
    assert numbered(data) == [1, 2, 3, 4, 5]
    put(store, 6)
    store.close()
    assert numbered(reload(tmp_path)[0]) == [1, 2, 3, 4, 5, 6]


def test_commits_continue_after_a_failed_compaction(tmp_path, monkeypatch):
    store, _ = opened(tmp_path, snapshot_every=3)

    def fail(*args, **kwargs):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(store, '_new_journal', fail)
    for i in range(1, 8):       # snapshot written, journal never replaced
        put(store, i)
    monkeypatch.undo()
    store.close()
    data, store = reload(tmp_path)
    assert numbered(data) == list(range(1, 8))
    assert store.load_report['skipped'] > 1
    assert store.load_report['replayed'] >= 1


def test_a_failed_write_is_taken_back(tmp_path, monkeypatch):
    from nvo3_ryu_app.storage import store as store_mod
    store, _ = opened(tmp_path)
    put(store, 1)
    size = store.stats()['journal_bytes']
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, bytes(data[:len(data) // 2]))
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(store_mod.os, 'write', half_then_full)
    with pytest.raises(OSError):
        put(store, 2)
    monkeypatch.undo()
    assert os.path.getsize(tmp_path / JOURNAL) == size
    put(store, 3)
    store.close()
    assert numbered(reload(tmp_path)[0]) == [1, 3]


def test_a_failed_fsync_stops_the_store(tmp_path, monkeypatch):
    from nvo3_ryu_app.storage import store as store_mod
    store, _ = opened(tmp_path, fsync=True)

    def eio(fd):
        raise OSError(5, 'Input/output error')
    monkeypatch.setattr(store_mod.os, 'fsync', eio)
    with pytest.raises(OSError):
        put(store, 1)
    monkeypatch.undo()
    with pytest.raises(StoreError, match='fsync failed'):
        put(store, 2)
    store.close()
    assert numbered(reload(tmp_path)[0]) == [1]   # written, never acked



# --- the journal fsynced in a thread as soon as a commit is written ------------

def _early(path, **kwargs):
    import threading
    store, _ = opened(path, fsync=True, **kwargs)
    store.group_commit = True
    store.start_early_fsync(threading)
    return store


def test_an_early_fsync_starts_at_the_commit_in_a_thread_of_its_own(
        tmp_path, monkeypatch):
    import threading
    from nvo3_ryu_app.storage import store as store_mod
    store = _early(tmp_path)
    started, release, seen = threading.Event(), threading.Event(), []
    real = os.fsync

    def held(fd):
        seen.append(threading.get_ident())
        started.set()
        assert release.wait(10)
        real(fd)
    monkeypatch.setattr(store_mod.os, 'fsync', held)
    put(store, 1)
    # The flush began before anyone asked for durability ...
    assert started.wait(10)
    assert seen == [seen[0]] and seen[0] != threading.get_ident()
    # ... and sync() waits for it: nothing is durable before it ends.
    done = []
    waiter = threading.Thread(target=lambda: (store.sync(), done.append(1)))
    waiter.start()
    assert not done
    release.set()
    waiter.join(10)
    assert done == [1] and store.stats()['fsyncs'] == 1
    monkeypatch.undo()
    store.close()
    assert numbered(reload(tmp_path)[0]) == [1]


def test_a_commit_after_the_early_fsync_began_is_flushed_again(
        tmp_path, monkeypatch):
    import threading
    from nvo3_ryu_app.storage import store as store_mod
    store = _early(tmp_path)
    started, release, calls = threading.Event(), threading.Event(), []
    real = os.fsync

    def held(fd):
        calls.append(fd)
        if len(calls) == 1:
            started.set()
            assert release.wait(10)
        real(fd)
    monkeypatch.setattr(store_mod.os, 'fsync', held)
    put(store, 1)
    assert started.wait(10)
    put(store, 2)                      # written while the first flush runs
    release.set()
    store.sync()
    # Commit 2 needed a flush of its own (the thread's, or the caller's
    # when the thread had not started it yet).
    assert len(calls) >= 2
    monkeypatch.undo()
    store.close()
    assert numbered(reload(tmp_path)[0]) == [1, 2]


def test_a_flush_the_thread_has_not_started_is_done_by_the_caller(
        tmp_path, monkeypatch):
    # On a busy machine the thread may wait for a core (or the GIL) past
    # the moment the caller needs durability: the caller flushes then.
    import threading
    from nvo3_ryu_app.storage import store as store_mod

    class Idle:
        """A threading module whose threads never run."""
        Condition = threading.Condition

        class Thread:
            def __init__(self, **kwargs):
                pass

            def start(self):
                pass

            def join(self, timeout=None):
                pass
    store, _ = opened(tmp_path, fsync=True)
    store.group_commit = True
    store.start_early_fsync(Idle)
    calls = []
    real = os.fsync
    monkeypatch.setattr(store_mod.os, 'fsync',
                        lambda fd: (calls.append(threading.get_ident()),
                                    real(fd)))
    put(store, 1)
    put(store, 2)
    store.sync()
    assert calls == [threading.get_ident()]
    assert store.stats()['fsyncs'] == 1
    store.sync()                       # nothing new
    assert len(calls) == 1
    monkeypatch.undo()
    store.close()
    assert numbered(reload(tmp_path)[0]) == [1, 2]


def test_a_failed_early_fsync_stops_the_store(tmp_path, monkeypatch):
    from nvo3_ryu_app.storage import store as store_mod
    store = _early(tmp_path)

    def eio(fd):
        raise OSError(5, 'Input/output error')
    monkeypatch.setattr(store_mod.os, 'fsync', eio)
    put(store, 1)
    with pytest.raises(OSError):
        store.sync()
    monkeypatch.undo()
    with pytest.raises(StoreError, match='fsync failed'):
        put(store, 2)
    store.close()


def test_early_fsyncs_and_background_compaction_keep_every_commit(tmp_path):
    src = tmp_path / 'store'
    store = _early(src, snapshot_every=20)
    store.background_compaction = True
    committed = []
    for i in range(60):
        put(store, i)
        committed.append(i)
        if i % 3 == 0:
            store.sync()
        while store.compact_step(max_records=7):
            pass
    store.sync()
    assert store.stats()['compactions'] >= 2
    store.close()
    assert numbered(reload(src)[0]) == committed


# --- SIGKILL at a random moment ---------------------------------------------

CHILD = textwrap.dedent('''
    import sys
    sys.path.insert(0, sys.argv[1])
    from nvo3_ryu_app.storage.store import JournalStore
    store = JournalStore(sys.argv[2], fsync=True,
                         snapshot_every=int(sys.argv[3]))
    first = max([k[1] for k in store.load() if k[0] == 'n'], default=0) + 1
    print('ready', flush=True)
    i = first
    while True:
        store.commit([('n', i, {'i': i, 'pad': 'x' * 40}),
                      ('last', 0, {'i': i})])
        print(i, flush=True)
        i += 1
''')


def test_sigkill_loses_no_acknowledged_commit(tmp_path):
    script = tmp_path / 'child.py'
    script.write_text(CHILD)
    state = tmp_path / 'state'
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    deadline = time.monotonic() + 4.0
    acked = set()
    runs = 0
    while runs < 5 and time.monotonic() < deadline - 0.6:
        runs += 1
        child = subprocess.Popen(
            [sys.executable, str(script), ROOT, str(state),
             str(rng.choice([7, 40, 1000]))], stdout=subprocess.PIPE)
        assert child.stdout.readline() == b'ready\n'
        time.sleep(rng.uniform(0.01, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        out = child.stdout.read().split()
        child.wait()
        assert child.returncode == -signal.SIGKILL
        printed = {int(n) for n in out}
        acked |= printed
        data, store = reload(state)
        present = set(numbered(data))
        assert acked <= present, (seed, sorted(acked - present)[:5])
        # at most the one commit in flight beyond what was acknowledged
        assert len(present - acked) <= 1, seed
        acked = present
        assert data[('last', 0)]['i'] == max(present), seed
    assert runs >= 3


# --- what is missing is never dropped quietly --------------------------------

def _acked(path, n=30, **kwargs):
    """A store with commits 1..n, every one acknowledged."""
    store, _ = opened(path, **kwargs)
    for i in range(1, n + 1):
        put(store, i, pad='p' * 20)
    store.close()
    return frame_offsets(path / JOURNAL)


def test_a_journal_cut_in_half_stops_the_start(tmp_path):
    offsets = _acked(tmp_path)
    half = os.path.getsize(tmp_path / JOURNAL) // 2
    os.truncate(tmp_path / JOURNAL, half)
    good_end = max(o for o in offsets if o < half)   # the cut frame starts
    with pytest.raises(StoreCorrupt) as err:
        opened(tmp_path)
    assert err.value.path == str(tmp_path / JOURNAL)
    assert err.value.offset == good_end
    assert 'acknowledged commits are missing' in str(err.value)
    assert 'recover_from_snapshot' in str(err.value)
    assert os.path.getsize(tmp_path / JOURNAL) == half      # untouched
    # With the option: what is left, said loudly, the cut journal kept.
    store, data = opened(tmp_path, recover_from_snapshot=True)
    kept = numbered(data)
    assert kept == list(range(1, len(kept) + 1)) and len(kept) < 29
    assert store.load_report['dropped']['offset'] == good_end
    assert any('acknowledged commits are missing' in w
               for w in store.load_report['warnings'])
    [aside] = store.load_report['moved_aside']
    assert os.path.basename(aside).startswith(JOURNAL + '.corrupt-')
    put(store, 99)
    store.close()
    data, store = reload(tmp_path)       # clean again: no option needed
    assert numbered(data) == kept + [99]
    assert store.load_report['warnings'] == []


@pytest.mark.parametrize('damage', ['5 bytes', 'emptied', 'deleted'])
def test_a_journal_cut_to_nothing_stops_the_start(tmp_path, damage):
    _acked(tmp_path)
    path = tmp_path / JOURNAL
    if damage == 'deleted':
        os.unlink(path)
    else:
        os.truncate(path, 5 if damage == '5 bytes' else 0)
    with pytest.raises(StoreCorrupt) as err:
        opened(tmp_path)
    assert err.value.path == str(path) and err.value.offset == 0
    assert SNAPSHOT in str(err.value)
    store, data = opened(tmp_path, recover_from_snapshot=True)
    assert numbered(data) == []        # the snapshot of a new store
    assert store.load_report['warnings']
    store.close()


def test_commits_in_the_snapshot_are_not_missing(tmp_path):
    """A journal that lost only what the snapshot holds lost nothing."""
    store, _ = opened(tmp_path)
    for i in range(1, 11):
        put(store, i)
    store.compact()                     # snapshot at 10, journal: marker
    store.close()
    data, store = reload(tmp_path)
    assert numbered(data) == list(range(1, 11))
    assert store.load_report['warnings'] == []


def test_the_last_record_alone_may_be_torn(tmp_path):
    """journal.ack lags one commit: a torn write of the last record is
    dropped (with a warning), the one before it may not go."""
    base = tmp_path / 'base'
    offsets = _acked(base, n=5)
    shutil.copytree(base, tmp_path / 'last')
    os.truncate(tmp_path / 'last' / JOURNAL, offsets[-1] + 3)  # 5 torn
    data, store = reload(tmp_path / 'last')
    assert numbered(data) == [1, 2, 3, 4]
    assert store.load_report['torn_bytes'] == 3
    shutil.copytree(base, tmp_path / 'two')
    os.truncate(tmp_path / 'two' / JOURNAL, offsets[-2] + 3)   # 4 too
    with pytest.raises(StoreCorrupt, match='commits up to 4 were '
                       'acknowledged'):
        opened(tmp_path / 'two')


@pytest.mark.parametrize('damage', ['deleted', 'flipped', 'short'])
def test_journal_ack_damage_stops_the_start(tmp_path, damage):
    _acked(tmp_path, n=3)
    path = tmp_path / ACK
    if damage == 'deleted':
        os.unlink(path)
    elif damage == 'flipped':
        flip(path, 5)
    else:
        os.truncate(path, 4)
    with pytest.raises(StoreCorrupt) as err:
        opened(tmp_path)
    assert err.value.path == str(path)
    store, data = opened(tmp_path, recover_from_snapshot=True)
    assert numbered(data) == [1, 2, 3]
    assert any(ACK in w for w in store.load_report['warnings'])
    store.close()
    data, store = reload(tmp_path)      # the mark is written again
    assert numbered(data) == [1, 2, 3]
    assert store.load_report['warnings'] == []


def _old_format(path, n):
    """A state directory as the store wrote it before journal.ack: a
    marker and commits, no snapshot (or one without the flag)."""
    from nvo3_ryu_app.storage.store import _frame
    import msgpack
    frames = [_frame(msgpack.packb([0, []]))] + [
        _frame(msgpack.packb([i, [['n', i, {'i': i}]]])) for i in
        range(1, n + 1)]
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, JOURNAL), 'wb') as handle:
        handle.write(b''.join(frames))


def test_a_store_from_before_journal_ack_loads_and_is_upgraded(tmp_path):
    _old_format(tmp_path, 4)
    data, store = reload(tmp_path)
    assert numbered(data) == [1, 2, 3, 4]
    assert store.load_report['warnings'] == []
    assert os.path.exists(tmp_path / ACK)
    assert os.path.exists(tmp_path / SNAPSHOT)
    # From now on a deleted journal is seen.
    store, _ = opened(tmp_path)
    put(store, 5)
    store.close()
    os.unlink(tmp_path / JOURNAL)
    with pytest.raises(StoreCorrupt, match='missing'):
        opened(tmp_path)


def _refuse_odd(kind, key, value):
    if value.get('i', 0) % 2:
        raise ValueError('odd i')


def test_records_the_owner_refuses_stop_the_start(tmp_path):
    store, _ = opened(tmp_path, snapshot_every=4)
    for i in (2, 4, 6, 8, 9, 10):      # snapshot at 8; journal 9, 10
        put(store, i)
    store.close()
    offsets = frame_offsets(tmp_path / JOURNAL)
    store = JournalStore(str(tmp_path), fsync=False)
    with pytest.raises(StoreCorrupt) as err:
        store.load(check=_refuse_odd)
    assert err.value.path == str(tmp_path / JOURNAL)
    assert err.value.offset == offsets[1]          # commit 9
    assert "bad n record 9: odd i" in str(err.value)
    store = JournalStore(str(tmp_path), fsync=False,
                         recover_from_snapshot=True)
    assert numbered(store.load(check=_refuse_odd)) == [2, 4, 6, 8]
    store.close()


def test_a_refused_snapshot_record_stops_the_start(tmp_path):
    store, _ = opened(tmp_path, snapshot_every=3)
    for i in (2, 3, 4):
        put(store, i)
    store.close()
    store = JournalStore(str(tmp_path), fsync=False)
    with pytest.raises(StoreCorrupt) as err:
        store.load(check=_refuse_odd)
    assert err.value.path == str(tmp_path / SNAPSHOT)
    assert 'bad n record 3' in str(err.value)
