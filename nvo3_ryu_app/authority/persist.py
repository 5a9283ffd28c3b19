"""Glue between the mapping database (model.py) and a record store.

Three kinds of records hold the authority's intent and mapping state; the
dynamic state learned from the switches (``NVE.dyn_*``) is never persisted.

``('vn', vnid)``
    ``{name, service, encap, gateway_mac, gateway_ips, origin}``, plus,
    only when set, ``evpn`` and ``route_targets`` (BGP EVPN; absent: off,
    derived)
``('nve', dpid)``
    ``{name, vtep_ip, origin, bindings}``, where ``bindings`` maps a port
    name to ``{'vnid': vnid, 'origin': ...}`` (whole port) or
    ``{'vlans': {'<vlan>': vnid, ...}, 'origin': ...}``
``('att', (vnid, mac))``
    ``{nve, port, vlan, ips: {ip: bid}, seq, source, reachable,
    first_seen, last_seen}``: one attachment, i.e. the mapping table entries
    of one tenant-system vNIC and its location sequence number; plus, only
    when set, the L2 binding's ``bid`` (registration) and the mobility
    decisions ``moved_at``, ``move_times``, ``frozen_until`` and
    ``blocked`` (``[[dpid, port, until], ...]``).  ``redirect_from`` is not
    kept: the hold timer that ends a redirect lives in the move arbiter,
    which starts empty, and after a restart every flow is recomputed anyway.
    Entries imported from BGP EVPN peers are not kept either (the peers
    advertise them again when the session is back; the model never marks
    them changed): an attachment that left for an EVPN VTEP is deleted.

:func:`check_record` is the store's ``check``: a record loaded with a
good checksum but content the database could not hold (a missing field,
an address with a zone index, a name the API refuses) stops the start
like a damaged record does, naming the file and the byte
(storage/store.py).

The field lists below say what is kept and what is not, for every field of
the model's records; a unit test fails when the model gains a field that
is in neither, so that someone decides.

The key fields are not repeated in the values.  The database notes which
records changed (``MappingDB.take_changed_records``); :func:`save_changes`
writes them as one store commit, which is durable when it returns.
:func:`restore` rebuilds a fresh database from ``store.load()``.
"""

import numbers
import sys

from . import addresses as A
from .errors import MappingError
from .model import (ENCAPS, NVE, SERVICES, VN, Attachment, MappingDB,
                    PortBinding)

KINDS = ('vn', 'nve', 'att')

# Fields of the model's records: persisted, or deliberately not.
VN_FIELDS = ('name', 'service', 'encap', 'gateway_mac', 'gateway_ips',
             'origin', 'evpn', 'route_targets')
NVE_FIELDS = ('name', 'vtep_ip', 'origin', 'bindings')
NVE_NOT_KEPT = ('dyn_connected', 'dyn_ports', 'dyn_mac', 'dyn_down_since',
                'dyn_unreachable')
BINDING_FIELDS = ('vnid', 'vlans', 'origin')
ATT_FIELDS = ('nve', 'port', 'vlan', 'ips', 'seq', 'source', 'reachable',
              'first_seen', 'last_seen')
ATT_IF_SET = ('bid', 'moved_at', 'move_times', 'frozen_until', 'blocked')
ATT_NOT_KEPT = ('redirect_from', 'key')     # key: (vnid, mac), the record's


class RestoreError(Exception):
    """The stored records do not form a consistent database."""


def check_record(kind, key, value):
    """Raise ValueError unless ``value`` is a record the database can be
    restored from: every field there, of its type, and every address and
    name canonical (addresses.py, as every other entry)."""
    try:
        _CHECKS[kind](key, value)
    except KeyError as exc:
        raise ValueError('unknown kind' if kind not in _CHECKS
                         else 'missing field %s' % exc) from None
    except MappingError as exc:
        raise ValueError(exc.message) from None
    except (TypeError, AttributeError) as exc:
        raise ValueError('malformed: %s' % exc) from None


def _same(norm, value, *args):
    """``value`` as the database writes it (the normal form)."""
    if norm(value, *args) != value:
        raise ValueError('%r is not in canonical form' % (value,))
    return value


def _number(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError('%s must be a number, not %r' % (name, value))


def _text(value, name):
    if not isinstance(value, str):
        raise ValueError('%s must be a string, not %r' % (name, value))


def _check_vn(vnid, rec):
    _same(A.norm_vnid, vnid)
    _same(A.norm_name, rec['name'])
    A.norm_choice(rec['service'], SERVICES, 'service')
    A.norm_choice(rec['encap'], ENCAPS, 'encap')
    if rec['gateway_mac'] is not None:
        _same(A.norm_mac, rec['gateway_mac'], 'gateway.mac')
    if not isinstance(rec['gateway_ips'], list):
        raise ValueError('gateway_ips must be a list')
    _, ips = A.norm_gateway(None, rec['gateway_ips'])
    if list(ips) != rec['gateway_ips']:
        raise ValueError('gateway_ips %r are not in canonical form'
                         % (rec['gateway_ips'],))
    _text(rec['origin'], 'origin')
    if not isinstance(rec.get('evpn', False), bool):
        raise ValueError('evpn must be true or false')
    targets = rec.get('route_targets', [])
    if not isinstance(targets, list) or \
            list(A.norm_route_targets(targets)) != targets:
        raise ValueError('route_targets %r are not in canonical form'
                         % (targets,))


def _check_nve(dpid, rec):
    _same(A.norm_dpid, dpid)
    if rec['name'] is not None:
        _same(A.norm_name, rec['name'])
    if rec['vtep_ip'] is not None:
        _same(A.norm_ip, rec['vtep_ip'], 'vtep_ip')
    _text(rec['origin'], 'origin')
    if not isinstance(rec['bindings'], dict):
        raise ValueError('bindings must be a map')
    for port, binding in rec['bindings'].items():
        _same(A.norm_port_name, port)
        _text(binding['origin'], 'origin')
        if 'vnid' in binding:
            _same(A.norm_vnid, binding['vnid'])
            continue
        vlans = binding['vlans']
        if not isinstance(vlans, dict) or not vlans:
            raise ValueError('port %s: vlans must be a non-empty map' % port)
        for vlan, vnid in vlans.items():
            if str(A.norm_vlan(vlan)) != vlan:
                raise ValueError('port %s: VLAN %r' % (port, vlan))
            _same(A.norm_vnid, vnid)


def _check_att(key, rec):
    if not isinstance(key, tuple) or len(key) != 2:
        raise ValueError('an attachment key is (vnid, mac), not %r' % (key,))
    _same(A.norm_vnid, key[0])
    _same(A.norm_mac, key[1])
    _same(A.norm_dpid, rec['nve'], 'nve')
    _same(A.norm_port_name, rec['port'])
    if rec['vlan'] is not None:
        _same(A.norm_vlan, rec['vlan'])
    if not isinstance(rec['ips'], dict):
        raise ValueError('ips must be a map')
    for ip, bid in rec['ips'].items():
        _same(A.norm_ip, ip)
        if bid is not None:
            _same(A.norm_bid, bid)
    if rec.get('bid') is not None:
        _same(A.norm_bid, rec['bid'])
    if not isinstance(rec['seq'], int) or isinstance(rec['seq'], bool):
        raise ValueError('seq must be an integer')
    _text(rec['source'], 'source')
    if not isinstance(rec['reachable'], bool):
        raise ValueError('reachable must be true or false')
    for name in ('first_seen', 'last_seen', 'moved_at', 'frozen_until'):
        if name in rec:
            _number(rec[name], name)
    for when in rec.get('move_times', ()):
        _number(when, 'move_times')
    for entry in rec.get('blocked', ()):
        by_dpid, by_port, until = entry
        _same(A.norm_dpid, by_dpid)
        _text(by_port, 'blocked port')
        _number(until, 'blocked until')


_CHECKS = {'vn': _check_vn, 'nve': _check_nve, 'att': _check_att}


def _vn_record(vn):
    rec = {'name': vn.name, 'service': vn.service, 'encap': vn.encap,
           'gateway_mac': vn.gateway_mac,
           'gateway_ips': list(vn.gateway_ips), 'origin': vn.origin}
    # Written only when set: a VN without EVPN is stored as before.
    if vn.evpn:
        rec['evpn'] = True
    if vn.route_targets:
        rec['route_targets'] = list(vn.route_targets)
    return rec


def _binding_record(binding):
    if binding.vnid is not None:
        return {'vnid': binding.vnid, 'origin': binding.origin}
    return {'vlans': {str(vlan): vnid for vlan, vnid in
                      binding.vlans.items()},
            'origin': binding.origin}


def _nve_record(nve):
    return {'name': nve.name, 'vtep_ip': nve.vtep_ip, 'origin': nve.origin,
            'bindings': {port: _binding_record(b)
                         for port, b in nve.bindings.items()}}


def _att_record(att):
    rec = {'nve': att.nve, 'port': att.port, 'vlan': att.vlan,
           'ips': dict(att.ips), 'seq': att.seq, 'source': att.source,
           'reachable': att.reachable, 'first_seen': att.first_seen,
           'last_seen': att.last_seen}
    # Written only when set (most attachments never move nor register).
    if att.bid is not None:
        rec['bid'] = att.bid
    if att.moved_at:
        rec['moved_at'] = att.moved_at
    if att.move_times:
        rec['move_times'] = list(att.move_times)
    if att.frozen_until:
        rec['frozen_until'] = att.frozen_until
    if att.blocked:
        rec['blocked'] = [[dpid, port, until] for (dpid, port), until
                          in sorted(att.blocked.items())]
    return rec


def record_of(db, kind, key):
    """The persisted value of one record, or None if it no longer exists."""
    if kind == 'vn':
        vn = db.vns.get(key)
        return _vn_record(vn) if vn is not None else None
    if kind == 'nve':
        nve = db.nves.get(key)
        return _nve_record(nve) if nve is not None else None
    if kind == 'att':
        att = db.attachments.get(tuple(key))
        return _att_record(att) if att is not None and att.nve is not None \
            else None
    raise ValueError('unknown record kind %r' % (kind,))


def all_records(db):
    """Every record of ``db`` as ``{(kind, key): value}`` (as load() gives)."""
    out = {('vn', vnid): _vn_record(vn) for vnid, vn in db.vns.items()}
    out.update((('nve', dpid), _nve_record(nve))
               for dpid, nve in db.nves.items())
    out.update((('att', key), _att_record(att))
               for key, att in db.attachments.items() if att.nve is not None)
    return out


def save_changes(db, store):
    """Commit the records changed since the last call; return how many.

    If the store fails, the records are noted as changed again, so a later
    call retries them (nothing may be acknowledged meanwhile: the exception
    propagates to the caller).
    """
    changed = db.take_changed_records()
    if not changed:
        return 0
    order = {kind: i for i, kind in enumerate(KINDS)}
    keys = sorted(changed, key=lambda rec: (order[rec[0]], repr(rec[1])))
    changes = [(kind, key, record_of(db, kind, key)) for kind, key in keys]
    try:
        store.commit(changes)
    except BaseException:
        db.note_unsaved(changed)
        raise
    return len(changes)


def restore(db, records):
    """Rebuild a fresh ``db`` from ``{(kind, key): value}``.

    The records are built here and handed to ``MappingDB.restore``, which
    puts them in place without events and derives the indexes.  Afterwards
    nothing is marked as changed and everything is marked as touched, so
    the flow planner computes every flow.  Inconsistent records raise
    RestoreError.
    """
    if db.vns or db.nves or db.attachments:
        raise ValueError('restore needs an empty MappingDB')
    by_kind = {kind: {} for kind in KINDS}
    for (kind, key), value in records.items():
        if kind not in by_kind:
            raise RestoreError('unknown record kind %r (key %r)' % (kind, key))
        by_kind[kind][key] = value

    vns = {}
    for vnid, rec in by_kind['vn'].items():
        vns[vnid] = VN(vnid, rec['name'], rec['service'], rec['encap'],
                       rec['gateway_mac'], tuple(rec['gateway_ips']),
                       rec['origin'], rec.get('evpn', False),
                       tuple(rec.get('route_targets', ())))

    nves = {}
    for dpid, rec in by_kind['nve'].items():
        bindings = {}
        for port, b in rec['bindings'].items():
            if 'vnid' in b:
                binding = PortBinding(port, vnid=b['vnid'], origin=b['origin'])
            else:
                binding = PortBinding(port, vlans={
                    int(vlan): vnid for vlan, vnid in b['vlans'].items()},
                    origin=b['origin'])
            missing = binding.vnids() - set(vns)
            if missing:
                raise RestoreError('NVE %016x port %s is bound to missing VN '
                                   '%s' % (dpid, port, sorted(missing)[0]))
            bindings[port] = binding
        nves[dpid] = NVE(dpid, rec['name'], rec['vtep_ip'], rec['origin'],
                         bindings)

    owners = {}
    attachments = {}
    for key, rec in by_kind['att'].items():
        vnid, mac = key
        if vnid not in vns or rec['nve'] not in nves:
            raise RestoreError('attachment %s in VN %d at NVE %016x: VN or '
                               'NVE missing' % (mac, vnid, rec['nve']))
        dpid, port = MappingDB.location(nves[rec['nve']], rec['port'])
        extra = {}
        # Containers only where there is something in them: the model's
        # defaults are shared empties (model.Attachment).
        if rec['ips']:
            extra['ips'] = dict(rec['ips'])
        if rec.get('move_times'):
            extra['move_times'] = list(rec['move_times'])
        if rec.get('blocked'):
            extra['blocked'] = {(by_dpid, by_port): until
                                for by_dpid, by_port, until in rec['blocked']}
        att = Attachment(
            vnid, mac, dpid, port, rec['vlan'], seq=rec['seq'],
            source=sys.intern(rec['source']), reachable=rec['reachable'],
            first_seen=rec['first_seen'], last_seen=rec['last_seen'],
            moved_at=rec.get('moved_at', 0.0),
            frozen_until=rec.get('frozen_until', 0.0), bid=rec.get('bid'),
            **extra)
        for ip in att.ips:
            owner = owners.setdefault((vnid, ip), mac)
            if owner != mac:
                raise RestoreError('IP %s in VN %d belongs to both %s and %s'
                                   % (ip, vnid, owner, mac))
        # Keyed by the record's key tuple (from the store): the attachment
        # keeps that one rather than a copy.
        attachments[key] = att
    db.restore(vns, nves, attachments)
    return db
