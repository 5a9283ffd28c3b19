"""The configuration file is a base layer, writes make events, and a
restart neither invents events nor numbers them afresh.

What an operator relies on: a binding the file made is not replaced by a
REST write by accident (409 unless overridden); an override, once deleted,
gives the port its file binding back; bindings, unbindings and NVE
registrations are in the event log with where they came from; restarting
the app (the file applied again over the stored state) records nothing
for what did not change, and event numbers go on from where they were.
"""

import pytest

from nvo3_ryu_app.authority import commands as C
from nvo3_ryu_app.authority.authority import Authority
from nvo3_ryu_app.authority.errors import Conflict
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.southbound.flowtable import FlowTables
from nvo3_ryu_app.storage.store import JournalStore

DOC = {
    'vns': [{'vnid': 5001, 'name': 'blue'},
            {'vnid': 5002, 'name': 'green', 'service': 'l2'}],
    'nves': [{'dpid': '0000000000000001', 'name': 'hv1',
              'vtep_ip': '10.0.0.1',
              'ports': {'tap1': {'vnid': 5001},
                        'trunk0': {'vlans': {10: 5001, 20: 5002}}}}],
}


def start(path, doc=DOC, now=100.0):
    """The app's start: the store loaded, the file applied."""
    store = JournalStore(str(path), fsync=False)
    auth = Authority(FlowTables(), Settings(), store, start_time=now)
    auth.execute(C.ApplyConfig(doc), now)
    return auth


def types(auth, since=0):
    return [(e['type'], e.get('origin')) for e in auth.event_log.since(since)]


def test_a_rest_binding_over_the_files_is_refused_unless_an_override(
        tmp_path):
    auth = start(tmp_path)
    with pytest.raises(Conflict, match='bound by the configuration file'):
        auth.execute(C.BindPort(1, 'tap1', vnid=5002), 101.0)
    assert auth.db.nves[1].bindings['tap1'].vnid == 5001
    binding = auth.execute(C.BindPort(1, 'tap1', vnid=5002, override=True),
                           102.0)
    assert binding.to_dict() == {
        'vnid': 5002, 'origin': 'rest',
        'overrides': {'vnid': 5001, 'origin': 'config'}}
    # Deleting the override gives the port its file binding back.
    seq = auth.event_log.seq
    auth.execute(C.UnbindPort(1, 'tap1'), 103.0)
    back = auth.db.nves[1].bindings['tap1']
    assert (back.vnid, back.origin, back.base) == (5001, 'config', None)
    unbind, = auth.event_log.since(seq)
    assert (unbind['type'], unbind['origin'], unbind['restored']) == (
        'unbind', 'rest', 'VN 5001')


def test_the_files_own_binding_is_not_deleted_over_rest(tmp_path):
    auth = start(tmp_path)
    with pytest.raises(Conflict, match='remove it there'):
        auth.execute(C.UnbindPort(1, 'trunk0'), 101.0)
    assert 1 in auth.db.nves and 'trunk0' in auth.db.nves[1].bindings


def test_an_override_survives_a_restart_and_the_file_updates_its_base(
        tmp_path):
    auth = start(tmp_path)
    auth.execute(C.BindPort(1, 'tap1', vnid=5002, override=True), 101.0)
    auth.store.close()
    changed = {'vns': DOC['vns'], 'nves': [dict(
        DOC['nves'][0], ports={'tap1': {'vlans': {30: 5001}},
                               'trunk0': {'vlans': {10: 5001, 20: 5002}}})]}
    auth = start(tmp_path, changed, now=200.0)
    binding = auth.db.nves[1].bindings['tap1']
    assert (binding.vnid, binding.origin) == (5002, 'rest')
    assert binding.base.vlans == {30: 5001}
    auth.execute(C.UnbindPort(1, 'tap1'), 201.0)
    assert auth.db.nves[1].bindings['tap1'].vlans == {30: 5001}


def test_bindings_unbindings_and_registrations_make_events_with_origin(
        tmp_path):
    auth = start(tmp_path)
    assert ('nve-registered', 'config') in types(auth)
    assert types(auth).count(('bind', 'config')) == 2
    seq = auth.event_log.seq
    auth.execute(C.RegisterNVE(2, '10.0.0.2', 'hv2'), 101.0)
    auth.execute(C.BindPort(2, 'tap9', vnid=5001), 102.0)
    auth.execute(C.UnbindPort(2, 'tap9'), 103.0)
    events = auth.event_log.since(seq)
    assert [(e['type'], e['origin']) for e in events if e['type'] in (
        'nve-registered', 'bind', 'unbind')] == [
        ('nve-registered', 'rest'), ('bind', 'rest'), ('unbind', 'rest')]
    assert events[0]['name'] == 'hv2' and events[0]['vtep_ip'] == '10.0.0.2'
    bind = next(e for e in events if e['type'] == 'bind')
    assert (bind['nve'], bind['port'], bind['vnid']) == (
        '0000000000000002', 'tap9', 5001)


def test_a_restart_records_nothing_for_what_did_not_change(tmp_path):
    auth = start(tmp_path)
    seq = auth.event_log.seq
    assert seq > 0
    auth.store.close()
    again = start(tmp_path, now=200.0)
    assert again.event_log.seq == seq            # numbering went on ...
    assert again.event_log.since(0) == []        # ... and nothing happened
    # A change in the file is one event, numbered after the last one.
    again.store.close()
    renamed = {'vns': [dict(DOC['vns'][0], name='navy'), DOC['vns'][1]],
               'nves': DOC['nves']}
    third = start(tmp_path, renamed, now=300.0)
    event, = third.event_log.since(0)
    assert (event['seq'], event['type'], event['changes']) == (
        seq + 1, 'vn-updated', ['name'])


def test_the_same_write_twice_changes_nothing(tmp_path):
    auth = start(tmp_path)
    auth.execute(C.RegisterNVE(2, '10.0.0.2', 'hv2'), 101.0)
    auth.execute(C.BindPort(2, 'tap9', vnid=5001), 102.0)
    seq = auth.event_log.seq
    auth.execute(C.RegisterNVE(2, '10.0.0.2', 'hv2'), 103.0)
    auth.execute(C.BindPort(2, 'tap9', vnid=5001), 104.0)
    auth.execute(C.UpdateVN(5001, {'name': 'blue'}), 105.0)
    assert auth.event_log.seq == seq


def test_names_are_unique_and_never_read_as_a_datapath_id(tmp_path):
    auth = start(tmp_path)
    with pytest.raises(Conflict, match="'hv1' already belongs"):
        auth.execute(C.RegisterNVE(2, name='hv1'), 101.0)
    with pytest.raises(Exception, match='would read as a datapath id'):
        auth.execute(C.RegisterNVE(2, name='00000000000000aa'), 101.0)
