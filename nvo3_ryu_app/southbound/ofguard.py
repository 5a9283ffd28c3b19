"""What a switch may make os-ken parse: every length it trusts, checked first.

os-ken parses every message a switch sends, in the switch's receive loop,
with parsers that trust the lengths on the wire.  Some loop on them: a
multipart reply entry, an instruction, an action, a meter band or a HELLO
element of length 0 never advances, and one 72-byte
``OFPT_MULTIPART_REPLY`` (no HELLO needed) hung the whole controller while
its memory grew without end.  Other malformed messages make os-ken log a
traceback and a hex dump of the whole message, raise out of the receive
loop (an unknown version), or fail in its own handlers (a HELLO_FAILED
error whose text is not ASCII).

:func:`install` (called by the app) wraps ``ofproto_parser.msg``, the one
function os-ken's receive loop parses with (os-ken itself is not edited).
The wrapper first runs :func:`inspect` on the raw bytes:

``parse``
    the message is one the app uses and every length in it is consistent
    (header, multipart entries, match and OXM fields, instructions,
    actions, meter bands, HELLO elements): os-ken's parser gets it, and
    if even so it fails, the message counts as nonsense.  A message
    southbound/rawpath.py decodes (packet-ins, barrier replies) from a
    session that is up goes to the app's sink decoded instead, past
    os-ken's parser and event queue; one it cannot decode is nonsense.
``ignore``
    a valid OpenFlow 1.3 switch-to-controller message the app never asks
    for (flow-removed, experimenter, other multipart replies): dropped
    unparsed and counted.
``reject``
    nonsense: a length that does not add up, an unknown or
    controller-to-switch message type, another version than negotiated,
    anything but HELLO, ERROR or ECHO before the HELLO, or an action we
    never install (a Nicira action whose parser loops on its contents).
    The switch is disconnected (and counted, and logged at a bounded
    rate); it may connect again and behave.

Pure functions on bytes (``inspect``) are unit-tested against os-ken's own
serializer and against mutated messages; ``install`` is the only I/O.

The sessions are os-ken's Datapath with one change: its receive loop
reads what the socket holds (up to ``RECV_SIZE``), not a header and then
the rest of each message.

:func:`install_openflow` makes os-ken's OpenFlow controller accept through
a runtime/listener.py Listener instead of its own accept loop (which ended
osken-manager on the first failed accept): at most ``of_max_connections``,
connections still in their handshake closed first to make room and after
``of_handshake_timeout``.  With os-ken's TLS options (``--ctl-privkey``,
``--ctl-cert``, ``--ca-certs``) the same Listener serves TLS: the TLS
handshake is part of the bounded handshake (os-ken's own TLS server had
no timeout at all), and a failed one is counted and logged, not a
traceback.

Switch identity (:func:`refusal`): who may be an NVE's channel.  os-ken
checks a TLS client certificate against ``--ca-certs`` and nothing else;
the certificate must also name the datapath id (its subject CN, or a DNS
name of its subjectAltName, is the dpid in 16 hex digits), a second
session for a datapath id that has a live one is refused (the first one
goes on undisturbed), and with ``accept_unknown_nves = false`` a datapath
id without an NVE record is refused.  The app closes a refused session
before anything of it reaches the service, and ignores everything it
sent, its going down included.
"""

import socket
import ssl
import struct

from os_ken.controller import ofp_event
from os_ken.controller.handler import (DEAD_DISPATCHER, HANDSHAKE_DISPATCHER,
                                       MAIN_DISPATCHER)
from os_ken.lib import hub
from os_ken.ofproto import ofproto_common
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp

from ..authority.addresses import dpid_str
from . import rawpath
from ..runtime.listener import (BUSY, HANDSHAKE, Listener, close_now, listen,
                                server_context)

PARSE, IGNORE, REJECT = 'parse', 'ignore', 'reject'

_HEADER = struct.Struct('!BBHI')
_TL = struct.Struct('!HH')                  # type, length
_U32 = struct.Struct('!I')

# Switch-to-controller messages of OpenFlow 1.3 the app (and os-ken's
# handshake) uses, with their smallest length; everything in them is
# checked below.
_PARSED = {ofp.OFPT_HELLO: 8, ofp.OFPT_ERROR: 12, ofp.OFPT_ECHO_REQUEST: 8,
           ofp.OFPT_ECHO_REPLY: 8, ofp.OFPT_FEATURES_REPLY: 32,
           ofp.OFPT_GET_CONFIG_REPLY: 12, ofp.OFPT_PACKET_IN: 34,
           ofp.OFPT_PORT_STATUS: 80, ofp.OFPT_MULTIPART_REPLY: 16,
           ofp.OFPT_BARRIER_REPLY: 8, ofp.OFPT_ROLE_REPLY: 24}
# Valid from a switch, never asked for: dropped unparsed.
_IGNORED = {ofp.OFPT_EXPERIMENTER, ofp.OFPT_FLOW_REMOVED,
            ofp.OFPT_QUEUE_GET_CONFIG_REPLY, ofp.OFPT_GET_ASYNC_REPLY}
# Before the HELLO exchange only these make sense.
_HANDSHAKE = {ofp.OFPT_HELLO, ofp.OFPT_ERROR, ofp.OFPT_ECHO_REQUEST,
              ofp.OFPT_ECHO_REPLY}
_MULTIPART = {ofp.OFPMP_FLOW, ofp.OFPMP_METER_CONFIG, ofp.OFPMP_PORT_DESC}

# Fixed action lengths (os-ken parses these as fixed structures).
_ACTION_LEN = {ofp.OFPAT_OUTPUT: 16, ofp.OFPAT_COPY_TTL_OUT: 8,
               ofp.OFPAT_COPY_TTL_IN: 8, ofp.OFPAT_SET_MPLS_TTL: 8,
               ofp.OFPAT_DEC_MPLS_TTL: 8, ofp.OFPAT_PUSH_VLAN: 8,
               ofp.OFPAT_POP_VLAN: 8, ofp.OFPAT_PUSH_MPLS: 8,
               ofp.OFPAT_POP_MPLS: 8, ofp.OFPAT_SET_QUEUE: 8,
               ofp.OFPAT_GROUP: 8, ofp.OFPAT_SET_NW_TTL: 8,
               ofp.OFPAT_DEC_NW_TTL: 8, ofp.OFPAT_PUSH_PBB: 8,
               ofp.OFPAT_POP_PBB: 8}
# Nicira actions os-ken parses without looping on their contents, and
# their lengths: only what the pipeline installs (reg-move).
_NX_ACTION_LEN = {6: 24}
_INSTRUCTION_LEN = {ofp.OFPIT_GOTO_TABLE: 8, ofp.OFPIT_WRITE_METADATA: 24,
                    ofp.OFPIT_METER: 8}
_ACTION_LISTS = {ofp.OFPIT_WRITE_ACTIONS, ofp.OFPIT_APPLY_ACTIONS,
                 ofp.OFPIT_CLEAR_ACTIONS}
_BAND_TYPES = {ofp.OFPMBT_DROP, ofp.OFPMBT_DSCP_REMARK,
               ofp.OFPMBT_EXPERIMENTER}
_BAND_LEN = 16


class Nonsense(ValueError):
    """Why a message cannot be parsed safely."""


def _pad8(length):
    return (length + 7) // 8 * 8


def inspect(buf, version, handshake):
    """``(verdict, reason)`` for one whole message ``buf`` (header
    included) from a switch whose negotiated version is ``version``
    (``handshake``: no HELLO seen yet).  Never raises."""
    try:
        return _inspect(bytes(buf), version, handshake)
    except Nonsense as exc:
        return REJECT, str(exc)
    except struct.error as exc:        # a length pointed past the end
        return REJECT, 'truncated: %s' % exc


def _inspect(buf, version, handshake):
    if len(buf) < 8:
        raise Nonsense('shorter than a header')
    msg_version, msg_type, length, _ = _HEADER.unpack_from(buf)
    if length != len(buf):
        raise Nonsense('length %d in the header, %d bytes' % (
            length, len(buf)))
    if msg_type == ofp.OFPT_HELLO:
        if msg_version < 1:
            raise Nonsense('HELLO of version 0')
        _hello(buf)
        return PARSE, None
    if msg_version != version:
        raise Nonsense('version %d, but %d was negotiated' % (
            msg_version, version))
    if handshake and msg_type not in _HANDSHAKE:
        raise Nonsense('message type %d before HELLO' % msg_type)
    if msg_type in _IGNORED:
        return IGNORE, 'message type %d is not used' % msg_type
    minimum = _PARSED.get(msg_type)
    if minimum is None:
        raise Nonsense('message type %d is not one a switch sends'
                       % msg_type)
    if length < minimum:
        raise Nonsense('message type %d of %d bytes (at least %d)' % (
            msg_type, length, minimum))
    if msg_type == ofp.OFPT_ERROR:
        _error(buf)
    elif msg_type == ofp.OFPT_PACKET_IN:
        end = _match(buf, 24, length)
        if end + 2 > length:
            raise Nonsense('packet-in match runs into its data')
    elif msg_type == ofp.OFPT_MULTIPART_REPLY:
        return _multipart(buf)
    return PARSE, None


def _hello(buf):
    pos = 8
    while pos < len(buf):
        if len(buf) - pos < 4:
            raise Nonsense('HELLO element header cut short')
        _, elem_len = _TL.unpack_from(buf, pos)
        if elem_len < 4 or pos + elem_len > len(buf):
            raise Nonsense('HELLO element of length %d at byte %d' % (
                elem_len, pos))
        pos += elem_len


def _error(buf):
    err_type, _ = _TL.unpack_from(buf, 8)
    if err_type == ofp.OFPET_EXPERIMENTER and len(buf) < 16:
        raise Nonsense('experimenter error of %d bytes' % len(buf))
    if err_type == ofp.OFPET_HELLO_FAILED:
        try:                            # os-ken decodes it as ASCII
            buf[12:].decode('ascii')
        except UnicodeDecodeError:
            raise Nonsense('HELLO_FAILED text is not ASCII') from None


def _match(buf, pos, limit):
    """Check an ofp_match at ``pos``; return where it ends (padded)."""
    if limit - pos < 4:
        raise Nonsense('match header cut short')
    mtype, mlen = _TL.unpack_from(buf, pos)
    if mtype != ofp.OFPMT_OXM or mlen < 4:
        raise Nonsense('match of type %d, length %d' % (mtype, mlen))
    end = pos + _pad8(mlen)
    if end > limit:
        raise Nonsense('match of length %d runs past its container' % mlen)
    _oxms(buf, pos + 4, pos + mlen)
    return end


def _oxms(buf, pos, end):
    while pos < end:
        if end - pos < 4:
            raise Nonsense('OXM header cut short')
        (header,) = _U32.unpack_from(buf, pos)
        size = header & 0xFF
        if size == 0 or ((header >> 16) == 0xFFFF and size <= 4):
            raise Nonsense('OXM field of length %d' % size)
        pos += 4 + size
        if pos > end:
            raise Nonsense('OXM field runs past its match')


def _multipart(buf):
    mp_type, _ = _TL.unpack_from(buf, 8)
    if mp_type not in _MULTIPART:
        return IGNORE, 'multipart reply type %d is not used' % mp_type
    pos, end = 16, len(buf)
    if mp_type == ofp.OFPMP_PORT_DESC:
        if (end - pos) % ofp.OFP_PORT_SIZE:
            raise Nonsense('port description body of %d bytes' % (
                end - pos))
        return PARSE, None
    entry = _flow_stats if mp_type == ofp.OFPMP_FLOW else _meter_config
    while pos < end:
        if end - pos < 2:
            raise Nonsense('multipart entry cut short')
        (size,) = struct.unpack_from('!H', buf, pos)
        if pos + size > end:
            raise Nonsense('multipart entry of length %d runs past the '
                           'message' % size)
        entry(buf, pos, size)
        pos += size
    return PARSE, None


def _flow_stats(buf, pos, size):
    if size < ofp.OFP_FLOW_STATS_SIZE or size % 8:
        raise Nonsense('flow stats entry of length %d' % size)
    end = pos + size
    inst = _match(buf, pos + ofp.OFP_FLOW_STATS_0_SIZE, end)
    while inst < end:
        if end - inst < 4:
            raise Nonsense('instruction header cut short')
        itype, ilen = _TL.unpack_from(buf, inst)
        fixed = _INSTRUCTION_LEN.get(itype)
        if fixed is not None:
            if ilen != fixed:
                raise Nonsense('instruction %d of length %d' % (itype, ilen))
        elif itype in _ACTION_LISTS:
            if ilen < 8 or ilen % 8 or inst + ilen > end:
                raise Nonsense('action list of length %d' % ilen)
            _actions(buf, inst + 8, inst + ilen)
        else:
            raise Nonsense('unknown instruction type %d' % itype)
        if inst + ilen > end:
            raise Nonsense('instruction runs past its flow')
        inst += ilen


def _actions(buf, pos, end):
    while pos < end:
        if end - pos < 8:
            raise Nonsense('action header cut short')
        atype, alen = _TL.unpack_from(buf, pos)
        if alen < 8 or alen % 8 or pos + alen > end:
            raise Nonsense('action %d of length %d' % (atype, alen))
        fixed = _ACTION_LEN.get(atype)
        if atype == ofp.OFPAT_SET_FIELD:
            if 8 + buf[pos + 7] > alen:
                raise Nonsense('set-field runs past its action')
            _oxms(buf, pos + 4, pos + 8 + buf[pos + 7])
        elif atype == ofp.OFPAT_EXPERIMENTER:
            if alen < 16:
                raise Nonsense('experimenter action of length %d' % alen)
            (experimenter,) = _U32.unpack_from(buf, pos + 4)
            if experimenter == ofproto_common.NX_EXPERIMENTER_ID:
                (subtype,) = struct.unpack_from('!H', buf, pos + 8)
                if _NX_ACTION_LEN.get(subtype) != alen:
                    raise Nonsense('Nicira action %d of length %d is not '
                                   'one the app installs' % (subtype, alen))
        elif fixed is None or alen != fixed:
            raise Nonsense('action %d of length %d' % (atype, alen))
        pos += alen


def _meter_config(buf, pos, size):
    if size < ofp.OFP_METER_CONFIG_SIZE:
        raise Nonsense('meter config entry of length %d' % size)
    band, end = pos + ofp.OFP_METER_CONFIG_SIZE, pos + size
    while band < end:
        if end - band < 4:
            raise Nonsense('meter band header cut short')
        btype, blen = _TL.unpack_from(buf, band)
        if btype not in _BAND_TYPES or blen != _BAND_LEN or \
                band + blen > end:
            raise Nonsense('meter band %d of length %d' % (btype, blen))
        band += blen


# --- switch identity -----------------------------------------------------------

CERTIFICATE, DUPLICATE, UNKNOWN = 'certificate', 'duplicate', 'unknown'
REFUSALS = (CERTIFICATE, DUPLICATE, UNKNOWN)


def certificate_names(cert):
    """The names a verified peer certificate (``getpeercert()``'s dict)
    gives: its subject's commonName values and its subjectAltName DNS
    names."""
    names = []
    for rdn in (cert or {}).get('subject', ()):
        for key, value in rdn:
            if key == 'commonName':
                names.append(value)
    for kind, value in (cert or {}).get('subjectAltName', ()):
        if kind == 'DNS':
            names.append(value)
    return names


def refusal(dpid, cert, has_live_session, known, accept_unknown):
    """Why a switch that finished its handshake as ``dpid`` may not be that
    NVE's channel, as ``(reason, detail)``, or None to accept it.

    ``cert``: its verified TLS certificate (None on plain TCP);
    ``has_live_session``: another session of ``dpid`` is up; ``known``:
    there is an NVE record of ``dpid``."""
    name = dpid_str(dpid)
    if cert is not None:
        if not cert:
            # TLS without --ca-certs: os-ken asked for no certificate, so
            # nothing says which switch this is.
            return CERTIFICATE, ('it presented no certificate (osken-manager '
                                 'asks for one with --ca-certs)')
        names = certificate_names(cert)
        if name not in {n.strip().lower() for n in names}:
            return CERTIFICATE, 'its certificate names %s, not %s' % (
                ', '.join(repr(n) for n in names) or 'nothing', name)
    if has_live_session:
        return DUPLICATE, 'NVE %s already has a live session' % name
    if not known and not accept_unknown:
        return UNKNOWN, ('no NVE %s is registered and accept_unknown_nves '
                         'is off' % name)
    return None


def peer_certificate(datapath):
    """The verified certificate a switch presented (None on plain TCP)."""
    getpeercert = getattr(datapath.socket, 'getpeercert', None)
    if getpeercert is None:
        return None
    try:
        return getpeercert() or {}
    except (OSError, ValueError):
        return {}


def session_live(datapath):
    """Whether a switch's session is still up (not closing or closed)."""
    return datapath is not None and datapath.state != DEAD_DISPATCHER \
        and getattr(datapath, 'is_active', True)


# --- the wrapper around os-ken's parser ---------------------------------------

_ORIGINAL = ofproto_parser.msg
_hooks = {'reject': None, 'ignore': None, 'raw': None, 'fast': None}


def _parser_for(version):
    parsers = ofproto_parser._MSG_PARSERS      # pylint: disable=protected-access
    # A HELLO of a version os-ken does not know is still a HELLO (the
    # handshake negotiates down); any known parser reads its elements.
    return parsers.get(version) or parsers[max(parsers)]


def guarded_msg(datapath, version, msg_type, msg_len, xid, buf):
    """``ofproto_parser.msg`` behind :func:`inspect` (see the module
    docstring).  Returns the parsed message, or None."""
    if getattr(datapath, 'state', None) == DEAD_DISPATCHER:
        return None                  # being dropped: read nothing more
    handshake = getattr(datapath, 'state', None) == HANDSHAKE_DISPATCHER
    negotiated = datapath.ofproto.OFP_VERSION
    verdict, reason = inspect(buf[:msg_len], negotiated, handshake)
    if verdict == IGNORE:
        hook = _hooks['ignore']
        if hook is not None:
            hook(datapath, msg_type, reason)
        return None
    if verdict == PARSE:
        sink = _hooks['raw']
        if sink is not None and msg_type in rawpath.DECODERS and \
                datapath.state == MAIN_DISPATCHER:
            # The app's bulk messages skip os-ken's objects and event queue
            # (southbound/rawpath.py); only a session that is up gets them,
            # as os-ken would dispatch them to MAIN_DISPATCHER handlers.
            try:
                decoded = rawpath.decode(msg_type, buf[:msg_len])
            except (ValueError, struct.error) as exc:
                _reject(datapath, msg_type, 'cannot decode it: %s' % exc)
                return None
            if decoded is not None:
                sink(datapath, decoded)
                return None
        try:
            fast = _hooks['fast']
            msg = None if fast is None else fast(
                datapath, version, msg_type, msg_len, xid, buf)
            if msg is not None:
                return msg
            return _parser_for(version)(datapath, version, msg_type,
                                        msg_len, xid, buf)
        except Exception as exc:   # pylint: disable=broad-except
            reason = 'os-ken could not parse it: %s: %s' % (
                type(exc).__name__, exc)
    _reject(datapath, msg_type, reason)
    return None


def _reject(datapath, msg_type, reason):
    hook = _hooks['reject']
    if hook is not None:
        hook(datapath, msg_type, reason)
    drop(datapath)


def drop(datapath):
    """Disconnect a switch now: os-ken's receive loop stops at once (its
    read returns nothing), and the app sees it go as any disconnect."""
    try:
        datapath.close()             # DEAD_DISPATCHER, and no more sends
    except Exception:  # pylint: disable=broad-except
        pass
    try:
        datapath.socket.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass


def install(on_reject=None, on_ignore=None, on_raw=None, fast=None):
    """Put :func:`guarded_msg` in front of os-ken's parser (for every
    switch of this process) and say whom to tell about what it drops.
    ``on_raw(datapath, decoded)``: who takes the messages southbound/
    rawpath.py decodes (from a session in MAIN_DISPATCHER), in place of
    os-ken's parser and event queue; None leaves them to os-ken.
    ``fast(datapath, version, msg_type, msg_len, xid, buf)``, if given,
    reads a checked message that still goes to os-ken first and returns
    os-ken's object for it, or None to leave it to os-ken's parser
    (ofstats.py's ``fast_msg``: flow-stats replies)."""
    _hooks['reject'] = on_reject
    _hooks['ignore'] = on_ignore
    _hooks['raw'] = on_raw
    _hooks['fast'] = fast
    ofproto_parser.msg = guarded_msg


def uninstall():
    """Give os-ken its own parser back (tests)."""
    ofproto_parser.msg = _ORIGINAL
    _hooks['reject'] = _hooks['ignore'] = _hooks['raw'] = None
    _hooks['fast'] = None


# --- OpenFlow: our accept loop in place of os-ken's ---------------------------

_OPENFLOW = {}


def _of_phase(conn):
    datapath = conn.data
    if datapath is not None and datapath.state == MAIN_DISPATCHER:
        return BUSY, conn.accepted
    return HANDSHAKE, conn.accepted


def _of_close(conn):
    if conn.data is not None:
        drop(conn.data)
    close_now(conn.sock)


# Bytes asked of a switch's socket at a time: os-ken asks for a header,
# then for the rest of the message (two system calls and two green
# socket round trips per message; a burst of barrier replies is 8 bytes
# each).
RECV_SIZE = 65536


def split_messages(buf, pos=0):
    """``(version, type, length, xid, start)`` of each whole message in
    ``buf`` from ``pos`` on (a length below a header's counts as a header,
    as os-ken's loop counts it: the message is then rejected), and where
    the first incomplete one starts."""
    out = []
    end = len(buf)
    while end - pos >= 8:
        version, msg_type, length, xid = _HEADER.unpack_from(buf, pos)
        length = max(length, 8)
        if end - pos < length:
            break
        out.append((version, msg_type, length, xid, pos))
        pos += length
    return out, pos


def _datapath_class():
    """os-ken's Datapath with a receive loop that reads what the socket
    holds at once (RECV_SIZE) and hands each whole message to the parser
    as os-ken's loop does (ofproto_parser.msg: guarded_msg)."""
    from os_ken.controller import controller

    class Datapath(controller.Datapath):
        """A switch's session (os-ken's, reading in bulk)."""

        @controller._deactivate     # pylint: disable=protected-access
        def _recv_loop(self):
            buf = bytearray()
            count = 0
            while self.state != DEAD_DISPATCHER:
                try:
                    ret = self.socket.recv(RECV_SIZE)
                except (socket.timeout, ssl.SSLError):
                    continue         # os-ken's socket_timeout: read on
                except (EOFError, OSError):
                    break
                if not ret:
                    break
                buf += ret
                found, used = split_messages(buf)
                for version, msg_type, length, xid, start in found:
                    msg = ofproto_parser.msg(self, version, msg_type, length,
                                             xid, buf[start:start + length])
                    if msg:
                        self._dispatch(msg)
                    count += 1
                    if count > 2048:     # let other switches' loops run
                        count = 0
                        hub.sleep(0)
                del buf[:used]

        def _dispatch(self, msg):
            # What os-ken's own loop does with a parsed message.
            ev = ofp_event.ofp_msg_to_ev(msg)
            brick = self.ofp_brick
            if brick is None:
                return
            brick.send_event_to_observers(ev, self.state)
            state = self.state
            handlers = [h for h in brick.get_handlers(ev)
                        if state in h.callers[ev.__class__].dispatchers]
            for handler in handlers:
                handler(ev)

    return Datapath


def _of_serve(conn):
    """os-ken's datapath_connection_factory, with the datapath kept where
    the reaper sees it and without re-raising (a switch that breaks its
    connection is logged, at a bounded rate, not a traceback)."""
    if 'datapath' not in _OPENFLOW:
        _OPENFLOW['datapath'] = _datapath_class()
    datapath = conn.data = _OPENFLOW['datapath'](conn.sock, conn.addr)
    try:
        datapath.serve()
    finally:
        datapath.close()


class OpenFlowServer:
    """Stands in for ``hub.StreamServer`` in os-ken's controller module:
    same constructor, our accept loop; with os-ken's TLS options
    (``certfile``, ``keyfile``, ``ca_certs``, ``ciphers`` in ``ssl_args``)
    it serves TLS, requiring a client certificate when ``ca_certs`` is
    given, as os-ken does."""

    def __init__(self, listen_info, handle=None, backlog=None,
                 spawn='default', **ssl_args):
        conf = _OPENFLOW
        tls = None
        if ssl_args:
            tls = server_context(ssl_args['certfile'], ssl_args['keyfile'],
                                 ssl_args.get('ca_certs'),
                                 ssl_args.get('ciphers'))
        self.server = listen(listen_info[0], listen_info[1])
        self.listener = Listener(
            self.server, 'openflow', _of_serve, _of_phase,
            conf['max_connections'],
            timeouts={HANDSHAKE: conf['handshake_timeout']},
            evict=(HANDSHAKE,), counters=conf['counters'], log=conf['log'],
            close=_of_close, tls=tls,
            tls_timeout=conf['handshake_timeout'])
        conf['listener'] = self.listener

    def serve_forever(self):
        """Accept switches until the listening socket closes."""
        return self.listener.serve_forever()


def install_openflow(max_connections, handshake_timeout, counters, log):
    """Make os-ken's OpenFlow controller accept through a Listener (call
    before os-ken starts it: from an app's __init__)."""
    from os_ken.controller import controller
    if 'original' not in _OPENFLOW:
        _OPENFLOW['original'] = controller.StreamServer
    _OPENFLOW.update(max_connections=max_connections,
                     handshake_timeout=handshake_timeout, counters=counters,
                     log=log)
    controller.StreamServer = OpenFlowServer
