"""Benchmark of the mapping store (nvo3_ryu_app/store.py).

Prints a table and writes benchmarks/results/store.json:

* commits per second with fsync on and off (one attachment record per
  commit, as a learned tenant system gives), records per second with
  commits of 100 records, and commits per second with group commit (one
  fsync per 16 commits, as the app drains a burst of packet-ins);
* bytes per attachment record, in the journal and in the snapshot, for a
  MappingDB with 10,000 learned attachments across 100 NVEs;
* the time to load that store (journal replay, and from a snapshot) and
  to restore the MappingDB from it.

Usage: python benchmarks/store_bench.py [--dir DIR] [--seconds S]
(DIR defaults to a temporary directory; its file system decides the fsync
figures.)
"""

import argparse
import ipaddress
import os
import platform
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from nvo3_ryu_app.authority import persist  # noqa: E402
from nvo3_ryu_app.authority.model import MappingDB  # noqa: E402
from nvo3_ryu_app.storage.store import JournalStore  # noqa: E402

sys.path.insert(0, HERE)
import benchenv  # noqa: E402

NVES, PER_NVE, VNS = 100, 100, 10


def build_db():
    """10,000 learned attachments (with one IPv4 each) across 100 NVEs."""
    db = MappingDB()
    for vnid in range(1, VNS + 1):
        db.create_vn(vnid, 'vn%d' % vnid)
    n = 0
    for dpid in range(1, NVES + 1):
        db.register_nve(dpid, vtep_ip='192.0.%d.%d' % (dpid // 250,
                                                       dpid % 250 + 1))
        db.nve_connected(dpid, ports={'p1': 1},
                         nve_mac='02:ff:00:00:%02x:%02x' % (dpid >> 8,
                                                            dpid & 255),
                         now=0)
        vnid = dpid % VNS + 1
        db.bind_port(dpid, 'p1', vnid=vnid)
        for _ in range(PER_NVE):
            n += 1
            mac = '02:00:00:%02x:%02x:%02x' % (n >> 16, (n >> 8) & 255,
                                               n & 255)
            ip = str(ipaddress.IPv4Address(0x0A000000 + n))
            db.learn(dpid, 'p1', None, mac, ip, 1700000000.0 + n)
    db.take_changed_records()
    return db


def commit_rate(path, fsync, seconds, batch=1, limit=20000, group=0):
    """Commits per second of ``batch`` attachment-like records each; with
    ``group``, group commit: one sync() per ``group`` commits, as the app
    drains a burst of packet-ins."""
    shutil.rmtree(path, ignore_errors=True)
    store = JournalStore(path, fsync=fsync)
    store.load()
    store.group_commit = bool(group)
    value = {'nve': 7, 'port': 'p1', 'vlan': None,
             'ips': {'10.0.0.1': None}, 'seq': 1, 'source': 'learned',
             'reachable': True, 'first_seen': 1700000000.5,
             'last_seen': 1700000000.5}
    commits, start = 0, time.perf_counter()
    while commits < limit and time.perf_counter() - start < seconds:
        store.commit([('att', (1, '02:00:00:00:%02x:%02x' % (
            (commits * batch + i) >> 8 & 255, (commits * batch + i) & 255)),
            value) for i in range(batch)])
        commits += 1
        if group and commits % group == 0:
            store.sync()
    store.sync()
    elapsed = time.perf_counter() - start
    store.close()
    return commits / elapsed


def sizes_and_load(path, db):
    att_keys = [('att', key) for key in db.attachments]
    other = [(kind, key, persist.record_of(db, kind, key))
             for kind, keys in (('vn', db.vns), ('nve', db.nves))
             for key in keys]
    shutil.rmtree(path, ignore_errors=True)
    store = JournalStore(path, fsync=False, snapshot_every=10 ** 9)
    store.load()
    store.commit(other)
    before = store.stats()['journal_bytes']
    for kind, key in att_keys:             # one commit per learn
        store.commit([(kind, key, persist.record_of(db, kind, key))])
    journal_one = (store.stats()['journal_bytes'] - before) / len(att_keys)
    store.close()

    out = {'attachments': len(att_keys),
           'journal_bytes_per_att_commit': round(journal_one, 1)}
    start = time.perf_counter()
    store = JournalStore(path, fsync=True, snapshot_every=10 ** 9)
    loaded = store.load()
    out['load_journal_s'] = round(time.perf_counter() - start, 4)
    assert len(loaded) == len(att_keys) + len(other)
    out['journal_bytes'] = store.stats()['journal_bytes']
    start = time.perf_counter()
    store.compact()
    out['compact_s'] = round(time.perf_counter() - start, 4)
    store.close()

    start = time.perf_counter()
    store = JournalStore(path, fsync=False)
    records = store.load()
    out['load_snapshot_s'] = round(time.perf_counter() - start, 4)
    out['snapshot_bytes'] = store.stats()['snapshot_bytes']
    store.close()
    start = time.perf_counter()
    db2 = MappingDB()
    persist.restore(db2, records)
    out['restore_s'] = round(time.perf_counter() - start, 4)
    assert len(db2.attachments) == len(att_keys)

    # group commit of everything at once: bytes per record in one frame
    shutil.rmtree(path, ignore_errors=True)
    store = JournalStore(path, fsync=False, snapshot_every=10 ** 9)
    store.load()
    before = store.stats()['journal_bytes']
    store.commit([(kind, key, persist.record_of(db, kind, key))
                  for kind, key in att_keys])
    out['journal_bytes_per_att_grouped'] = round(
        (store.stats()['journal_bytes'] - before) / len(att_keys), 1)
    store.compact()
    out['snapshot_bytes_per_att'] = round(
        store.stats()['snapshot_bytes'] / len(att_keys), 1)
    store.close()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dir', help='state directory to benchmark in')
    parser.add_argument('--seconds', type=float, default=2.0,
                        help='seconds per commit-rate run')
    args = parser.parse_args()
    base = args.dir or tempfile.mkdtemp(prefix='store-bench-')
    os.makedirs(base, exist_ok=True)
    path = os.path.join(base, 'state')
    try:
        results = {
            'commits_per_s_fsync': round(commit_rate(path, True,
                                                     args.seconds), 1),
            'commits_per_s_no_fsync': round(commit_rate(path, False,
                                                        args.seconds), 1),
            'records_per_s_fsync_batch100': round(100 * commit_rate(
                path, True, args.seconds, batch=100), 1),
            'commits_per_s_group_commit_16': round(commit_rate(
                path, True, args.seconds, group=16), 1),
        }
        start = time.perf_counter()
        db = build_db()
        results['build_db_s'] = round(time.perf_counter() - start, 3)
        results.update(sizes_and_load(path, db))
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    results['env'] = {'python': platform.python_version(),
                      'platform': platform.platform(),
                      'dir': args.dir or tempfile.gettempdir()}

    rows = [
        ('commits/s, fsync on (1 record each)',
         results['commits_per_s_fsync']),
        ('commits/s, fsync off (1 record each)',
         results['commits_per_s_no_fsync']),
        ('records/s, fsync on, 100 per commit',
         results['records_per_s_fsync_batch100']),
        ('commits/s, group commit (one fsync per 16 commits)',
         results['commits_per_s_group_commit_16']),
        ('attachments', results['attachments']),
        ('journal bytes/attachment, 1 per commit',
         results['journal_bytes_per_att_commit']),
        ('journal bytes/attachment, 1 commit of all',
         results['journal_bytes_per_att_grouped']),
        ('snapshot bytes/attachment', results['snapshot_bytes_per_att']),
        ('load from journal (s)', results['load_journal_s']),
        ('compaction, fsync on (s)', results['compact_s']),
        ('load from snapshot (s)', results['load_snapshot_s']),
        ('restore MappingDB (s)', results['restore_s']),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print('%-*s  %12s' % (width, name, value))
    path = os.path.join(HERE, 'results', 'store.json')
    benchenv.write_json(path, results)
    print('wrote %s' % path)


if __name__ == '__main__':
    main()
