"""Tenant-system registration and binding identifiers (draft 4.1, 4.2, 6.1).

A hypervisor agent registers what it knows about a vNIC instead of waiting
for its packets (docs/contracts.md, registration).  Each VN a vNIC reaches is one *binding*, and
the *binding cache* of a vNIC MAC is the list of them:

* L3 service (Figure 3): ``[MAC, IP, BID]``, one per IP address; the NVE
  picks the VN of a frame by its source IP (IPv4 source, ARP sender, IPv6
  source), so one untagged vNIC can be in several VNs on one access port.
* L2 service (Figure 4): ``[MAC, VLAN ID, BID]``, one per VN; the VLAN picks
  the VN (the access port carries VLAN V for VN X, see model.PortBinding).

The BID rules (draft 4.2, 6.1), which :func:`associate` enforces:

1. A vNIC with one binding needs no BID (it may have one).
2. Once it has several bindings, every binding has a BID: a second binding
   is refused while an existing one has none (re-register that one with a
   BID first).
3. The first registration of a BID carries its IP (L3) or VLAN (L2).
4. Later re-registrations and de-registrations carry only the BID; a
   re-registration that names another IP, VLAN or VN than the BID's is
   refused.
5. A BID is unique for a vNIC MAC (across all its VNs), an IP belongs to one
   binding of the vNIC, and a VN holds one L2 binding of the vNIC.

A vNIC is at one place: all its registered bindings share one (NVE, access
port); registering at another one moves them all (the VM moved, draft 7.5),
while a de-registration from the old place is refused.  Registered entries
take precedence over learned ones: a learned attachment of the same
(VN, MAC) is taken over, a learned owner of a registered IP loses it, and
packet-ins never move a registered entry or add a VN to a registered vNIC
(model.MappingDB.learn, Authority.packet_in).

Addresses and anti-spoofing (model.MappingDB.learns_addresses):

* an L3 binding's address is the binding: the vNIC's frames from any other
  source address are dropped and counted
  (``nvo3_packet_ins_dropped_total{reason="unknown_source_ip"}``), and
  packets add no address to it;
* an L2 binding names no address (docs/contracts.md, registration lets it be registered with
  its VLAN, a BID and no IP): the addresses the vNIC's frames show (ARP
  sender, IPv4 and IPv6 source) are learned into its mapping entry as for a
  learned tenant system, and shown in ``/mappings`` with the entry's BID and
  ``source: registered``; an ``ip`` given at registration is one of them,
  known before the first frame.  Anti-spoofing is the learned one: an
  address another tenant system of the VN (or the VN gateway) owns is
  refused (the frame is dropped and counted as ``refused``, a ``conflict``
  event names both MACs), as is any source the address-admission flows do
  not know until the authority has learned it (docs/pipeline.md, table 1).
  Learned addresses stay until the binding is de-registered (they do not
  age out: the entry is registered).

Port bindings are the operator's (REST, the configuration file): a
registration never binds a port.  An L2 binding (or an L3 one over a VLAN)
needs its VLAN mapped to its VN on the access port (an untagged L2 one,
the port bound to its VN as a whole); an L3 binding reached untagged needs
the port bound (to any VN): flows.py then classifies its frames by source
IP (table 0, ``PRIO_ACCESS_BID``).  A registration on a port (or VLAN)
nobody bound is refused (``not-found``, naming ``port`` or ``vlan``).

Taking over a live location: a registration may move a vNIC (all its
registered bindings) or take an address from a learned vNIC.  When what it
would take is live somewhere else (its NVE connected, its port up), the
authority first probes it there (mobility.Verification, law 4): plan with
:func:`plan_associate`, ask :func:`live_targets`, and carry it out with
:func:`apply_plan` only after the probes went unanswered.
:func:`associate` plans and applies at once (no switch to probe: the
database's own tests and tools).

Everything here is plain Python on a :class:`model.MappingDB`: each
operation validates completely before it changes anything, so a refused
call (errors.py: ``BadRequest``, ``NotFound`` or ``Conflict``, naming the
field) leaves the database as it was.
"""

from dataclasses import dataclass

from . import addresses as A
from . import events as ev
from .addresses import dpid_str, norm_bid
from .errors import BadRequest, Conflict, NotFound
from .mobility import probe_address

REGISTERED = 'registered'   # Attachment.source of registered entries
HOW = 'registered'          # the "how" of attach/move events


@dataclass(frozen=True)
class Binding:
    """One binding cache entry of a vNIC (draft Figures 3 and 4)."""

    mac: str
    vnid: int
    service: str      # 'l3': keyed by ``ip``; 'l2': keyed by ``vlan``
    ip: str           # L3: the bound address; L2: None
    vlan: int         # the access VLAN (None: untagged)
    bid: int          # None while the vNIC has this one binding only
    nve: int
    port: str

    def to_dict(self):
        """The binding as the registration RPC returns it."""
        return {'mac': self.mac, 'vnid': self.vnid, 'service': self.service,
                'ip': self.ip, 'vlan': self.vlan, 'bid': self.bid,
                'nve': dpid_str(self.nve), 'port': self.port}

    def describe(self):
        """The binding in words, for refusals ("IP x in VN n (BID b)")."""
        what = ('IP %s' % self.ip if self.service == 'l3'
                else 'VLAN %s' % (self.vlan if self.vlan is not None
                                  else 'untagged'))
        bid = 'BID %d' % self.bid if self.bid is not None else 'no BID'
        return '%s in VN %d (%s)' % (what, self.vnid, bid)


# --- the binding cache -------------------------------------------------------

def registered_attachments(db, mac):
    """The registered attachments of vNIC ``mac``, one per VN, by VNID."""
    out = []
    for vnid in sorted(db.vns):
        att = db.attachments.get((vnid, mac))
        if att is not None and att.source == REGISTERED:
            out.append(att)
    return out


def binding_cache(db, mac):
    """The binding cache of vNIC ``mac``: a list of :class:`Binding`."""
    out = []
    for att in registered_attachments(db, mac):
        service = db.vns[att.vnid].service
        if service == 'l3' and att.ips:
            out.extend(Binding(att.mac, att.vnid, 'l3', ip, att.vlan, bid,
                               att.nve, att.port)
                       for ip, bid in att.addresses().items())
        else:
            out.append(Binding(att.mac, att.vnid, service, None, att.vlan,
                               att.bid, att.nve, att.port))
    return out


# --- associate ---------------------------------------------------------------

class Plan:
    """What an accepted associate will do (filled by the checks)."""

    def __init__(self, vn, dpid, port, mac):
        self.vn, self.dpid, self.port, self.mac = vn, dpid, port, mac
        self.action = None        # registered | re-registered | bid-assigned
        self.att = None           # the target attachment, if it exists
        self.vlan = None          # the target attachment's VLAN
        self.ip = None            # IP to add/update (with bid)
        self.bid = None
        self.take_ip_from = None  # a learned attachment losing the IP
        self.moves = []           # registered attachments moving here


def associate(db, nve, port, mac, vnid, ip=None, vlan=None, bid=None,
              now=0.0):
    """Register a vNIC binding (docs/contracts.md, registration, draft
    6.1) at once, whatever it takes over; returns a summary.

    ``ip`` and ``vlan`` name the binding on its first registration (L3 and
    L2 service); later calls may carry only ``bid``.  The authority probes
    live locations first (module docstring).
    """
    return apply_plan(db, plan_associate(db, nve, port, mac, vnid, ip=ip,
                                         vlan=vlan, bid=bid), now)


def plan_associate(db, nve, port, mac, vnid, ip=None, vlan=None, bid=None):
    """Every check of a registration, nothing changed: the :class:`Plan`
    :func:`apply_plan` carries out (or the refusal)."""
    dpid = _known_nve(db, nve)
    port = A.norm_port_name(port, 'port')
    mac = A.norm_mac(mac)
    vn = _known_vn(db, vnid)
    ip = A.norm_ip(ip) if ip is not None else None
    vlan = A.norm_vlan(vlan) if vlan is not None else None
    bid = norm_bid(bid) if bid is not None else None

    cache = binding_cache(db, mac)
    plan = Plan(vn, dpid, port, mac)
    plan.bid = bid
    if vn.service == 'l3':
        _check_l3(db, vn, mac, ip, vlan, bid, cache, plan)
    else:
        _check_l2(db, vn, mac, ip, vlan, bid, cache, plan)
    if plan.ip is not None:
        _check_ip_free(db, vn, mac, plan.ip, cache, plan)
    _check_location(db, vn, dpid, port, mac, plan)
    return plan


def live_targets(db, plan, live):
    """What the registration would take away from a location ``live(att)``
    says may still answer: ``[(att, ip to probe or None, reason)]``, one
    per attachment (reason ``old-location-live``: the vNIC moves here;
    ``ip-owner-live``: another vNIC loses the address)."""
    out, seen = [], set()

    def add(att, ip, reason):
        if att.key not in seen and live(att):
            seen.add(att.key)
            out.append((att, ip, reason))
    target = db.attachments.get((plan.vn.vnid, plan.mac))
    if target is not None and (target.nve, target.port, target.vlan) != (
            plan.dpid, plan.port, plan.vlan):
        add(target, probe_address(target), 'old-location-live')
    for other in plan.moves:
        add(other, probe_address(other), 'old-location-live')
    loser = plan.take_ip_from
    if loser is not None:
        add(loser, plan.ip if ':' not in plan.ip else None, 'ip-owner-live')
    return out


def _known_nve(db, nve):
    dpid = A.norm_dpid(nve, 'nve')
    if dpid not in db.nves:
        raise NotFound('no NVE %s (register it first)' % dpid_str(dpid),
                       'nve')
    return dpid


def _known_vn(db, vnid):
    vnid = A.norm_vnid(vnid)
    vn = db.vns.get(vnid)
    if vn is None:
        raise NotFound('no VN %d' % vnid, 'vnid')
    return vn


def _by_bid(cache, bid):
    return next((b for b in cache if b.bid is not None and b.bid == bid),
                None)


def _second_binding(cache, mac, vn, bid):
    """Rule 2: a new binding of a vNIC that has one already needs a BID,
    and so do all the others."""
    if not cache:
        return
    if bid is None:
        raise Conflict(
            'vNIC %s already has %s; a second binding (VN %d) needs a BID, '
            'and so does every binding of a vNIC that has several (draft '
            '4.2)' % (mac, cache[0].describe(), vn.vnid), 'bid')
    bare = [b for b in cache if b.bid is None]
    if bare:
        raise Conflict(
            'vNIC %s already has %s; a vNIC with several bindings needs a BID '
            'for each (draft 4.2): re-register that one with a bid first, '
            'then register this one (VN %d) with bid %d'
            % (mac, bare[0].describe(), vn.vnid, bid), 'bid')


def _existing(db, vn, mac):
    return db.attachments.get((vn.vnid, mac))


def _check_l3(db, vn, mac, ip, vlan, bid, cache, plan):
    att = _existing(db, vn, mac)
    registered = att if att is not None and att.source == REGISTERED \
        else None
    known = _by_bid(cache, bid) if bid is not None else None
    if known is not None:
        # Rule 4: a re-registration carries only the BID (or the same IP).
        _same_vn(known, vn, mac)
        if ip is not None and ip != known.ip:
            raise Conflict('BID %d of %s is bound to IP %s; a BID cannot be '
                           're-used with another IP (%s)' % (
                               bid, mac, known.ip, ip), 'ip')
        _same_vlan(known, vlan, mac)
        plan.action, plan.att, plan.vlan = 're-registered', registered, \
            known.vlan
        return
    if ip is None:
        if bid is not None:
            raise NotFound('BID %d of %s was never registered: its first '
                           'registration must carry its ip' % (bid, mac),
                           'bid')
        raise BadRequest('a binding in L3 VN %d needs an ip (or the bid of '
                         'a registered binding)' % vn.vnid, 'ip')
    same_ip = next((b for b in cache if b.ip == ip), None)
    if same_ip is not None:
        if same_ip.vnid != vn.vnid:
            raise Conflict('IP %s of %s is bound to VN %d, not VN %d' % (
                ip, mac, same_ip.vnid, vn.vnid), 'ip')
        _same_vlan(same_ip, vlan, mac)
        if bid is not None and same_ip.bid is not None:
            raise Conflict('IP %s of %s already has BID %d (not %d): a '
                           'binding keeps its BID' % (
                               ip, mac, same_ip.bid, bid), 'bid')
        plan.att, plan.vlan = registered, same_ip.vlan
        if bid is None:
            plan.action = 're-registered'
        else:
            # Rule 2's way out: the one binding gets its BID.
            plan.action, plan.ip = 'bid-assigned', ip
        return
    # A new IP, hence a new binding.
    _second_binding(cache, mac, vn, bid)
    if registered is not None and vlan is not None and vlan != registered.vlan:
        raise Conflict('%s reaches VN %d over %s, not VLAN %d' % (
            mac, vn.vnid, _vlan_text(registered.vlan), vlan), 'vlan')
    plan.action, plan.att, plan.ip = 'registered', att, ip
    plan.vlan = registered.vlan if registered is not None else vlan


def _check_l2(db, vn, mac, ip, vlan, bid, cache, plan):
    att = _existing(db, vn, mac)
    registered = att if att is not None and att.source == REGISTERED \
        else None
    known = _by_bid(cache, bid) if bid is not None else None
    plan.ip = ip   # L2: an address of the binding, for ARP answers
    if known is not None:
        _same_vn(known, vn, mac)
        if vlan is not None and vlan != known.vlan:
            raise Conflict('BID %d of %s is bound to %s; a BID cannot be '
                           're-used with another VLAN (%d)' % (
                               bid, mac, _vlan_text(known.vlan), vlan),
                           'vlan')
        plan.action, plan.att, plan.vlan = 're-registered', registered, \
            known.vlan
        return
    if registered is not None:
        mine = next(b for b in cache if b.vnid == vn.vnid)
        _same_vlan(mine, vlan, mac)
        if bid is None:
            plan.action = 're-registered'
        elif mine.bid is not None:
            raise Conflict('%s is already bound to VN %d with BID %d: one L2 '
                           'binding per VN' % (mac, vn.vnid, mine.bid), 'bid')
        elif vlan is None and mine.vlan is not None:
            raise BadRequest('the first registration of BID %d of %s must '
                             'carry its vlan (%d)' % (bid, mac, mine.vlan),
                             'vlan')
        else:
            plan.action = 'bid-assigned'
        plan.att, plan.vlan = registered, mine.vlan
        return
    if bid is not None and vlan is None:
        raise NotFound('BID %d of %s was never registered: its first '
                       'registration must carry its vlan' % (bid, mac), 'bid')
    _second_binding(cache, mac, vn, bid)
    plan.action, plan.att, plan.vlan = 'registered', att, vlan


def _same_vn(known, vn, mac):
    if known.vnid != vn.vnid:
        raise Conflict('BID %d of %s is bound to VN %d, not VN %d' % (
            known.bid, mac, known.vnid, vn.vnid), 'vnid')


def _same_vlan(known, vlan, mac):
    if vlan is not None and vlan != known.vlan:
        raise Conflict('%s of %s is reached over %s, not VLAN %d' % (
            known.describe(), mac, _vlan_text(known.vlan), vlan), 'vlan')


def _vlan_text(vlan):
    return 'VLAN %d' % vlan if vlan is not None else 'no VLAN (untagged)'


def _check_ip_free(db, vn, mac, ip, cache, plan):
    """An IP is one binding's: not another of this vNIC, nor another MAC's
    (a learned owner loses it to the registration)."""
    other = next((b for b in cache if b.vnid != vn.vnid and ip in
                  db.attachments[(b.vnid, mac)].ips), None)
    if other is not None:
        raise Conflict('IP %s of %s is already bound to VN %d' % (
            ip, mac, other.vnid), 'ip')
    owner = db.lookup_ip(vn.vnid, ip)
    if owner is None or owner.mac == mac:
        return
    if owner.source == REGISTERED:
        raise Conflict('IP %s is registered to %s in VN %d' % (
            ip, owner.mac, vn.vnid), 'ip')
    plan.take_ip_from = owner


def _check_location(db, vn, dpid, port, mac, plan):
    """All the vNIC's bindings are at (dpid, port): the port must already
    classify each of them into its VN (registration binds no port)."""
    needs = []
    target = plan.att
    if target is None or (target.nve, target.port, target.vlan) != (
            dpid, port, plan.vlan) or target.source != REGISTERED:
        needs.append((plan.vlan, vn))
    for other in registered_attachments(db, mac):
        if other.vnid != vn.vnid and (other.nve, other.port) != (dpid, port):
            plan.moves.append(other)
            needs.append((other.vlan, db.vns[other.vnid]))
    _check_port_binding(db, dpid, port, needs)


def _check_port_binding(db, dpid, port, needs):
    """Refuse unless ``port`` classifies every (vlan, vn) of ``needs`` into
    its VN: bound by the operator, whole or by VLAN.  A binding that says
    otherwise is named before one that is missing."""
    binding = db.nves[dpid].bindings.get(port)
    where = 'port %s of NVE %s' % (port, dpid_str(dpid))
    if binding is None:
        raise NotFound('%s is not bound to a VN: an operator binds it first '
                       '(REST PUT /v1/nves/%s/ports/%s, or the configuration '
                       'file)' % (where, dpid_str(dpid), port), 'port')
    whole, vlans = binding.vnid, binding.vlans
    missing = None
    for vlan, vn in needs:
        if vlan is None:
            if vn.service == 'l3':
                continue        # by source IP, whatever VN the port has
            if whole is None:
                raise BadRequest('%s carries VLANs %s; an L2 binding there '
                                 'needs its vlan' % (
                                     where, sorted(vlans)), 'vlan')
            if whole != vn.vnid:
                raise Conflict('%s is bound to VN %d; it cannot carry VN %d '
                               'untagged' % (where, whole, vn.vnid), 'port')
            continue
        if whole is not None:
            raise Conflict('%s is bound as a whole to VN %d; it carries no '
                           'VLAN %d' % (where, whole, vlan), 'vlan')
        have = vlans.get(vlan)
        if have is None:
            missing = missing if missing is not None else vlan
        elif have != vn.vnid:
            raise Conflict('VLAN %d on %s is already bound to VN %d' % (
                vlan, where, have), 'vlan')
    if missing is not None:
        raise NotFound('VLAN %d on %s is not bound to a VN: an operator '
                       'binds it first' % (missing, where), 'vlan')


def apply_plan(db, plan, now):
    """Carry out a registration :func:`plan_associate` accepted (on the
    database it checked); returns a summary."""
    vn, dpid, port, mac = plan.vn, plan.dpid, plan.port, plan.mac
    for other in plan.moves:
        _move(db, other, dpid, port, other.vlan, now)
    att = db.attachments.get((vn.vnid, mac))
    if att is None:
        att = db.attach(vn.vnid, mac, dpid, port, plan.vlan, now, HOW,
                        source=REGISTERED)
    else:
        if att.source != REGISTERED:
            # Registered beats learned: what packets taught is replaced.
            for learned_ip in list(att.ips):
                db.remove_ip(att, learned_ip)
            db.set_source(att, REGISTERED)
        if (att.nve, att.port, att.vlan) != (dpid, port, plan.vlan):
            _move(db, att, dpid, port, plan.vlan, now)
    if plan.take_ip_from is not None:
        loser = plan.take_ip_from
        db.remove_ip(loser, plan.ip)
        db.event_log.record(now, ev.CONFLICT, vnid=vn.vnid, ip=plan.ip,
                         mac=mac, owner=loser.mac,
                         reason='registered-over-learned')
    if vn.service == 'l2':
        if plan.bid is not None:
            db.set_bid(att, plan.bid)
        if plan.ip is not None:
            db.add_ip(att, plan.ip, att.bid, now)
    elif plan.ip is not None:
        db.add_ip(att, plan.ip, plan.bid, now)
    db.set_seen(att, now)
    return {'action': plan.action, 'mac': mac, 'vnid': vn.vnid,
            'service': vn.service, 'nve': dpid_str(dpid), 'port': port,
            'vlan': att.vlan, 'ip': plan.ip, 'bid': plan.bid}


def _move(db, att, dpid, port, vlan, now):
    db.move(att, dpid, port, vlan, now, HOW)
    # The agent says where the vNIC is: no redirect hold at the old NVE
    # (mobility.MoveArbiter would end it; it does not track this move).
    db.end_redirect(att)


# --- dissociate --------------------------------------------------------------

def dissociate(db, nve, mac, bid=None, now=0.0):
    """De-register one binding (``bid``) or a vNIC without BIDs at ``nve``.

    Returns ``{'removed': [binding dicts], 'bindings': [what remains]}``.
    """
    dpid = _known_nve(db, nve)
    mac = A.norm_mac(mac)
    bid = norm_bid(bid) if bid is not None else None
    cache = binding_cache(db, mac)
    if bid is not None:
        known = _by_bid(cache, bid)
        if known is None:
            raise NotFound('BID %d of %s is not registered' % (bid, mac),
                           'bid')
        _at(known, dpid, mac)
        removed = [known]
        att = db.attachments[(known.vnid, mac)]
        if known.service == 'l3' and len(att.ips) > 1:
            db.remove_ip(att, known.ip)
        else:
            _remove(db, att, now)
    else:
        with_bids = [b.bid for b in cache if b.bid is not None]
        if with_bids:
            raise BadRequest('%s has BIDs %s: a de-registration carries the '
                             'bid' % (mac, ', '.join(map(str, with_bids))),
                             'bid')
        for known in cache:
            _at(known, dpid, mac)
        atts = sorted((a for a in db.attachments_at(dpid) if a.mac == mac),
                      key=lambda a: a.key)
        if not atts:
            raise NotFound('no tenant system %s at NVE %s' % (
                mac, dpid_str(dpid)), 'mac')
        removed = list(cache) + [
            Binding(a.mac, a.vnid, db.vns[a.vnid].service, None, a.vlan,
                    None, a.nve, a.port)
            for a in atts if a.source != REGISTERED]
        for att in atts:
            _remove(db, att, now)
    return {'removed': [b.to_dict() for b in removed],
            'bindings': [b.to_dict() for b in binding_cache(db, mac)]}


def _at(known, dpid, mac):
    if known.nve != dpid:
        raise Conflict('%s of %s is registered at NVE %s, not at NVE %s' % (
            known.describe(), mac, dpid_str(known.nve), dpid_str(dpid)),
            'nve')


def _remove(db, att, now):
    db.remove_attachment(att, now, reason='deregistered')


# --- query -------------------------------------------------------------------

def query(db, vnid, mac, tunnel_ports=None):
    """The TESID and mapping entries of ``mac`` in VN ``vnid`` (draft 5.2),
    and the vNIC's binding cache."""
    vn = _known_vn(db, vnid)
    mac = A.norm_mac(mac)
    att = db.attachments.get((vn.vnid, mac))
    if att is None:
        raise NotFound('no tenant system %s in VN %d' % (mac, vn.vnid),
                       'mac')
    tunnel_ports = tunnel_ports or {'vxlan': 'vxlan0', 'gre': 'gre0'}
    return {'tesid': db.tesid(vn.vnid, mac),
            'entries': db.mapping_entries(att, tunnel_ports),
            'bindings': [b.to_dict() for b in binding_cache(db, mac)]}


__all__ = ['Binding', 'Plan', 'associate', 'plan_associate', 'apply_plan',
           'live_targets', 'dissociate', 'query', 'binding_cache',
           'registered_attachments']
