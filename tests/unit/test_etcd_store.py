"""The etcd store's own logic (storage/etcd.py) against a small in-memory
model of etcd's key-value API (revisions, leases, compare-and-swap
transactions): group commit into guarded transactions, what a refused
transaction gives back, the live copy's filtering of watched events, and
record keys for every kind persist.py writes.  The same store against a
real etcd cluster: tests/integration/test_etcd_store.py."""

import pytest

from nvo3_ryu_app.authority import model, persist
from nvo3_ryu_app.storage import etcd
from nvo3_ryu_app.storage.etcd import (EtcdStore, StoreRefused,
                                       parse_record_key, record_key)

from test_persist import scenario

P = '/t/'
INST = P + 'inst/a'


class FakeEtcd:
    """Keys with create/mod revisions and leases; txn with compares."""

    def __init__(self):
        self.rev = 1
        self.kv = {}           # key -> dict(value, mod, create, lease)
        self.leases = {7}
        self.kv[INST] = {'value': b'{}', 'mod': 1, 'create': 1, 'lease': 7}
        self.txns = []
        self.fail = None

    def _cmp(self, c):
        key = etcd.unb64(c['key']).decode()
        cur = self.kv.get(key)
        if c['target'] == 'MOD':
            return (cur['mod'] if cur else 0) == c['mod_revision']
        if c['target'] == 'CREATE':
            return (cur['create'] if cur else 0) == c['create_revision']
        if c['target'] == 'LEASE':
            return cur is not None and cur['lease'] == c['lease'] and \
                c['lease'] in self.leases
        raise AssertionError(c)

    def txn(self, compare, success, failure=()):
        if self.fail is not None:
            raise self.fail
        self.txns.append((compare, success))
        ok = all(self._cmp(c) for c in compare)
        ops = success if ok else failure
        if ok and any('request_range' not in op for op in ops):
            self.rev += 1
        out = []
        for op in ops:
            if 'request_put' in op:
                req = op['request_put']
                key = etcd.unb64(req['key']).decode()
                old = self.kv.get(key)
                self.kv[key] = {'value': etcd.unb64(req['value']),
                                'mod': self.rev,
                                'create': old['create'] if old else self.rev,
                                'lease': req.get('lease', 0)}
            elif 'request_delete_range' in op:
                self.kv.pop(etcd.unb64(
                    op['request_delete_range']['key']).decode(), None)
            else:
                key = etcd.unb64(op['request_range']['key']).decode()
                cur = self.kv.get(key)
                kvs = [] if cur is None else [{
                    'key': etcd.b64(key), 'value': etcd.b64(cur['value']),
                    'mod_revision': str(cur['mod']),
                    'create_revision': str(cur['create'])}]
                out.append({'response_range': {'kvs': kvs}})
        return ok, self.rev, out

    def range(self, prefix):
        kvs = [{'key': k, 'value': v['value'], 'mod_revision': v['mod'],
                'create_revision': v['create'], 'lease': v['lease']}
               for k, v in sorted(self.kv.items()) if k.startswith(prefix)]
        return kvs, self.rev

    def event(self, key):
        """The watch event of ``key``'s current state (a put)."""
        cur = self.kv[key]
        return ('PUT', {'key': key, 'value': cur['value'],
                        'mod_revision': cur['mod'],
                        'create_revision': cur['create'], 'lease': 0})


def store_on(fake, max_txn_ops=128, instance=None):
    store = EtcdStore(fake, P, max_txn_ops, instance=instance,
                      private_kinds=persist.PRIVATE_KINDS if instance
                      else ())
    store.load()
    store.guard = (INST, 7)
    return store


VN = {'name': 'blue', 'service': 'l2', 'encap': 'vxlan',
      'gateway_mac': None, 'gateway_ips': [], 'origin': 'rest'}


def test_every_kind_of_record_has_a_key_that_comes_back():
    db = model.MappingDB()
    scenario(db, persist_store())
    records = dict(persist.all_records(db))
    # Kinds the scenario makes none of: their keys are names.
    records.update({('ic', 'ab'): {}, ('ext', 'lab'): {},
                    ('meta', 'events'): {'seq': 1}})
    assert {kind for kind, _ in records} == set(persist.KINDS)
    for kind, key in records:
        text = record_key(P, kind, key)
        assert text.startswith(P + 'rec/' + kind + '/')
        assert parse_record_key(P, text) == (kind, key)
    assert record_key(P, 'vn', 5001) != record_key(P, 'vn', '5001')


def persist_store():
    from nvo3_ryu_app.storage.store import MemoryStore
    return MemoryStore()


def test_commits_between_syncs_go_as_one_guarded_transaction():
    fake = FakeEtcd()
    store = store_on(fake)
    store.commit([('vn', 1, VN)])
    store.commit([('vn', 2, VN), ('vn', 1, dict(VN, name='navy'))])
    assert fake.txns == []                    # nothing before the sync
    store.sync()
    (compare, success), = fake.txns
    targets = sorted(c['target'] for c in compare)
    assert targets == ['LEASE', 'MOD', 'MOD']  # one key written once
    assert len(success) == 2
    assert store.value('vn', 1)['name'] == 'navy'


def test_large_change_sets_are_split_at_the_operation_limit():
    fake = FakeEtcd()
    store = store_on(fake, max_txn_ops=4)       # 3 keys per transaction
    store.commit([('vn', i, VN) for i in range(7)])
    store.commit([('vn', 0, dict(VN, name='again'))])
    store.sync()
    assert [len(s) for _, s in fake.txns] == [3, 3, 2]
    # The key the first transaction wrote is based on that write.
    assert store.value('vn', 0)['name'] == 'again'


def test_a_conflict_gives_back_what_etcd_holds():
    fake = FakeEtcd()
    a, b = store_on(fake), store_on(fake)
    a.commit([('vn', 1, VN)])
    a.sync()
    b.commit([('vn', 1, dict(VN, name='mine'))])   # b never saw a's write
    with pytest.raises(StoreRefused) as refused:
        b.sync()
    assert refused.value.conflict
    assert refused.value.records == {('vn', 1): VN}
    # b now knows etcd's value, and a retry based on it goes through.
    b.commit([('vn', 1, dict(VN, name='mine'))])
    b.sync()


def test_without_the_lease_nothing_is_written():
    fake = FakeEtcd()
    store = store_on(fake)
    store.commit([('vn', 1, VN)])
    store.sync()
    fake.leases.clear()                      # expired in etcd
    store.commit([('vn', 1, dict(VN, name='late')), ('vn', 2, VN)])
    with pytest.raises(StoreRefused) as refused:
        store.sync()
    assert not refused.value.conflict
    assert refused.value.records == {('vn', 1): VN, ('vn', 2): None}
    store.guard = None                       # the cluster knows: not even sent
    store.commit([('vn', 3, VN)])
    count = len(fake.txns)
    with pytest.raises(StoreRefused):
        store.sync()
    assert len(fake.txns) == count


def test_an_unanswered_transaction_gives_back_what_was_known():
    fake = FakeEtcd()
    store = store_on(fake)
    store.commit([('vn', 1, VN)])
    store.sync()
    fake.fail = etcd.EtcdUnavailable('timed out')
    store.commit([('vn', 1, dict(VN, name='maybe'))])
    with pytest.raises(StoreRefused) as refused:
        store.sync()
    assert refused.value.records == {('vn', 1): VN}


def test_the_live_copy_skips_its_own_writes_and_anything_older():
    fake = FakeEtcd()
    a, b = store_on(fake), store_on(fake)
    a.commit([('vn', 1, VN)])
    a.sync()
    event = fake.event(record_key(P, 'vn', 1))
    assert a.observe([event]) == {}                   # its own write
    assert b.observe([event]) == {('vn', 1): VN}
    assert b.observe([event]) == {}                   # seen already
    a.commit([('vn', 1, None)])
    a.sync()
    gone = ('DELETE', dict(event[1], mod_revision=fake.rev))
    assert b.observe([gone]) == {('vn', 1): None}
    # a's own delete is ahead of its watch: the put its watch still has to
    # deliver does not bring the record back.
    assert a.observe([event]) == {}
    assert a.observe([gone]) == {}
    # Events of the cluster's own keys are not records.
    assert b.observe([('PUT', {'key': P + 'owner/0000000000000001',
                                'value': b'a', 'mod_revision': 99,
                                'create_revision': 99, 'lease': 7})]) == {}


def test_each_instance_keeps_its_own_private_records():
    # Every instance writes its event sequence number with its commits:
    # three instances committing at once must not refuse each other, and
    # none may take another's number for its own.
    fake = FakeEtcd()
    a, b = store_on(fake, instance='a'), store_on(fake, instance='b')
    a.commit([('meta', 'events', {'seq': 5}), ('vn', 1, VN)])
    b.commit([('meta', 'events', {'seq': 9})])   # b never saw a's write
    a.sync()
    b.sync()
    assert a.value('meta', 'events') == {'seq': 5}
    assert b.value('meta', 'events') == {'seq': 9}
    # The live copy ignores the other instance's private records...
    for key in fake.kv:
        if '/meta/' in key:
            event = fake.event(key)
            assert a.observe([event]) == {}
    assert b.observe([fake.event(record_key(P, 'vn', 1))]) == {
        ('vn', 1): VN}
    # ... and so does a load (a restarted instance takes back its own).
    again = store_on(fake, instance='b')
    assert again.load() == {('meta', 'events'): {'seq': 9}, ('vn', 1): VN}
    with pytest.raises(ValueError):
        EtcdStore(fake, P, private_kinds=('meta',))


def test_a_reload_returns_the_difference():
    fake = FakeEtcd()
    a, b = store_on(fake), store_on(fake)
    a.commit([('vn', 1, VN), ('vn', 2, VN)])
    a.sync()
    b.load()
    a.commit([('vn', 1, None), ('vn', 2, dict(VN, name='x')),
              ('vn', 3, VN)])
    a.sync()
    kvs, rev = fake.range(P)
    assert b.reload_from(kvs, rev) == {
        ('vn', 1): None, ('vn', 2): dict(VN, name='x'), ('vn', 3): VN}
    assert b.reload_from(kvs, rev) == {}


def test_a_bad_record_in_etcd_stops_the_load_and_is_skipped_later():
    fake = FakeEtcd()
    fake.kv[P + 'rec/vn/5'] = {'value': b'\xc1', 'mod': 2, 'create': 2,
                               'lease': 0}
    with pytest.raises(etcd.StoreError, match='rec/vn/5'):
        EtcdStore(fake, P).load()
    store = EtcdStore(fake, P)
    kvs, rev = fake.range(P)
    assert store.reload_from(kvs, rev) == {}


def test_endpoints_are_parsed():
    assert etcd.parse_endpoints('127.0.0.1:2379, http://[::1]:2380') == [
        ('127.0.0.1', 2379), ('::1', 2380)]
    with pytest.raises(ValueError):
        etcd.parse_endpoints('nohost')
    with pytest.raises(ValueError):
        etcd.parse_endpoints('')
