"""REST and the registration RPC over TLS with an auth file, the start-up
refusal without one, and SIGHUP re-reading it: the real app under
osken-manager (no switches needed), real TLS clients (urllib, nvo3ctl,
nvo3-register), certificates from a per-run CA (testbed/pki.py)."""

import io
import json
import os
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request

import pytest

from nvo3_ryu_app.cli import nvo3ctl, register
from nvo3_ryu_app.cli.register import (ConnectionFailed, Refused,
                                       RegistrationClient)
from nvo3_ryu_app.testbed.controller import ControllerProcess
from nvo3_ryu_app.testbed.pki import Pki

pytestmark = pytest.mark.integration

ADMIN, READER = 'a1' * 16, 'r1' * 16
SECRET = 's1' * 10
DOC = {'tokens': [{'name': 'ops', 'role': 'admin', 'token': ADMIN},
                  {'name': 'viewer', 'role': 'reader', 'token': READER}],
       'hypervisors': [{'name': 'hv1', 'secret': SECRET,
                        'nves': ['0000000000000001']}]}


@pytest.fixture(scope='module')
def app():
    ctl = ControllerProcess(auth=DOC)
    pki = Pki(os.path.join(ctl.rundir, 'pki'))
    key, cert = pki.issue('api', 'localhost', dns=['localhost'],
                          ips=['127.0.0.1'])
    ctl.extra_ini = '\n'.join([
        'rest_tls_cert = %s' % cert, 'rest_tls_key = %s' % key,
        'rpc_tls_cert = %s' % cert, 'rpc_tls_key = %s' % key,
        'rest_request_timeout = 2', 'rpc_request_timeout = 2'])
    try:
        ctl.start(timeout=60, wait_for=('of', 'rest', 'rpc'))
        ctl.ca = pki.ca_cert
        yield ctl
    finally:
        problems = ctl.close()
    assert problems == [], problems


def https(app, method, path, token=None, body=None):
    """One https request, the CA checked: (status, JSON body)."""
    headers = {'Content-Type': 'application/json'}
    if token:
        headers['Authorization'] = 'Bearer ' + token
    req = urllib.request.Request(
        'https://127.0.0.1:%d%s' % (app.rest_port, path), method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers)
    context = ssl.create_default_context(cafile=app.ca)
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b'null')


def metric(app, name):
    context = ssl.create_default_context(cafile=app.ca)
    with urllib.request.urlopen('https://127.0.0.1:%d/metrics' % app.rest_port,
                                timeout=10, context=context) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + ' ') or line.startswith(name + '{'):
                return float(line.rsplit(' ', 1)[1])
    return 0.0


def test_rest_over_tls_needs_a_token(app):
    assert https(app, 'GET', '/v1/vns')[0] == 401
    assert https(app, 'GET', '/v1/vns', READER) == (200, [])
    status, body = https(app, 'POST', '/v1/vns', READER,
                         {'vnid': 5001, 'name': 'blue'})
    assert status == 403 and body['error']['code'] == 'forbidden'
    assert https(app, 'POST', '/v1/vns', ADMIN,
                 {'vnid': 5001, 'name': 'blue'})[0] == 201
    # nvo3ctl: --cacert for the https URL, the token from the environment.
    out, err = io.StringIO(), io.StringIO()
    os.environ['NVO3_TOKEN'] = READER
    try:
        code = nvo3ctl.main(['--url', 'https://127.0.0.1:%d' % app.rest_port,
                             '--cacert', app.ca, '--json', 'vns'], out, err)
    finally:
        del os.environ['NVO3_TOKEN']
    assert code == 0, err.getvalue()
    assert [vn['vnid'] for vn in json.loads(out.getvalue())] == [5001]
    # Plain HTTP to the TLS port gets nowhere.
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen('http://127.0.0.1:%d/v1/vns' % app.rest_port,
                               timeout=10).read()


def test_a_tls_client_that_never_says_hello_is_closed(app):
    before = metric(app, 'nvo3_rest_tls_failed_total')
    for port in (app.rest_port, app.rpc_port):
        with socket.create_connection(('127.0.0.1', port), timeout=10) as s:
            t0 = time.monotonic()
            assert s.recv(100) == b''
            assert time.monotonic() - t0 < 5      # the 2 s request timeout
    assert metric(app, 'nvo3_rest_tls_failed_total') > before
    assert metric(app, 'nvo3_rpc_tls_failed_total') >= 1


def test_the_rpc_over_tls_needs_a_login(app):
    context = ssl.create_default_context(cafile=app.ca)
    with RegistrationClient('127.0.0.1', app.rpc_port, tls=context) as cl:
        with pytest.raises(Refused) as info:
            cl.query(5001, '02:00:00:00:00:01')
        assert info.value.code == 'unauthorized'
        assert cl.login('hv1', SECRET)['nves'] == ['0000000000000001']
        with pytest.raises(Refused) as info:
            cl.query(5001, '02:00:00:00:00:01')
        assert info.value.code == 'not-found'
    # nvo3-register: the secret from a file, TLS with the app's CA.
    secret_file = os.path.join(app.rundir, 'hv1.secret')
    with open(secret_file, 'w', encoding='utf-8') as fh:
        fh.write(SECRET + '\n')
    server = ['--server', '127.0.0.1:%d' % app.rpc_port, '--tls', '--cacert',
              app.ca]
    query = ['query', '--vnid', '5001', '--mac', '02:00:00:00:00:01']
    out, err = io.StringIO(), io.StringIO()
    assert register.main(server + query, out, err) == 1
    assert 'log in first' in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert register.main(server + ['--name', 'hv1', '--secret-file',
                                   secret_file] + query, out, err) == 1
    # Logged in: the query is answered (there is no such VN).
    assert 'refused: not-found' in err.getvalue(), err.getvalue()
    # A client that does not trust the app's CA does not talk to it.
    with pytest.raises(ConnectionFailed):
        RegistrationClient('127.0.0.1', app.rpc_port,
                           tls=ssl.create_default_context())


def hangup(app, done):
    """SIGHUP the app and wait until ``done()`` (the file is re-read in
    the app's own time)."""
    os.kill(app.pid, signal.SIGHUP)
    deadline = time.monotonic() + 15
    while not done():
        assert time.monotonic() < deadline, app.log_tail()
        time.sleep(0.1)


def test_sighup_rereads_the_auth_file(app):
    new = 'n1' * 16
    doc = dict(DOC, tokens=[{'name': 'ops2', 'role': 'admin', 'token': new}])
    with open(app.auth_path, 'w', encoding='utf-8') as fh:
        json.dump(doc, fh)
    hangup(app, lambda: https(app, 'GET', '/v1/vns', new)[0] == 200)
    assert https(app, 'GET', '/v1/vns', ADMIN)[0] == 401
    # A broken file keeps what was loaded.
    with open(app.auth_path, 'w', encoding='utf-8') as fh:
        fh.write('{"tokens": [')
    hangup(app, lambda: 'credentials loaded before stay' in app.log_text())
    assert https(app, 'GET', '/v1/vns', new)[0] == 200
    with open(app.auth_path, 'w', encoding='utf-8') as fh:
        json.dump(DOC, fh)
    hangup(app, lambda: https(app, 'GET', '/v1/vns', ADMIN)[0] == 200)


@pytest.mark.parametrize('ini', ['rest_listen_host = 0.0.0.0',
                                 'rpc_listen_host = 0.0.0.0'])
def test_without_an_auth_file_the_app_listens_on_loopback_only(ini):
    ctl = ControllerProcess(extra_ini=ini)
    try:
        with pytest.raises(Exception) as info:
            ctl.start(timeout=60, wait_for=('rest',))
        assert 'exited (code 2)' in str(info.value), str(info.value)
        ctl.stop()
        said = [line for line in ctl.log_text().splitlines()
                if 'cannot start' in line]
        assert len(said) == 1, ctl.log_tail()
        assert 'without an auth_file' in said[0] and ini in said[0], said
        assert 'Traceback' not in ctl.log_text()
    finally:
        ctl.close(keep_on_problems=False)
