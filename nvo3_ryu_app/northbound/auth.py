"""Who may change the network: the auth file, REST tokens, hypervisor logins.

``[nvo3] auth_file`` names a JSON document (docs/contracts.md,
authentication)::

    {"tokens": [{"token": "...", "role": "admin", "name": "ops"},
                {"token": "...", "role": "reader"}],
     "hypervisors": [{"name": "hv1", "secret": "...",
                      "nves": ["0000000000000001"]}]}

* REST: ``Authorization: Bearer <token>``.  An ``admin`` token may write,
  a ``reader`` token only read (``GET``); ``/metrics`` and the web page's
  files need none.  A token's ``name`` is who it is in the audit trail
  (an event's ``actor``); without one it is ``token-`` and the first 8 hex
  digits of the token's SHA-256 (the token itself is never logged).
* The registration RPC: a connection calls ``login({"name", "secret"})``
  first; the hypervisor may then register and de-register vNICs on its own
  NVEs (``nves``) only.

Tokens and secrets are compared in constant time (as SHA-256 digests, so
neither their length nor which entry matched shows in the time taken), and
must be at least :data:`MIN_SECRET` characters long.

Without an auth file nothing is checked, so REST and the RPC must listen on
loopback only: :func:`exposure` says what is exposed otherwise (the app
refuses to start).

Plain Python: the REST server and the RPC use it, the tests too.
"""

import hashlib
import hmac
import ipaddress
import json
from dataclasses import dataclass

from ..authority.addresses import dpid_str, norm_dpid
from ..authority.errors import BadRequest, MappingError

ADMIN, READER = 'admin', 'reader'
ROLES = (ADMIN, READER)
MIN_SECRET = 16
MAX_NAME = 64


class AuthFileError(Exception):
    """The auth file cannot be read or says something wrong."""


class Unauthorized(MappingError):
    """No valid credentials (REST 401, with ``WWW-Authenticate``)."""

    status = 401
    code = 'unauthorized'

    def __init__(self, message, field_name=None, invalid=False):
        super().__init__(message, field_name)
        challenge = 'Bearer realm="nvo3"'
        if invalid:
            challenge += ', error="invalid_token"'
        self.headers = [('WWW-Authenticate', challenge)]


class Forbidden(MappingError):
    """Valid credentials that do not allow this (REST 403)."""

    status = 403
    code = 'forbidden'


@dataclass(frozen=True)
class Principal:
    """Who presented a REST token: its name (the actor) and role."""

    name: str
    role: str

    @property
    def may_write(self):
        """Whether the token may change anything."""
        return self.role == ADMIN


@dataclass(frozen=True)
class Hypervisor:
    """A hypervisor agent that logged in, and the NVEs it may register on."""

    name: str
    nves: frozenset

    def check_nve(self, nve):
        """Refuse (Forbidden) an NVE that is not this hypervisor's."""
        dpid = norm_dpid(nve, 'nve')
        if dpid not in self.nves:
            raise Forbidden('hypervisor %s may register only on its own NVEs '
                            '(%s), not on NVE %s' % (
                                self.name, ', '.join(
                                    dpid_str(d) for d in sorted(self.nves))
                                or 'none', dpid_str(dpid)), 'nve')


def _digest(text):
    return hashlib.sha256(text.encode('utf-8')).digest()


def token_name(token):
    """The name a token without one has in the audit trail."""
    return 'token-' + hashlib.sha256(token.encode('utf-8')).hexdigest()[:8]


class Auth:
    """The credentials of one auth file (see the module docstring)."""

    def __init__(self, tokens=(), hypervisors=()):
        # [(digest, Principal)] and {name: (digest, Hypervisor)}
        self._tokens = list(tokens)
        self._hypervisors = dict(hypervisors)
        self._dummy = _digest('\0' * MIN_SECRET)

    @classmethod
    def load(cls, path):
        """The auth file at ``path``; AuthFileError names what is wrong."""
        try:
            with open(path, 'rb') as handle:
                doc = json.loads(handle.read().decode('utf-8'))
        except (OSError, ValueError) as exc:
            raise AuthFileError('cannot read auth file %s: %s' % (
                path, exc)) from None
        try:
            return cls.from_document(doc)
        except AuthFileError as exc:
            raise AuthFileError('auth file %s: %s' % (path, exc)) from None

    @classmethod
    def from_document(cls, doc):
        """Validate a parsed auth document."""
        _keys(doc, 'the document', (), ('tokens', 'hypervisors'))
        tokens, names = [], set()
        seen = set()
        for i, item in enumerate(_list(doc, 'tokens')):
            where = 'tokens[%d]' % i
            _keys(item, where, ('token', 'role'), ('name',))
            token = _secret(item['token'], where + '.token')
            role = item['role']
            if role not in ROLES:
                raise AuthFileError('%s.role must be one of %s, not %r' % (
                    where, ', '.join(ROLES), role))
            name = item.get('name')
            name = token_name(token) if name is None else _name(
                name, where + '.name')
            digest = _digest(token)
            if digest in seen:
                raise AuthFileError('%s: the same token twice' % where)
            if name in names:
                raise AuthFileError('%s: name %r is used twice' % (
                    where, name))
            seen.add(digest)
            names.add(name)
            tokens.append((digest, Principal(name, role)))
        hypervisors = {}
        for i, item in enumerate(_list(doc, 'hypervisors')):
            where = 'hypervisors[%d]' % i
            _keys(item, where, ('name', 'secret', 'nves'), ())
            name = _name(item['name'], where + '.name')
            if name in hypervisors:
                raise AuthFileError('%s: hypervisor %r twice' % (where, name))
            secret = _secret(item['secret'], where + '.secret')
            if not isinstance(item['nves'], list):
                raise AuthFileError('%s.nves must be a list of datapath ids'
                                    % where)
            try:
                nves = frozenset(norm_dpid(d, where + '.nves')
                                 for d in item['nves'])
            except BadRequest as exc:
                raise AuthFileError(exc.message) from None
            hypervisors[name] = (_digest(secret), Hypervisor(name, nves))
        return cls(tokens, hypervisors)

    # -- checks --

    def token(self, presented):
        """The Principal of a presented REST token, or None."""
        digest = _digest(presented)
        found = None
        for known, principal in self._tokens:
            # Every entry is compared: the time says nothing of which one.
            if hmac.compare_digest(digest, known):
                found = principal
        return found

    def login(self, name, secret):
        """The Hypervisor ``name`` if ``secret`` is its secret, else None."""
        known, hypervisor = self._hypervisors.get(name, (self._dummy, None))
        ok = hmac.compare_digest(_digest(secret), known)
        return hypervisor if ok and hypervisor is not None else None

    @property
    def names(self):
        """Token names and hypervisor names (for the start-up log)."""
        return ([p.name for _, p in self._tokens],
                sorted(self._hypervisors))


def _keys(item, where, required, optional):
    if not isinstance(item, dict):
        raise AuthFileError('%s must be an object' % where)
    unknown = sorted(set(item) - set(required) - set(optional))
    if unknown:
        raise AuthFileError('%s: unknown key(s) %s' % (
            where, ', '.join(map(repr, unknown))))
    missing = [k for k in required if k not in item]
    if missing:
        raise AuthFileError('%s: missing %s' % (where, ', '.join(
            map(repr, missing))))


def _list(doc, key):
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise AuthFileError('%s must be a list' % key)
    return value


def _secret(value, where):
    if not isinstance(value, str) or len(value) < MIN_SECRET:
        raise AuthFileError('%s must be a string of at least %d characters '
                            '(a shorter one can be guessed)' % (
                                where, MIN_SECRET))
    return value


def _name(value, where):
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME or \
            not value.isprintable():
        raise AuthFileError('%s must be a printable name of 1 to %d '
                            'characters' % (where, MAX_NAME))
    return value


# --- without an auth file: loopback only --------------------------------------

def is_loopback(host):
    """Whether listening on ``host`` reaches this machine only."""
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure(settings):
    """What listens beyond loopback without an auth file to protect it:
    ``[(option, host)]`` (empty when there is an auth file)."""
    if settings.auth_file:
        return []
    return [(option, getattr(settings, option))
            for option in ('rest_listen_host', 'rpc_listen_host')
            if not is_loopback(getattr(settings, option))]


def bearer(header):
    """The token of an ``Authorization: Bearer <token>`` header value, or
    None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(' ')
    token = token.strip()
    if scheme.lower() != 'bearer' or not token:
        return None
    return token


__all__ = ['Auth', 'AuthFileError', 'Principal', 'Hypervisor',
           'Unauthorized', 'Forbidden', 'exposure', 'is_loopback', 'bearer',
           'token_name', 'ADMIN', 'READER']
