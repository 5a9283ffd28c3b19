"""Glue between the mapping database (model.py) and a record store.

Six kinds of records hold the authority's intent and mapping state; the
dynamic state learned from the switches (``NVE.dyn_*``) is never persisted.

``('vn', vnid)``
    ``{name, service, encap, gateway_mac, gateway_ips, origin}``, plus,
    only when set, ``evpn`` and ``route_targets`` (BGP EVPN; absent: off,
    derived)
``('nve', dpid)``
    ``{name, vtep_ip, origin, bindings, role}``, where ``bindings`` maps a
    port name to ``{'vnid': vnid, 'origin': ...}`` (whole port) or
    ``{'vlans': {'<vlan>': vnid, ...}, 'origin': ...}``; ``role`` is
    ``nve`` or ``gateway`` (a record without it, from before gateways, is
    an ``nve``); a binding has ``'base'`` (a binding of the same form) when
    it overrides the configuration file's binding
``('ic', name)``
    ``{gateway, vns: [vnid, vnid], allowed_macs: [...], router:
    {'<vnid>': [ip/len, mac]}, origin}``: an interconnect (draft 4.3)
``('ext', name)``
    ``{gateway, port, vnid, vlans: {'<vlan>': vnid}, allowed_macs, origin}``:
    an external network on a gateway port
``('meta', 'events')``
    ``{seq}``: the event log's last sequence number, written with every
    commit that follows new events, so numbering goes on after a restart;
    private to an instance (PRIVATE_KINDS: in a cluster each instance
    numbers its own events and keeps its own copy)
``('att', (vnid, mac))``
    ``{nve, port, vlan, ips: {ip: bid}, seq, source, reachable,
    first_seen, last_seen}``: one attachment, i.e. the mapping table entries
    of one tenant-system vNIC and its location sequence number; plus, only
    when set, the L2 binding's ``bid`` (registration) and the mobility
    decisions ``moved_at``, ``move_times``, ``frozen_until`` and
    ``blocked`` (``[[dpid, port, until], ...]``), and an announced
    ``migration`` under way (``{nve, port, vlan, started, deadline}``: a
    restart keeps it, with its deadline; its arrival, if it was being
    checked, is awaited again).  ``redirect_from`` is not
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
from .model import (ENCAPS, NVE, ROLES, SERVICES, VN, Attachment, External,
                    Interconnect, MappingDB, Migration, Mobility,
                    PortBinding)

KINDS = ('vn', 'nve', 'ic', 'ext', 'att', 'meta')
PRIVATE_KINDS = ('meta',)

# Fields of the model's records: persisted, or deliberately not.
VN_FIELDS = ('name', 'service', 'encap', 'gateway_mac', 'gateway_ips',
             'origin', 'evpn', 'route_targets')
NVE_FIELDS = ('name', 'vtep_ip', 'origin', 'bindings', 'role')
IC_FIELDS = ('gateway', 'vns', 'allowed_macs', 'router', 'origin')
EXT_FIELDS = ('gateway', 'port', 'vnid', 'vlans', 'allowed_macs', 'origin')
NVE_NOT_KEPT = ('dyn_connected', 'dyn_ports', 'dyn_mac', 'dyn_down_since',
                'dyn_unreachable')
BINDING_FIELDS = ('vnid', 'vlans', 'origin', 'base')
ATT_FIELDS = ('nve', 'port', 'vlan', 'ips', 'seq', 'source', 'reachable',
              'first_seen', 'last_seen')
ATT_NOT_KEPT = ('key',)     # (vnid, mac), the record's
ATT_MOBILITY = ('mobility',)    # its fields, the attachment's record's:
MOBILITY_IF_SET = ('moved_at', 'move_times', 'frozen_until', 'blocked',
                   'migration')
MOBILITY_NOT_KEPT = ('redirect_from',)
ATT_REGISTRATION = ('registration',)    # its fields, the record's:
REGISTRATION_IF_SET = ('bid',)
REGISTRATION_IN_IPS = ('ip_bids',)   # kept in 'ips' (ip -> BID or None)


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
    A.norm_choice(rec.get('role', 'nve'), ROLES, 'role')
    if not isinstance(rec['bindings'], dict):
        raise ValueError('bindings must be a map')
    for port, binding in rec['bindings'].items():
        _same(A.norm_port_name, port)
        _check_binding(port, binding)
        if binding.get('base') is not None:
            _check_binding(port, binding['base'])


def _check_binding(port, binding):
    _text(binding['origin'], 'origin')
    if 'vnid' in binding:
        _same(A.norm_vnid, binding['vnid'])
        return
    vlans = binding['vlans']
    if not isinstance(vlans, dict) or not vlans:
        raise ValueError('port %s: vlans must be a non-empty map' % port)
    for vlan, vnid in vlans.items():
        if str(A.norm_vlan(vlan)) != vlan:
            raise ValueError('port %s: VLAN %r' % (port, vlan))
        _same(A.norm_vnid, vnid)


def _check_meta(key, rec):
    if key != 'events':
        raise ValueError('unknown meta record %r' % (key,))
    if not isinstance(rec['seq'], int) or isinstance(rec['seq'], bool) \
            or rec['seq'] < 0:
        raise ValueError('seq must be a natural number')


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
    if 'migration' in rec:
        mig = rec['migration']
        _same(A.norm_dpid, mig['nve'], 'nve')
        _same(A.norm_port_name, mig['port'])
        if mig['vlan'] is not None:
            _same(A.norm_vlan, mig['vlan'])
        _number(mig['started'], 'migration started')
        _number(mig['deadline'], 'migration deadline')


def _check_macs(macs):
    if not isinstance(macs, list) or sorted(set(macs)) != macs:
        raise ValueError('allowed_macs must be a sorted list')
    for mac in macs:
        _same(A.norm_mac, mac)


def _check_ic(name, rec):
    _same(A.norm_name, name)
    _same(A.norm_dpid, rec['gateway'], 'gateway')
    vns = rec['vns']
    if not isinstance(vns, list) or len(vns) != 2 or vns[0] == vns[1]:
        raise ValueError('vns must be two VNIDs')
    for vnid in vns:
        _same(A.norm_vnid, vnid)
    _check_macs(rec['allowed_macs'])
    if not isinstance(rec['router'], dict):
        raise ValueError('router must be a map')
    for vnid, (iface, mac) in rec['router'].items():
        if str(A.norm_vnid(vnid)) != vnid:
            raise ValueError('router VNID %r' % (vnid,))
        if A.norm_gateway(mac, [iface]) != (mac, (iface,)):
            raise ValueError('router %r is not in canonical form'
                             % ([iface, mac],))
    _text(rec['origin'], 'origin')


def _check_ext(name, rec):
    _same(A.norm_name, name)
    _same(A.norm_dpid, rec['gateway'], 'gateway')
    _same(A.norm_port_name, rec['port'])
    if (rec['vnid'] is None) == (not rec['vlans']):
        raise ValueError('an external has a vnid or vlans')
    if rec['vnid'] is not None:
        _same(A.norm_vnid, rec['vnid'])
    if not isinstance(rec['vlans'], dict):
        raise ValueError('vlans must be a map')
    for vlan, vnid in rec['vlans'].items():
        if str(A.norm_vlan(vlan)) != vlan:
            raise ValueError('VLAN %r' % (vlan,))
        _same(A.norm_vnid, vnid)
    _check_macs(rec['allowed_macs'])
    _text(rec['origin'], 'origin')


_CHECKS = {'vn': _check_vn, 'nve': _check_nve, 'att': _check_att,
           'ic': _check_ic, 'ext': _check_ext, 'meta': _check_meta}


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
        rec = {'vnid': binding.vnid, 'origin': binding.origin}
    else:
        rec = {'vlans': {str(vlan): vnid for vlan, vnid in
                         binding.vlans.items()},
               'origin': binding.origin}
    if binding.base is not None:
        rec['base'] = _binding_record(binding.base)
    return rec


def _nve_record(nve):
    return {'name': nve.name, 'vtep_ip': nve.vtep_ip, 'origin': nve.origin,
            'bindings': {port: _binding_record(b)
                         for port, b in nve.bindings.items()},
            'role': nve.role}


def _ic_record(ic):
    return {'gateway': ic.gateway, 'vns': list(ic.vns),
            'allowed_macs': list(ic.allowed_macs),
            'router': {str(vnid): [iface, mac] for vnid, (iface, mac)
                       in ic.router.items()},
            'origin': ic.origin}


def _ext_record(ext):
    return {'gateway': ext.gateway, 'port': ext.port, 'vnid': ext.vnid,
            'vlans': {str(vlan): vnid for vlan, vnid in ext.vlans.items()},
            'allowed_macs': list(ext.allowed_macs), 'origin': ext.origin}


_RECORDS = {'ic': ('interconnects', _ic_record),
            'ext': ('externals', _ext_record)}


def _att_record(att):
    rec = {'nve': att.nve, 'port': att.port, 'vlan': att.vlan,
           'ips': att.addresses(), 'seq': att.seq, 'source': att.source,
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
    mig = att.migration
    if mig is not None:
        rec['migration'] = {'nve': mig.nve, 'port': mig.port,
                            'vlan': mig.vlan, 'started': mig.started,
                            'deadline': mig.deadline}
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
        # Entries imported from EVPN are not ours to keep: the peers
        # tell them again (evpn.py).
        return _att_record(att) if att is not None and att.nve is not None \
            else None
    if kind == 'meta':
        return {'seq': db.event_log.seq}
    if kind in _RECORDS:
        attr, make = _RECORDS[kind]
        item = getattr(db, attr).get(key)
        return make(item) if item is not None else None
    raise ValueError('unknown record kind %r' % (kind,))


def all_records(db):
    """Every record of ``db`` as ``{(kind, key): value}`` (as load() gives)."""
    out = {('vn', vnid): _vn_record(vn) for vnid, vn in db.vns.items()}
    out.update((('nve', dpid), _nve_record(nve))
               for dpid, nve in db.nves.items())
    out.update((('att', key), _att_record(att))
               for key, att in db.attachments.items() if att.nve is not None)
    for kind, (attr, make) in _RECORDS.items():
        out.update(((kind, name), make(item))
                   for name, item in getattr(db, attr).items())
    return out


def save_changes(db, store, event_seq=False):
    """Commit the records changed since the last call (with ``event_seq``,
    and the event sequence number when events happened: the authority
    does); return how many records of the database were written.

    If the store fails, the records are noted as changed again, so a later
    call retries them (nothing may be acknowledged meanwhile: the exception
    propagates to the caller).
    """
    changed = db.take_changed_records()
    if event_seq and db.event_log.seq != db.saved_event_seq:
        changed.add(('meta', 'events'))
    if not changed:
        return 0
    order = {kind: i for i, kind in enumerate(KINDS)}
    keys = sorted(changed, key=lambda rec: (order[rec[0]], repr(rec[1])))
    changes = [(kind, key, record_of(db, kind, key)) for kind, key in keys]
    try:
        store.commit(changes)
    except BaseException:
        changed.discard(('meta', 'events'))
        db.note_unsaved(changed)
        raise
    if event_seq:
        db.saved_event_seq = db.event_log.seq
    # The database's records (the event number rides along).
    return len(changes) - (('meta', 'events') in changed)


def _vn_from(vnid, rec):
    return VN(vnid, rec['name'], rec['service'], rec['encap'],
              rec['gateway_mac'], tuple(rec['gateway_ips']), rec['origin'],
              rec.get('evpn', False), tuple(rec.get('route_targets', ())))


def _nve_from(dpid, rec, vns):
    bindings = {}
    for port, b in rec['bindings'].items():
        binding = _binding(port, b)
        if b.get('base') is not None:
            binding.base = _binding(port, b['base'])
            if binding.base.vnids() - set(vns):
                raise RestoreError('NVE %016x port %s: the configuration'
                                   ' binding under it names a missing VN'
                                   % (dpid, port))
        missing = binding.vnids() - set(vns)
        if missing:
            raise RestoreError('NVE %016x port %s is bound to missing VN '
                               '%s' % (dpid, port, sorted(missing)[0]))
        bindings[port] = binding
    return NVE(dpid, rec['name'], rec['vtep_ip'], rec['origin'], bindings,
               role=rec.get('role', 'nve'))


def _att_from(key, rec, nves):
    vnid, mac = key
    dpid, port = MappingDB.location(nves[rec['nve']], rec['port'])
    extra = {}
    # Containers only where there is something in them: the model's
    # defaults are shared empties (model.Attachment).
    if rec['ips']:
        extra['ips'] = tuple(sorted(rec['ips']))
        bids = {ip: bid for ip, bid in rec['ips'].items() if bid is not None}
        if bids:
            extra['ip_bids'] = bids
    mobility = {name: rec[name] for name in ('moved_at', 'frozen_until')
                if rec.get(name)}
    if rec.get('move_times'):
        mobility['move_times'] = list(rec['move_times'])
    if rec.get('blocked'):
        mobility['blocked'] = {(by_dpid, by_port): until
                               for by_dpid, by_port, until in rec['blocked']}
    if mobility:
        extra['mobility'] = Mobility(**mobility)
    mig = rec.get('migration')
    if mig is not None:
        if mig['nve'] not in nves:
            raise RestoreError('attachment %s in VN %d migrates to missing '
                               'NVE %016x' % (mac, vnid, mig['nve']))
        extra['migration'] = Migration(
            mig['nve'], sys.intern(mig['port']), mig['vlan'],
            mig['started'], mig['deadline'])
    return Attachment(
        vnid, mac, dpid, port, rec['vlan'], seq=rec['seq'],
        source=sys.intern(rec['source']), reachable=rec['reachable'],
        first_seen=rec['first_seen'], last_seen=rec['last_seen'],
        bid=rec.get('bid'), **extra)


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

    vns = {vnid: _vn_from(vnid, rec) for vnid, rec in by_kind['vn'].items()}
    nves = {dpid: _nve_from(dpid, rec, vns)
            for dpid, rec in by_kind['nve'].items()}
    ics = {}
    for name, rec in by_kind['ic'].items():
        vns_ = tuple(rec['vns'])
        if rec['gateway'] not in nves or not set(vns_) <= set(vns):
            raise RestoreError('interconnect %s: gateway or VN missing'
                               % name)
        ics[name] = Interconnect(
            name, rec['gateway'], vns_, tuple(rec['allowed_macs']),
            {int(vnid): tuple(router) for vnid, router
             in rec['router'].items()}, rec['origin'])
    exts = {}
    for name, rec in by_kind['ext'].items():
        vlans = {int(vlan): vnid for vlan, vnid in rec['vlans'].items()}
        wanted = set(vlans.values()) | ({rec['vnid']} if rec['vnid']
                                        is not None else set())
        if rec['gateway'] not in nves or not wanted <= set(vns):
            raise RestoreError('external network %s: gateway or VN missing'
                               % name)
        exts[name] = External(name, rec['gateway'], rec['port'], rec['vnid'],
                              vlans, tuple(rec['allowed_macs']),
                              rec['origin'])

    owners = {}
    attachments = {}
    for key, rec in by_kind['att'].items():
        vnid, mac = key
        if vnid not in vns or rec['nve'] not in nves:
            raise RestoreError('attachment %s in VN %d at NVE %016x: VN or '
                               'NVE missing' % (mac, vnid, rec['nve']))
        att = _att_from(key, rec, nves)
        for ip in att.ips:
            owner = owners.setdefault((vnid, ip), mac)
            if owner != mac:
                raise RestoreError('IP %s in VN %d belongs to both %s and %s'
                                   % (ip, vnid, owner, mac))
        attachments[key] = att
    db.restore(vns, nves, attachments, ics, exts)
    meta = by_kind['meta'].get('events')
    if meta is not None:
        db.event_log.seq = max(db.event_log.seq, meta['seq'])
    db.saved_event_seq = db.event_log.seq
    return db


def _binding(port, rec):
    if 'vnid' in rec:
        return PortBinding(port, vnid=rec['vnid'], origin=rec['origin'])
    return PortBinding(port, vlans={int(vlan): vnid for vlan, vnid
                                    in rec['vlans'].items()},
                       origin=rec['origin'])


# --- replication: records another instance wrote -----------------------------
#
# In a cluster (storage/etcd.py) every instance keeps a live copy of the
# database: the records the others write arrive as changes, and apply()
# puts them in place through the model's replication primitives (no events,
# nothing written again, the touched set for the planner), in an order that
# keeps references whole: puts from the first kind to the last, deletes the
# other way round.  A kind with no primitive here (a kind restore() was
# taught and this table was not) is applied by rebuilding the database from
# its records, as a restart would: correct for any kind, and slower.

def _put_vn(db, vnid, rec, now):
    db.put_vn_record(_vn_from(vnid, rec))
    return True


def _put_nve(db, dpid, rec, now):
    db.put_nve_record(_nve_from(dpid, rec, db.vns), now)
    return True


def _put_att(db, key, rec, now):
    if rec['nve'] not in db.nves or key[0] not in db.vns:
        return False
    return db.put_attachment_record(_att_from(key, rec, db.nves), now)


APPLIERS = {
    'vn': (_put_vn, lambda db, vnid, now: db.drop_vn_record(vnid, now)),
    'nve': (_put_nve, lambda db, dpid, now: db.drop_nve_record(dpid, now)),
    'att': (_put_att,
            lambda db, key, now: db.drop_attachment_record(key, now)),
    # Each instance numbers its own events: another's count is not ours.
    'meta': (lambda db, key, rec, now: True, lambda db, key, now: None),
}


def apply(db, changes, now=0.0, rebuild=False):
    """Put ``changes`` (``{(kind, key): value or None}``, written by another
    instance, or what etcd holds after a refused write of ours) in place in
    ``db``.  Returns the records left out, ``{(kind, key): reason}``:
    records that refer to something this copy does not hold (a tenant
    system of a VN deleted meanwhile).  ``rebuild`` forces the generic
    path (tests)."""
    if not changes:
        return {}
    order = {kind: i for i, kind in enumerate(KINDS)}
    if rebuild or any(kind not in APPLIERS for kind, _ in changes):
        return _apply_by_rebuild(db, changes, now)
    skipped = {}
    puts = sorted(((sk, v) for sk, v in changes.items() if v is not None),
                  key=lambda item: order.get(item[0][0], len(order)))
    drops = sorted((sk for sk, v in changes.items() if v is None),
                   key=lambda sk: -order.get(sk[0], len(order)))
    for (kind, key), value in puts:
        try:
            check_record(kind, key, value)
            if not APPLIERS[kind][0](db, key, value, now):
                skipped[(kind, key)] = 'its VN or NVE is not here'
        except (ValueError, RestoreError) as exc:
            skipped[(kind, key)] = str(exc)
    for kind, key in drops:
        APPLIERS[kind][1](db, key, now)
    return skipped


def _apply_by_rebuild(db, changes, now):
    records = all_records(db)
    for sk, value in changes.items():
        if value is None:
            records.pop(sk, None)
        else:
            records[sk] = value
    fresh = MappingDB(db.event_log)
    try:
        restore(fresh, records)
    except (RestoreError, KeyError, TypeError, ValueError) as exc:
        return {sk: 'not applied: %s' % exc for sk in changes}
    db.adopt(fresh, now)
    return {}
