"""The declarative configuration file: VNs, NVEs, access-port bindings.

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

Items loaded from the file carry ``origin: config`` in the REST view.  The
file is applied through the same validating database calls as REST, so a
bad file names the bad item and the app refuses to start.
"""

import yaml

from .commands import ApplyConfig
from .errors import MappingError


class ConfigError(Exception):
    """The configuration file cannot be read or names a bad item."""


def load(path):
    """Read the file at ``path``: the :class:`commands.ApplyConfig` that
    applies it.  Raises ConfigError when it cannot be read."""
    try:
        with open(path) as handle:
            doc = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError('cannot read %s: %s' % (path, exc)) from None
    if not isinstance(doc, dict):
        raise ConfigError('%s: top level must be a mapping' % path)
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
    its VNs and NVEs, each NVE's ports bound as its vNICs imply."""
    bindings = port_bindings(_topology_vnics(path, doc))
    nves = []
    for nve in doc.get('nves') or ():
        nves.append(dict(nve, ports=bindings.get(nve['name'], {})))
    return {'vns': doc.get('vns') or [], 'nves': nves}


def apply(db, doc, now=0.0, origin='config'):
    """Apply a loaded document; raises ConfigError naming the bad item."""
    for i, item in enumerate(doc.get('vns') or ()):
        where = 'vns[%d]' % i
        try:
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
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError('%s: missing or wrong field %s' % (where, exc))
        except MappingError as exc:
            raise ConfigError('%s: %s' % (where, exc.message)) from None
    for i, item in enumerate(doc.get('nves') or ()):
        where = 'nves[%d]' % i
        try:
            nve = db.register_nve(item['dpid'], item.get('vtep_ip'),
                                  item.get('name'), origin=origin, now=now)
            for port, binding in (item.get('ports') or {}).items():
                db.bind_port(nve.dpid, port, vnid=binding.get('vnid'),
                             vlans=binding.get('vlans'), origin=origin,
                             now=now)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError('%s: missing or wrong field %s' % (where, exc))
        except MappingError as exc:
            raise ConfigError('%s: %s' % (where, exc.message)) from None
