"""The declarative configuration file: VNs, NVEs, access-port bindings,
interconnects and external networks (draft 4.3).

Format (YAML; a topology file of topologies/ is accepted as is, its
tenant systems then give the port bindings)::

    vns:
      - {vnid: 5001, name: blue, service: l2, encap: vxlan}
      - {vnid: 6001, name: red, service: l3, encap: vxlan,
         gateway: {mac: "02:00:00:00:fe:01", ips: ["192.168.10.1/24"]}}
      - {vnid: 7001, name: green, evpn: true,        # shared over BGP EVPN
         route_targets: ["65001:7001"]}              # optional (derived)
    nves:
      - name: hv1
        dpid: "0000000000000001"
        vtep_ip: 10.99.0.1
        ports:
          tap1: {vnid: 5001}
          trunk0: {vlans: {10: 5001, 20: 6001}}
      - {name: gw1, dpid: "00000000000000ff", vtep_ip: 10.99.0.254,
         role: gateway}
    interconnects:
      - {name: blue-red, gateway: "00000000000000ff", vns: [5001, 6001],
         router: {5001: {ip: 192.168.50.254/24, mac: "02:00:00:00:fe:50"}}}
    externals:
      - {name: lab, gateway: "00000000000000ff", port: ext0,
         vlans: {100: 5001}, allowed_macs: ["02:00:00:00:e1:01"]}

A topology file names gateways and VNs by name (``gateway: gw1``,
``vns: [VN1, VN3]``) and lists the external network's hosts (for the
testbed); both are accepted here.

Items loaded from the file carry ``origin: config`` in the REST view.  The
file is applied through the same validating database calls as REST, so a
bad file names the bad item and the app refuses to start.
"""

import contextlib
import os

import yaml

from . import interconnect
from .commands import ApplyConfig
from .errors import MappingError


class ConfigError(Exception):
    """The configuration file cannot be read or names a bad item."""


EXTENDED = ('vns', 'nves', 'tenant_systems', 'interconnects', 'externals')


def read_document(path, _seen=()):
    """The YAML mapping at ``path``.  A document with ``extends: <file>``
    (relative to its own directory) is that file's document with this
    one's lists (``EXTENDED``) appended and its other keys replaced: a
    topology that adds a gateway to another one repeats nothing."""
    try:
        with open(path) as handle:
            doc = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError('cannot read %s: %s' % (path, exc)) from None
    if not isinstance(doc, dict):
        raise ConfigError('%s: top level must be a mapping' % path)
    base = doc.pop('extends', None)
    if base is None:
        return doc
    if not isinstance(base, str):
        raise ConfigError('%s: extends must name a file' % path)
    full = os.path.join(os.path.dirname(os.path.abspath(path)), base)
    if os.path.abspath(full) in _seen:
        raise ConfigError('%s: extends %s in a loop' % (path, base))
    out = read_document(full, _seen + (os.path.abspath(path),))
    for key, value in doc.items():
        if key in EXTENDED and isinstance(value, list) and \
                isinstance(out.get(key), list):
            out[key] = out[key] + value
        else:
            out[key] = value
    return out


def load(path):
    """Read the file at ``path``: the :class:`commands.ApplyConfig` that
    applies it.  Raises ConfigError when it cannot be read."""
    doc = read_document(path)
    if doc.get('tenant_systems'):
        doc = _from_topology(path, doc)
    return ApplyConfig(doc)


def access_port(vm, index, port=None):
    """The NVE-side access port of vNIC ``index`` (0-based) of VM ``vm`` in
    a topology file: ``<vm>-<index>``, unless the file names it (``port``).
    The testbed names the veths it builds the same way."""
    return port if port is not None else '%s-%d' % (vm, index)


def port_bindings(vnics):
    """``{nve: {port: {'vnid': N} | {'vlans': {vlan: vnid}}}}`` of vNICs
    given as ``(nve, port, vnid, vlan or None)``: a port of an untagged vNIC
    is bound to its VN as a whole, a port of tagged ones VLAN by VLAN."""
    out = {}
    for nve, port, vnid, vlan in vnics:
        ports = out.setdefault(nve, {})
        if vlan is None:
            ports[port] = {'vnid': vnid}
        else:
            ports.setdefault(port, {'vlans': {}})['vlans'][vlan] = vnid
    return out


def _topology_vnics(path, doc):
    """``(nve, port, vnid, vlan)`` of every vNIC of a topology file's
    tenant systems (a vNIC names its VN by name or VNID)."""
    vnids = {}
    for vn in doc.get('vns') or ():
        if isinstance(vn, dict):
            vnids[vn.get('name')] = vnids[vn.get('vnid')] = vn.get('vnid')
    out = []
    for t, system in enumerate(doc.get('tenant_systems') or ()):
        where = 'tenant_systems[%d]' % t
        try:
            for m, vm in enumerate(system['vms']):
                for i, vnic in enumerate(vm['vnics']):
                    vnid = vnids.get(vnic['vn'])
                    if vnid is None:
                        raise ConfigError('%s: %s.vms[%d].vnics[%d].vn: '
                                          'unknown VN %r' % (
                                              path, where, m, i, vnic['vn']))
                    out.append((system['nve'],
                                access_port(vm['name'], i, vnic.get('port')),
                                vnid, vnic.get('vlan')))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError('%s: %s: missing or wrong field %s' % (
                path, where, exc)) from None
    return out


def _from_topology(path, doc):
    """A topology file (topologies/, testbed/topology.py) as a document:
    its VNs and NVEs, each NVE's ports bound as its vNICs imply, its
    interconnects and external networks (their hosts are the testbed's)."""
    bindings = port_bindings(_topology_vnics(path, doc))
    nves = []
    for nve in doc.get('nves') or ():
        nves.append(dict(nve, ports=bindings.get(nve['name'], {})))
    externals = [{k: v for k, v in item.items() if k != 'hosts'}
                 if isinstance(item, dict) else item
                 for item in doc.get('externals') or ()]
    return {'vns': doc.get('vns') or [], 'nves': nves,
            'interconnects': doc.get('interconnects') or [],
            'externals': externals}


def _names(doc):
    """Names a document may use for NVEs and VNs: ``{name: dpid}`` and
    ``{name: vnid}``."""
    nves = {n.get('name'): n.get('dpid') for n in doc.get('nves') or ()
            if isinstance(n, dict) and n.get('name') is not None}
    vns = {v.get('name'): v.get('vnid') for v in doc.get('vns') or ()
           if isinstance(v, dict) and v.get('name') is not None}
    return nves, vns


def _vnid(vns, ref):
    return vns.get(ref, ref) if isinstance(ref, str) else ref


@contextlib.contextmanager
def _item(where):
    """Errors in the item at ``where`` (``vns[2]``) as a ConfigError that
    names it."""
    try:
        yield
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError('%s: missing or wrong field %s' % (where, exc)) \
            from None
    except MappingError as exc:
        raise ConfigError('%s: %s' % (where, exc.message)) from None


def apply(db, doc, now=0.0, origin='config'):
    """Apply a loaded document; raises ConfigError naming the bad item."""
    for i, item in enumerate(doc.get('vns') or ()):
        with _item('vns[%d]' % i):
            gw = item.get('gateway') or {}
            evpn = dict(evpn=item.get('evpn', False),
                        route_targets=item.get('route_targets') or ())
            if item['vnid'] in db.vns:
                db.update_vn(item['vnid'], now=now, origin=origin,
                             name=item['name'],
                             service=item.get('service', 'l2'),
                             encap=item.get('encap', 'vxlan'),
                             gateway_mac=gw.get('mac'),
                             gateway_ips=gw.get('ips') or (), **evpn)
            else:
                db.create_vn(item['vnid'], item['name'],
                             item.get('service', 'l2'),
                             item.get('encap', 'vxlan'), gw.get('mac'),
                             gw.get('ips') or (), origin=origin, now=now,
                             **evpn)
    for i, item in enumerate(doc.get('nves') or ()):
        with _item('nves[%d]' % i):
            nve = db.register_nve(item['dpid'], item.get('vtep_ip'),
                                  item.get('name'), origin=origin, now=now,
                                  role=item.get('role'))
            for port, binding in (item.get('ports') or {}).items():
                db.bind_port(nve.dpid, port, vnid=binding.get('vnid'),
                             vlans=binding.get('vlans'), origin=origin,
                             now=now)
    _apply_gateways(db, doc, now, origin)


def _apply_gateways(db, doc, now, origin):
    """The document's interconnects and external networks, after its VNs
    and NVEs (they name them)."""
    nves, vns = _names(doc)
    for i, item in enumerate(doc.get('interconnects') or ()):
        with _item('interconnects[%d]' % i):
            router = {_vnid(vns, k): v for k, v in
                      (item.get('router') or {}).items()} or None
            interconnect.put_interconnect(
                db, item['name'], nves.get(item['gateway'], item['gateway']),
                [_vnid(vns, v) for v in item['vns']],
                item.get('allowed_macs'), router, origin=origin, now=now)
    for i, item in enumerate(doc.get('externals') or ()):
        with _item('externals[%d]' % i):
            vlans = item.get('vlans')
            if vlans is not None:
                vlans = {k: _vnid(vns, v) for k, v in vlans.items()}
            vnid = item.get('vnid', item.get('vn'))
            interconnect.put_external(
                db, item['name'], nves.get(item['gateway'], item['gateway']),
                item['port'], _vnid(vns, vnid) if vnid is not None else None,
                vlans, item.get('allowed_macs'), origin=origin, now=now)
