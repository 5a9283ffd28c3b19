"""nvo3-register: a hypervisor agent's client of the registration RPC.

    nvo3-register [--server HOST:PORT] [--name HV --secret-file F]
                  [--tls [--cacert CA]] [--json] COMMAND ...

    register   --nve DPID --port NAME --mac MAC --vnid VNID
               [--ip IP] [--vlan VLAN] [--bid BID]
    deregister --nve DPID --mac MAC [--bid BID]
    query      --vnid VNID --mac MAC

Tells the mapping authority (docs/contracts.md, registration, draft sections 4.2 and 6.1) which
vNIC addresses are attached where, instead of waiting for their packets.
A vNIC with one IP needs no BID; once it has several, each has one.  The
first registration of a BID carries its IP (L3 VN) or VLAN (L2 VN); later
re-registrations and de-registrations carry only ``--bid``.

Where the authority checks who registers (docs/contracts.md,
authentication), the client logs in first as hypervisor ``--name`` (or
``$NVO3_HV_NAME``) with the secret in ``--secret-file`` (or
``$NVO3_HV_SECRET``; never on the command line, where other users see it),
and may then register only on its own NVEs.  ``--tls`` talks TLS to an RPC
served with a certificate (``--cacert``: its CA).

A registration that takes a vNIC or an address over from a live location
waits while the authority probes it; if the verdict is not in by the
reply, it says ``pending`` (``query`` later).

Prints what the authority answered (``--json``: the reply map as JSON).
Exit status: 0 done, 1 refused by the authority (its reason and the field
go to stderr), 2 usage error or the server cannot be reached.

Only needs ``msgpack``: the wire format is msgpack-RPC as os-ken's
``os_ken.lib.rpc`` speaks it, so :class:`RegistrationClient` can also be
used as a library by an agent.
"""

import argparse
import json
import os
import socket
import ssl
import sys

import msgpack

DEFAULT_SERVER = '127.0.0.1:6699'
OK, REFUSED, FAILED = 0, 1, 2


class Refused(Exception):
    """The authority answered with an RPC error."""

    def __init__(self, error):
        if not isinstance(error, dict):
            error = {'code': 'error', 'message': str(error), 'field': None}
        super().__init__(error.get('message'))
        self.code = error.get('code')
        self.message = error.get('message')
        self.field = error.get('field')

    def __str__(self):
        where = ' (field %s)' % self.field if self.field else ''
        return 'refused: %s: %s%s' % (self.code, self.message, where)


class ConnectionFailed(Exception):
    """No server, or it did not answer a well-formed reply."""


class RegistrationClient:
    """A synchronous msgpack-RPC client of the registration server."""

    def __init__(self, host, port, timeout=10.0, tls=None):
        """``tls``: an ssl.SSLContext to talk TLS with (None: plain TCP)."""
        self.address = (host, port)
        try:
            self.sock = socket.create_connection(self.address,
                                                 timeout=timeout)
            if tls is not None:
                self.sock = tls.wrap_socket(self.sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionFailed('cannot connect to %s: %s' % (
                _address_text(host, port), exc)) from None
        self._unpacker = msgpack.Unpacker(strict_map_key=False)
        self._msgid = 0

    def close(self):
        """Close the connection."""
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, method, **fields):
        """One request; returns the result map or raises :class:`Refused`."""
        self._msgid = (self._msgid + 1) & 0xFFFFFFFF
        msgid = self._msgid
        params = {k: v for k, v in fields.items() if v is not None}
        try:
            self.sock.sendall(msgpack.packb([0, msgid, method, [params]]))
            while True:
                for msg in self._unpacker:
                    if isinstance(msg, list) and len(msg) == 4 \
                            and msg[0] == 1 and msg[1] == msgid:
                        if msg[2] is not None:
                            raise Refused(msg[2])
                        return msg[3]
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionFailed('the server closed the '
                                           'connection')
                self._unpacker.feed(data)
        except OSError as exc:
            raise ConnectionFailed('%s: %s' % (
                _address_text(*self.address), exc)) from None
        except (ValueError, msgpack.UnpackException) as exc:
            raise ConnectionFailed('bad reply from %s: %s' % (
                _address_text(*self.address), exc)) from None

    def login(self, name, secret):
        """Log in as hypervisor ``name`` (once per connection)."""
        return self.call('login', name=name, secret=secret)

    def associate(self, nve, port, mac, vnid, ip=None, vlan=None, bid=None):
        """Register a vNIC binding; returns the authority's answer."""
        return self.call('associate', nve=nve, port=port, mac=mac,
                         vnid=vnid, ip=ip, vlan=vlan, bid=bid)

    def dissociate(self, nve, mac, bid=None):
        """De-register a binding (or a vNIC without BIDs)."""
        return self.call('dissociate', nve=nve, mac=mac, bid=bid)

    def query(self, vnid, mac):
        """The TESID, mapping entries and bindings of a vNIC."""
        return self.call('query', vnid=vnid, mac=mac)


def _address_text(host, port):
    return '[%s]:%d' % (host, port) if ':' in host else '%s:%d' % (host,
                                                                    port)


def parse_server(text):
    """``host:port``, ``[v6]:port`` or ``host`` -> (host, port)."""
    default_port = int(DEFAULT_SERVER.rsplit(':', 1)[1])
    host, port = text, None
    if text.startswith('['):
        host, _, rest = text[1:].partition(']')
        if rest:
            if not rest.startswith(':'):
                raise ValueError('bad server address %r' % text)
            port = rest[1:]
    elif text.count(':') == 1:
        host, port = text.split(':')
    if not host:
        raise ValueError('bad server address %r' % text)
    try:
        port = int(port) if port is not None else default_port
    except ValueError:
        raise ValueError('bad port in server address %r' % text) from None
    if not 0 < port < 65536:
        raise ValueError('bad port in server address %r' % text)
    return host, port


# --- output ------------------------------------------------------------------

def _table(rows, headers):
    rows = [['-' if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows
              else len(h) for i, h in enumerate(headers)]
    lines = ['  '.join(h.upper().ljust(w) for h, w in zip(headers, widths))]
    lines += ['  '.join(v.ljust(w) for v, w in zip(row, widths))
              for row in rows]
    return '\n'.join(line.rstrip() for line in lines)


def _binding_text(b):
    what = ('IP %s' % b.get('ip') if b.get('service') == 'l3'
            else 'VLAN %s' % (b.get('vlan') if b.get('vlan') is not None
                              else 'untagged'))
    bid = 'BID %s' % b['bid'] if b.get('bid') is not None else 'no BID'
    return '%s %s, %s, in VN %s at NVE %s port %s' % (
        b.get('mac'), what, bid, b.get('vnid'), b.get('nve'), b.get('port'))


def _bindings_text(mac, bindings):
    if not bindings:
        return 'binding cache of %s: empty' % mac
    rows = [(b.get('bid'), b.get('vnid'), b.get('service'),
             b.get('ip') if b.get('service') == 'l3' else b.get('vlan'),
             b.get('nve'), b.get('port')) for b in bindings]
    return 'binding cache of %s:\n%s' % (mac, _indent(_table(
        rows, ('bid', 'vn', 'service', 'ip/vlan', 'nve', 'port'))))


def _entries_text(entries):
    rows = [(e.get('vnid'), e.get('mac'), e.get('ip'), e.get('bid'),
             e.get('vlan'), e.get('nve'), e.get('nve_ip'), e.get('port'),
             e.get('tunnel_if_id'), e.get('source')) for e in entries]
    return 'mapping entries:\n%s' % _indent(_table(
        rows, ('vn', 'mac', 'ip', 'bid', 'vlan', 'nve', 'nve_ip', 'port',
               'tunnel_if_id', 'source')))


def _indent(text):
    return '\n'.join('  ' + line for line in text.splitlines())


def format_result(command, args, result):
    """An answer of the authority as text for ``command``."""
    mac = (args.mac or '').lower()
    if command == 'register' and result.get('action') == 'pending':
        return 'pending: %s (verification %s)' % (
            result.get('message'), result.get('verification'))
    if command == 'register':
        lines = ['%s: %s' % (result.get('action', 'registered'),
                             _binding_text(result.get('binding') or {}))]
        tesid = result.get('tesid') or {}
        lines.append('TESID <VN %s, NVE %s, TS %s>' % (
            tesid.get('vnid'), tesid.get('nve'), tesid.get('ts')))
        lines.append(_bindings_text(mac, result.get('bindings')))
        return '\n'.join(lines)
    if command == 'deregister':
        removed = result.get('removed') or []
        lines = ['deregistered: %s' % _binding_text(b) for b in removed]
        lines.append(_bindings_text(mac, result.get('bindings')))
        return '\n'.join(lines)
    tesid = result.get('tesid') or {}
    return '\n'.join([
        'TESID <VN %s, NVE %s, TS %s>' % (tesid.get('vnid'), tesid.get('nve'),
                                          tesid.get('ts')),
        _entries_text(result.get('entries') or []),
        _bindings_text(mac, result.get('bindings'))])


# --- command line ------------------------------------------------------------

def build_parser():
    """The command-line parser of nvo3-register."""
    parser = argparse.ArgumentParser(
        prog='nvo3-register',
        description='Register tenant-system vNICs with the NVO3 mapping '
                    'authority (msgpack-RPC, docs/contracts.md, registration).',
        epilog='Exit status: 0 done, 1 refused by the authority, 2 usage '
               'error or server unreachable.')
    parser.add_argument('--server', default=DEFAULT_SERVER,
                        help='HOST:PORT of the registration RPC (default '
                             '%(default)s)')
    parser.add_argument('--timeout', type=float, default=10.0,
                        help='seconds to wait for the server')
    parser.add_argument('--json', action='store_true',
                        help='print the reply map as JSON')
    parser.add_argument('--name', default=os.environ.get('NVO3_HV_NAME'),
                        help='log in as this hypervisor (default: '
                             '$NVO3_HV_NAME)')
    parser.add_argument('--secret-file',
                        help='file holding the hypervisor\'s secret '
                             '(default: $NVO3_HV_SECRET)')
    parser.add_argument('--tls', action='store_true',
                        help='talk TLS to the RPC')
    parser.add_argument('--cacert', help='with --tls: the CA certificate '
                        'of the server (default: the system\'s)')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True

    reg = sub.add_parser('register', help='associate a vNIC address with a '
                         'VN at an NVE access port')
    reg.add_argument('--nve', required=True, help='datapath id (hex)')
    reg.add_argument('--port', required=True, help='access port name')
    reg.add_argument('--mac', required=True, help='vNIC MAC address')
    reg.add_argument('--vnid', required=True, type=int, help='VN id')
    reg.add_argument('--ip', help='IP of the binding (first registration '
                     'in an L3 VN)')
    reg.add_argument('--vlan', type=int, help='VLAN ID of the binding '
                     '(first registration in an L2 VN)')
    reg.add_argument('--bid', type=int, help='binding identifier 1..65535 '
                     '(needed once the vNIC has several bindings)')

    dereg = sub.add_parser('deregister', help='dissociate a binding (by '
                           'BID) or a vNIC without BIDs')
    dereg.add_argument('--nve', required=True, help='datapath id (hex)')
    dereg.add_argument('--mac', required=True, help='vNIC MAC address')
    dereg.add_argument('--bid', type=int, help='binding identifier')

    query = sub.add_parser('query', help='TESID, mapping entries and '
                           'binding cache of a vNIC in a VN')
    query.add_argument('--vnid', required=True, type=int, help='VN id')
    query.add_argument('--mac', required=True, help='vNIC MAC address')
    return parser


def main(argv=None, out=None, err=None):
    """Run nvo3-register; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:       # argparse: usage errors exit 2
        return exc.code if isinstance(exc.code, int) else FAILED
    try:
        host, port = parse_server(args.server)
    except ValueError as exc:
        print('nvo3-register: %s' % exc, file=err)
        return FAILED
    secret = os.environ.get('NVO3_HV_SECRET')
    if args.secret_file:
        try:
            with open(args.secret_file, encoding='utf-8') as handle:
                secret = handle.read().strip()
        except OSError as exc:
            print('nvo3-register: %s' % exc, file=err)
            return FAILED
    tls = None
    if args.tls:
        tls = ssl.create_default_context(cafile=args.cacert)
    try:
        with RegistrationClient(host, port, timeout=args.timeout,
                                tls=tls) as client:
            if args.name:
                if secret is None:
                    print('nvo3-register: --name needs a secret '
                          '(--secret-file or $NVO3_HV_SECRET)', file=err)
                    return FAILED
                client.login(args.name, secret)
            if args.command == 'register':
                result = client.associate(args.nve, args.port, args.mac,
                                          args.vnid, ip=args.ip,
                                          vlan=args.vlan, bid=args.bid)
            elif args.command == 'deregister':
                result = client.dissociate(args.nve, args.mac, bid=args.bid)
            else:
                result = client.query(args.vnid, args.mac)
    except Refused as exc:
        print('nvo3-register: %s' % exc, file=err)
        return REFUSED
    except ConnectionFailed as exc:
        print('nvo3-register: %s' % exc, file=err)
        return FAILED
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True), file=out)
    else:
        print(format_result(args.command, args, result or {}), file=out)
    return OK


if __name__ == '__main__':
    sys.exit(main())
