"""Simulated NVEs: one process, N OpenFlow 1.3 switches over TCP.

A load generator for the scale benchmarks (reconcile_bench.py,
capacity_bench.py): it connects N switches to the app on 127.0.0.1 and
behaves, on the OpenFlow channel, like the NVE bridges of docs/contracts.md, NVE preparation:

* answers HELLO, FEATURES_REQUEST (its datapath id), PORT_DESC (``br-int``
  as the LOCAL port, ``vxlan0``, ``gre0`` and access ports ``p1..pK``),
  ECHO, BARRIER, GET_CONFIG, and FLOW_STATS / METER_CONFIG multipart
  requests with the flows and meters it holds (cookie and table filters
  applied), split into 64 KiB replies as a switch would;
* applies FLOW_MOD (add, modify(-strict), delete(-strict)) and METER_MOD to
  an in-memory table, keyed like a switch: (table, priority, match), the
  match compared as the bytes the controller sent; a meter ADD over an
  existing meter gets OFPMMFC_METER_EXISTS as from OVS;
* keeps its tables when the controller goes away and connects again every
  ``reconnect_interval`` seconds (fail-mode secure), so that a restart's
  reconciliation can be measured;
* sends PACKET_IN frames (Ethernet + ARP request from a new tenant MAC on
  an access port, ``in_port`` and ``metadata`` in the match, ``table_id``
  1 as the SOURCE table's punt would) on a fixed schedule of a given rate,
  with at most ``window`` attachments outstanding.

An attachment is *acknowledged* when each of its VN's member NVEs has
received the tenant system's host flow (table L2_FORWARD, priority HOST,
``eth_dst`` = its MAC) and answered the barrier that followed it: that is
the app's "flows acknowledged" (applied_seq).  The simulator records the
latency of every attachment from its packet-in to that point.

Everything is parsed and built with ``struct`` (no os-ken): the simulator
must stay cheaper than the app it loads.  It does not forward packets, has
no meters' rate limits and does not age flows.

It runs in its own process (:class:`SimProcess`, commands over a pipe) so
that the benchmark's own threads (REST clients) do not share its GIL.
From the command line it connects switches and, optionally, attaches
tenant systems and prints what happened::

    python benchmarks/ofswitch_sim.py --of-port 6653 --nves 10 --ports 4 \\
        --tenants 100 --members 10
"""

import argparse
import errno
import ipaddress
import multiprocessing
import os
import selectors
import socket
import struct
import sys
import time

OFP_VERSION = 4
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY = 0, 1, 2, 3
FEATURES_REQUEST, FEATURES_REPLY = 5, 6
GET_CONFIG_REQUEST, GET_CONFIG_REPLY, SET_CONFIG = 7, 8, 9
PACKET_IN, FLOW_REMOVED, PORT_STATUS, PACKET_OUT, FLOW_MOD = 10, 11, 12, 13, 14
MULTIPART_REQUEST, MULTIPART_REPLY = 18, 19
BARRIER_REQUEST, BARRIER_REPLY = 20, 21
ROLE_REQUEST, ROLE_REPLY = 24, 25
METER_MOD = 29
MP_DESC, MP_FLOW, MP_METER_CONFIG, MP_PORT_DESC = 0, 1, 10, 13
MPF_REPLY_MORE = 1
FC_ADD, FC_MODIFY, FC_MODIFY_STRICT, FC_DELETE, FC_DELETE_STRICT = range(5)
MC_ADD, MC_MODIFY, MC_DELETE = 0, 1, 2
ET_BAD_REQUEST, BRC_BAD_TYPE = 1, 1
ET_METER_MOD_FAILED, MMFC_METER_EXISTS = 12, 1
TT_ALL = 0xFF
M_ALL = 0xFFFFFFFF
PORT_LOCAL = 0xFFFFFFFE
PORT_STATE_LIVE = 4
MAX_REPLY = 0xFF00                 # body bytes of one multipart reply at most

L2_FORWARD, PRIO_HOST = 4, 200     # pipeline.py: where a host route lives
SOURCE_TABLE = 1
STAMP_TABLE = 8                    # the app's stamp (southbound/stamp.py)
VXLAN_OFPORT, GRE_OFPORT = 60001, 60002

_HDR = struct.Struct('!BBHI')
_FEATURES = struct.Struct('!QIBB2xII')
_MP = struct.Struct('!HH4x')
_PORT = struct.Struct('!I4x6s2x16sIIIIIIII')
_FLOW_MOD = struct.Struct('!QQBBHHHIIIH2x')      # 40 bytes after the header
_FLOW_STATS = struct.Struct('!HBxIIHHHH4xQQQ')   # 48 bytes, then match, insts
_FLOW_STATS_REQ = struct.Struct('!B3xII4xQQ')    # 32 bytes, then a match
_METER_MOD = struct.Struct('!HHI')
_METER_CONFIG = struct.Struct('!HHI')
_PACKET_IN = struct.Struct('!IHBBQ')
_OXM = struct.Struct('!I')
_U16 = struct.Struct('!H')
_ERROR = struct.Struct('!HH')


def msg(mtype, xid, body=b''):
    return _HDR.pack(OFP_VERSION, mtype, 8 + len(body), xid) + body


def _pad8(n):
    return (n + 7) // 8 * 8


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(':'))


def int_mac(n):
    return ':'.join('%02x' % ((n >> s) & 0xFF) for s in range(40, -8, -8))


def arp_request(src_mac, src_ip, dst_ip):
    """An Ethernet broadcast ARP request (42 bytes)."""
    smac = mac_bytes(src_mac)
    return (b'\xff' * 6 + smac + b'\x08\x06'
            + struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + smac
            + ipaddress.IPv4Address(src_ip).packed + b'\x00' * 6
            + ipaddress.IPv4Address(dst_ip).packed)


def packet_in(xid, in_port, metadata, data, table_id=SOURCE_TABLE,
              cookie=0x4E56 << 48):
    """OFPT_PACKET_IN of ``data`` punted by an output:CONTROLLER action."""
    oxms = (_OXM.pack(0x80000004) + struct.pack('!I', in_port)
            + _OXM.pack(0x80000408) + struct.pack('!Q', metadata))
    mlen = 4 + len(oxms)
    match = struct.pack('!HH', 1, mlen) + oxms + b'\x00' * (_pad8(mlen) - mlen)
    body = (_PACKET_IN.pack(0xFFFFFFFF, len(data), 1, table_id, cookie)
            + match + b'\x00\x00' + data)
    return msg(PACKET_IN, xid, body)


def match_eth_dst(match):
    """The exact eth_dst (6 bytes) of an OXM match, or None."""
    pos, end = 4, _U16.unpack_from(match, 2)[0]
    while pos + 4 <= end:
        (head,) = _OXM.unpack_from(match, pos)
        length = head & 0xFF
        if head >> 16 == 0x8000 and (head >> 9) & 0x7F == 3 \
                and not head & 0x100:
            return bytes(match[pos + 4:pos + 10])
        pos += 4 + length
    return None


class SimNVE:
    """One simulated switch: its ports, tables and OpenFlow channel."""

    def __init__(self, dpid, n_ports, nve_mac=None):
        self.dpid = dpid
        self.ports = [(PORT_LOCAL, 'br-int'), (VXLAN_OFPORT, 'vxlan0'),
                      (GRE_OFPORT, 'gre0')] + [
                          (i, 'p%d' % i) for i in range(1, n_ports + 1)]
        self.mac = mac_bytes(nve_mac or int_mac(0x060000000000 | dpid))
        self.flows = {}          # (table, priority, match) -> (body, added)
        self.meters = {}         # meter_id -> (flags, bands, added)
        self.sock = None
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.connecting = False  # TCP connect in progress
        self.up = False          # TCP connected
        self.ready = False       # the controller asked for our ports
        self.next_try = 0.0
        self.connects = 0
        self.pending_macs = []   # host flows seen since the last barrier
        self.counts = {'flow_mods': 0, 'meter_mods': 0, 'barriers': 0,
                       'packet_outs': 0, 'flow_stats': 0, 'errors_sent': 0,
                       'errors_received': 0, 'packet_ins': 0,
                       'stamp_requests': 0}

    def port_desc(self):
        out = []
        for no, name in self.ports:
            hw = self.mac if no == PORT_LOCAL else bytes(
                [0x0a, (self.dpid >> 16) & 0xFF, (self.dpid >> 8) & 0xFF,
                 self.dpid & 0xFF, (no >> 8) & 0xFF, no & 0xFF])
            out.append(_PORT.pack(no, hw, name.encode(), 0, PORT_STATE_LIVE,
                                  0, 0, 0, 0, 10000000, 10000000))
        return b''.join(out)


class Simulator:
    """N simulated NVEs in one selector loop (run :meth:`run` in a process)."""

    def __init__(self, host, port, nves, ports_per_nve=4,
                 reconnect_interval=0.1, attach_timeout=30.0):
        self.addr = (host, port)
        self.nves = {dpid: SimNVE(dpid, ports_per_nve) for dpid in nves}
        self.reconnect_interval = reconnect_interval
        self.attach_timeout = attach_timeout
        self.sel = selectors.DefaultSelector()
        self.xid = 0x10000000
        self.connect_enabled = True
        # Attachments: [(dpid, port, mac, ip, vnid, members)], the schedule.
        self.queue = []
        self.next_index = 0
        self.rate = 0.0
        self.window = 0
        self.t_start = 0.0
        self.expected = {}       # mac bytes -> members still to acknowledge
        self.sent_at = {}        # mac bytes -> packet-in time
        self.latencies = []      # seconds, packet-in to all acknowledged
        self.done_at = []        # completion times
        self.failed = 0
        self.first_sent = None
        self.last_done = None
        self._expired = 0.0

    # -- connections --

    def _connect(self, nve, now):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        err = sock.connect_ex(self.addr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            nve.next_try = now + self.reconnect_interval
            return
        nve.sock = sock
        nve.rbuf.clear()
        nve.wbuf = bytearray(msg(HELLO, self._xid()))
        nve.connecting = True
        self.sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE,
                          nve)

    def _drop(self, nve, now):
        if nve.sock is not None:
            try:
                self.sel.unregister(nve.sock)
            except (KeyError, ValueError):
                pass
            nve.sock.close()
        nve.sock = None
        nve.up = nve.ready = nve.connecting = False
        nve.pending_macs = []
        nve.wbuf.clear()
        nve.next_try = now + self.reconnect_interval

    def _xid(self):
        self.xid = (self.xid + 1) & 0xFFFFFFFF
        return self.xid

    def _send(self, nve, data):
        if nve.sock is None:
            return
        if not nve.wbuf:
            try:
                sent = nve.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._drop(nve, time.monotonic())
                return
            if sent == len(data):
                return
            data = data[sent:]
            self.sel.modify(nve.sock, selectors.EVENT_READ
                            | selectors.EVENT_WRITE, nve)
        nve.wbuf += data

    def _writable(self, nve, now):
        if nve.connecting:
            err = nve.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._drop(nve, now)
                return
            nve.connecting = False
            nve.up = True
            nve.connects += 1
        if nve.wbuf:
            try:
                sent = nve.sock.send(nve.wbuf)
            except BlockingIOError:
                return
            except OSError:
                self._drop(nve, now)
                return
            del nve.wbuf[:sent]
        if not nve.wbuf:
            self.sel.modify(nve.sock, selectors.EVENT_READ, nve)

    def _readable(self, nve, now):
        try:
            data = nve.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError:
            data = b''
        if not data:
            self._drop(nve, now)
            return
        buf = nve.rbuf
        buf += data
        pos, size = 0, len(buf)
        while size - pos >= 8:
            _, mtype, length, xid = _HDR.unpack_from(buf, pos)
            if length < 8:
                self._drop(nve, now)
                return
            if size - pos < length:
                break
            self._handle(nve, mtype, xid, bytes(buf[pos:pos + length]), now)
            if nve.sock is None:
                return
            pos += length
        del buf[:pos]

    # -- the OpenFlow switch --

    def _handle(self, nve, mtype, xid, data, now):
        if mtype == FLOW_MOD:
            self._flow_mod(nve, data, now)
        elif mtype == BARRIER_REQUEST:
            nve.counts['barriers'] += 1
            self._send(nve, msg(BARRIER_REPLY, xid))
            if nve.pending_macs:
                self._acknowledged(nve.pending_macs, now)
                nve.pending_macs = []
        elif mtype == PACKET_OUT:
            nve.counts['packet_outs'] += 1
        elif mtype == METER_MOD:
            self._meter_mod(nve, xid, data, now)
        elif mtype == MULTIPART_REQUEST:
            self._multipart(nve, xid, data, now)
        elif mtype == ECHO_REQUEST:
            self._send(nve, msg(ECHO_REPLY, xid, data[8:]))
        elif mtype == FEATURES_REQUEST:
            self._send(nve, msg(FEATURES_REPLY, xid, _FEATURES.pack(
                nve.dpid, 0, 254, 0, 0x4F, 0)))
        elif mtype == GET_CONFIG_REQUEST:
            self._send(nve, msg(GET_CONFIG_REPLY, xid,
                                struct.pack('!HH', 0, 0xFFFF)))
        elif mtype == ROLE_REQUEST:
            self._send(nve, msg(ROLE_REPLY, xid, data[8:]))
        elif mtype == ERROR:
            nve.counts['errors_received'] += 1
        elif mtype in (HELLO, SET_CONFIG, ECHO_REPLY):
            pass
        else:
            self._error(nve, xid, ET_BAD_REQUEST, BRC_BAD_TYPE, data)

    def _error(self, nve, xid, etype, code, data):
        nve.counts['errors_sent'] += 1
        self._send(nve, msg(ERROR, xid, _ERROR.pack(etype, code)
                            + data[:64]))

    def _flow_mod(self, nve, data, now):
        nve.counts['flow_mods'] += 1
        (cookie, cookie_mask, table, command, _idle, _hard, priority, _buf,
         _out_port, _out_group, _flags) = _FLOW_MOD.unpack_from(data, 8)
        mlen = _U16.unpack_from(data, 50)[0]
        match = data[48:48 + mlen]
        key = (table, priority, match)
        if command == FC_ADD:
            nve.flows[key] = (data[8:], now)
            if table == L2_FORWARD and priority == PRIO_HOST \
                    and self.expected:
                mac = match_eth_dst(match)
                if mac in self.expected:
                    nve.pending_macs.append(mac)
        elif command == FC_DELETE_STRICT:
            have = nve.flows.get(key)
            if have is not None and _cookie_ok(have[0], cookie, cookie_mask):
                del nve.flows[key]
        elif command in (FC_MODIFY, FC_MODIFY_STRICT):
            have = nve.flows.get(key)
            if have is not None:
                nve.flows[key] = (data[8:], have[1])
            elif command == FC_MODIFY_STRICT or mlen > 4:
                nve.flows[key] = (data[8:], now)
        elif command == FC_DELETE:
            for k in [k for k, v in nve.flows.items()
                      if (table == TT_ALL or k[0] == table)
                      and (mlen <= 4 or k[2] == match)
                      and _cookie_ok(v[0], cookie, cookie_mask)]:
                del nve.flows[k]

    def _meter_mod(self, nve, xid, data, now):
        nve.counts['meter_mods'] += 1
        command, flags, meter_id = _METER_MOD.unpack_from(data, 8)
        bands = data[16:]
        if command == MC_ADD:
            if meter_id in nve.meters:
                self._error(nve, xid, ET_METER_MOD_FAILED, MMFC_METER_EXISTS,
                            data)
                return
            nve.meters[meter_id] = (flags, bands, now)
        elif command == MC_MODIFY:
            nve.meters[meter_id] = (flags, bands, now)
        elif command == MC_DELETE:
            if meter_id == M_ALL:
                nve.meters.clear()
            else:
                nve.meters.pop(meter_id, None)

    def _multipart(self, nve, xid, data, now):
        mp_type, _flags = _MP.unpack_from(data, 8)
        body = data[16:]
        if mp_type == MP_PORT_DESC:
            self._replies(nve, xid, MP_PORT_DESC, [nve.port_desc()])
            nve.ready = True
        elif mp_type == MP_FLOW:
            table, _out_port, _out_group, cookie, cookie_mask = \
                _FLOW_STATS_REQ.unpack_from(body, 0)
            # A request for table STAMP alone is the app's stamp request.
            nve.counts['stamp_requests' if table == STAMP_TABLE
                       else 'flow_stats'] += 1
            entries = []
            for (t, prio, match), (fm, added) in nve.flows.items():
                if table != TT_ALL and t != table:
                    continue
                if cookie_mask and not _cookie_ok(fm, cookie, cookie_mask):
                    continue
                age = now - added
                sec = int(age)
                mpad = _pad8(len(match))
                insts = fm[40 + mpad:]
                (fcookie,) = struct.unpack_from('!Q', fm, 0)
                idle, hard = struct.unpack_from('!HH', fm, 18)
                (fflags,) = struct.unpack_from('!H', fm, 36)
                length = _FLOW_STATS.size + mpad + len(insts)
                entries.append(
                    _FLOW_STATS.pack(length, t, sec, int((age - sec) * 1e9),
                                     prio, idle, hard, fflags, fcookie, 0, 0)
                    + fm[40:40 + mpad] + insts)
            self._replies(nve, xid, MP_FLOW, entries)
        elif mp_type == MP_METER_CONFIG:
            entries = [_METER_CONFIG.pack(8 + len(bands), flags, meter_id)
                       + bands for meter_id, (flags, bands, _)
                       in sorted(nve.meters.items())]
            self._replies(nve, xid, MP_METER_CONFIG, entries)
        elif mp_type == MP_DESC:
            desc = b''.join(s.ljust(n, b'\x00') for s, n in (
                (b'nvo3 simulator', 256), (b'ofswitch_sim', 256),
                (b'1', 256), (b'%d' % nve.dpid, 32), (b'sim', 256)))
            self._replies(nve, xid, MP_DESC, [desc])
        else:
            self._replies(nve, xid, mp_type, [])

    def _replies(self, nve, xid, mp_type, entries):
        """Multipart replies of at most MAX_REPLY bytes each."""
        chunks, cur, size = [], [], 0
        for entry in entries:
            if cur and size + len(entry) > MAX_REPLY:
                chunks.append(cur)
                cur, size = [], 0
            cur.append(entry)
            size += len(entry)
        chunks.append(cur)
        for i, chunk in enumerate(chunks):
            flags = MPF_REPLY_MORE if i < len(chunks) - 1 else 0
            self._send(nve, msg(MULTIPART_REPLY, xid,
                                _MP.pack(mp_type, flags) + b''.join(chunk)))

    # -- attachments --

    def attach(self, tenants, rate=0.0, window=0):
        """Schedule packet-ins: ``tenants`` is a list of (dpid, ofport, mac,
        ip, vnid, members); ``rate`` per second (0: as fast as the window
        allows), at most ``window`` outstanding (0: no limit)."""
        self.queue = list(tenants)
        self.next_index = 0
        self.rate = float(rate)
        self.window = int(window)
        self.t_start = time.monotonic()
        self.latencies, self.done_at = [], []
        self.failed = 0
        self.first_sent = self.last_done = None

    def _send_due(self, now):
        """Send the packet-ins that are due; return the next due time."""
        while self.next_index < len(self.queue):
            if self.window and len(self.sent_at) >= self.window:
                return now + 0.05
            due = self.t_start + (self.next_index / self.rate
                                  if self.rate else 0.0)
            if due > now:
                return due
            dpid, ofport, mac, ip, vnid, members = \
                self.queue[self.next_index]
            nve = self.nves[dpid]
            if not nve.ready:
                return now + 0.05
            self.next_index += 1
            key = mac_bytes(mac)
            self.expected[key] = members
            self.sent_at[key] = now
            if self.first_sent is None:
                self.first_sent = now
            gw = str(ipaddress.IPv4Address(ip) + 1)
            nve.counts['packet_ins'] += 1
            self._send(nve, packet_in(self._xid(), ofport, vnid,
                                      arp_request(mac, ip, gw)))
        return None

    def _acknowledged(self, macs, now):
        for mac in macs:
            left = self.expected.get(mac)
            if left is None:
                continue
            if left > 1:
                self.expected[mac] = left - 1
                continue
            del self.expected[mac]
            self.latencies.append(now - self.sent_at.pop(mac))
            self.done_at.append(now)
            self.last_done = now

    def _expire(self, now):
        old = [m for m, t in self.sent_at.items()
               if now - t > self.attach_timeout]
        for mac in old:
            del self.sent_at[mac]
            self.expected.pop(mac, None)
            self.failed += 1

    # -- figures --

    def status(self):
        totals = {}
        for nve in self.nves.values():
            for key, value in nve.counts.items():
                totals[key] = totals.get(key, 0) + value
        return {
            'nves': len(self.nves),
            'up': sum(1 for n in self.nves.values() if n.up),
            'ready': sum(1 for n in self.nves.values() if n.ready),
            'connects': sum(n.connects for n in self.nves.values()),
            'flows': sum(len(n.flows) for n in self.nves.values()),
            'meters': sum(len(n.meters) for n in self.nves.values()),
            'counts': totals,
            'attach_sent': self.next_index, 'attach_total': len(self.queue),
            'attach_done': len(self.latencies), 'attach_failed': self.failed,
            'attach_outstanding': len(self.sent_at),
            'first_sent': self.first_sent, 'last_done': self.last_done,
            'now': time.monotonic()}

    def reset_counts(self):
        for nve in self.nves.values():
            for key in nve.counts:
                nve.counts[key] = 0

    def stamped(self):
        """How many NVEs hold a flow in table STAMP."""
        return sum(1 for nve in self.nves.values()
                   if any(k[0] == STAMP_TABLE for k in nve.flows))

    def flow_ages(self):
        """{dpid: oldest and newest flow age} (a re-added flow is young)."""
        now = time.monotonic()
        out = {}
        for dpid, nve in self.nves.items():
            added = [t for _, t in nve.flows.values()]
            if added:
                out[dpid] = (now - max(added), now - min(added))
        return out

    # -- the loop --

    def step(self, timeout=0.05):
        now = time.monotonic()
        if self.connect_enabled:
            for nve in self.nves.values():
                if nve.sock is None and now >= nve.next_try:
                    self._connect(nve, now)
        wake = self._send_due(now) if self.queue else None
        if wake is not None:
            timeout = max(0.0, min(timeout, wake - now))
        for key, events in self.sel.select(timeout):
            nve = key.data
            if nve is None:
                continue            # the command pipe: the caller reads it
            now = time.monotonic()
            if events & selectors.EVENT_WRITE and nve.sock is not None:
                self._writable(nve, now)
            if events & selectors.EVENT_READ and nve.sock is not None:
                self._readable(nve, now)
        if self.sent_at and now - self._expired >= 1.0:
            self._expired = now
            self._expire(now)

    def close(self):
        for nve in self.nves.values():
            self._drop(nve, 0.0)
        self.sel.close()


def _cookie_ok(flow_mod_body, cookie, mask):
    (have,) = struct.unpack_from('!Q', flow_mod_body, 0)
    return (have & mask) == (cookie & mask)


# --- running it in a process of its own ----------------------------------------

def _serve(conn, host, port, nves, ports_per_nve, reconnect_interval):
    """The child process: the selector loop plus commands from ``conn``."""
    sim = Simulator(host, port, nves, ports_per_nve, reconnect_interval)
    sim.sel.register(conn.fileno(), selectors.EVENT_READ, None)
    try:
        while True:
            sim.step()
            while conn.poll():
                cmd, args = conn.recv()
                if cmd == 'quit':
                    conn.send(None)
                    return
                conn.send(_command(sim, cmd, args))
    finally:
        sim.close()


def _command(sim, cmd, args):
    if cmd == 'status':
        return sim.status()
    if cmd == 'attach':
        sim.attach(*args)
        return True
    if cmd == 'latencies':
        return {'latencies': list(sim.latencies), 'done_at': list(sim.done_at)}
    if cmd == 'reset_counts':
        sim.reset_counts()
        return True
    if cmd == 'flow_ages':
        return sim.flow_ages()
    if cmd == 'stamped':
        return sim.stamped()
    if cmd == 'flows_per_nve':
        return {d: len(n.flows) for d, n in sim.nves.items()}
    if cmd == 'connect':
        sim.connect_enabled = bool(args[0])
        return True
    raise ValueError('unknown command %r' % (cmd,))


class SimProcess:
    """A :class:`Simulator` in a child process, driven over a pipe."""

    def __init__(self, of_port, nves, ports_per_nve=4, host='127.0.0.1',
                 reconnect_interval=0.1):
        ctx = multiprocessing.get_context('fork')
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, daemon=True, args=(
            child, host, of_port, list(nves), ports_per_nve,
            reconnect_interval))
        self.proc.start()

    @property
    def pid(self):
        return self.proc.pid

    def call(self, cmd, *args, timeout=60.0):
        self.check()
        self.conn.send((cmd, args))
        deadline = time.monotonic() + timeout
        while not self.conn.poll(0.2):
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError('simulator did not answer %s' % cmd)
        return self.conn.recv()

    def check(self):
        """Raise if the simulator process died (its traceback is on
        stderr)."""
        if not self.proc.is_alive():
            raise RuntimeError('the simulator process exited (code %s)'
                               % self.proc.exitcode)

    def status(self):
        return self.call('status')

    def attach(self, tenants, rate=0.0, window=0):
        return self.call('attach', tenants, rate, window)

    def wait(self, predicate, timeout, what, interval=0.05):
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError('simulator: %s not reached in %.0fs: %s'
                                   % (what, timeout, status))
            time.sleep(interval)

    def close(self):
        if self.proc.is_alive():
            try:
                self.call('quit', timeout=10)
            except (OSError, EOFError, TimeoutError):
                pass
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the fleet a benchmark declares ---------------------------------------------

def vtep_ip(index):
    """VTEP address of NVE ``index`` (198.18.0.0/15, the benchmarking range:
    it is only data in flows, never configured on an interface)."""
    return str(ipaddress.IPv4Address('198.18.0.1') + index)


def fleet(n_nves, vn_size=10, ports=4, first_vnid=10000):
    """NVEs (dpid 1..n) grouped into VNs of ``vn_size`` members each; every
    access port of an NVE is bound to its VN.  Returns (config dict,
    {dpid: vnid})."""
    vn_of = {}
    vns = []
    for i in range((n_nves + vn_size - 1) // vn_size):
        vns.append({'vnid': first_vnid + i, 'name': 'bench%d' % i,
                    'service': 'l2', 'encap': 'vxlan'})
    nves = []
    for i in range(n_nves):
        dpid = i + 1
        vnid = first_vnid + i // vn_size
        vn_of[dpid] = vnid
        nves.append({'name': 'sim%d' % dpid, 'dpid': '%016x' % dpid,
                     'vtep_ip': vtep_ip(i),
                     'ports': {'p%d' % p: {'vnid': vnid}
                               for p in range(1, ports + 1)}})
    return {'vns': vns, 'nves': nves}, vn_of


def tenants(n_tenants, vn_of, ports=4, offset=0):
    """Tenant systems spread round-robin over the NVEs (so consecutive
    packet-ins hit different NVEs and VNs): (dpid, ofport, mac, ip, vnid,
    members of the VN)."""
    dpids = sorted(vn_of)
    members = {}
    for dpid, vnid in vn_of.items():
        members[vnid] = members.get(vnid, 0) + 1
    out = []
    for j in range(offset, offset + n_tenants):
        dpid = dpids[j % len(dpids)]
        port = (j // len(dpids)) % ports + 1
        mac = int_mac(0x020000000000 | (j + 1))
        ip = str(ipaddress.IPv4Address('10.0.0.0') + 2 * j + 2)
        vnid = vn_of[dpid]
        out.append((dpid, port, mac, ip, vnid, members[vnid]))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--of-port', type=int, default=6653)
    ap.add_argument('--nves', type=int, default=10)
    ap.add_argument('--ports', type=int, default=4)
    ap.add_argument('--vn-size', type=int, default=10)
    ap.add_argument('--tenants', type=int, default=0)
    ap.add_argument('--rate', type=float, default=0.0)
    ap.add_argument('--window', type=int, default=200)
    ap.add_argument('--seconds', type=float, default=60.0,
                    help='stop after this long whatever happened')
    args = ap.parse_args(argv)
    _, vn_of = fleet(args.nves, args.vn_size, args.ports)
    with SimProcess(args.of_port, sorted(vn_of), args.ports) as sim:
        deadline = time.monotonic() + args.seconds
        sim.wait(lambda s: s['ready'] == args.nves,
                 max(1.0, deadline - time.monotonic()), 'all NVEs ready')
        print('connected %d NVEs' % args.nves)
        if args.tenants:
            sim.attach(tenants(args.tenants, vn_of, args.ports), args.rate,
                       args.window)
            sim.wait(lambda s: s['attach_done'] + s['attach_failed']
                     >= args.tenants, max(1.0, deadline - time.monotonic()),
                     'attachments')
        print(sim.status())
    return 0


if __name__ == '__main__':
    sys.exit(main())
