"""What checking who may change the network costs (northbound/auth.py,
runtime/listener.py's TLS).

* REST: a ``GET /v1/vns`` answered in-process by the WSGI app (a populated
  database, as in the REST unit tests) without an auth file, and with one
  (the request carries a reader token; the file holds ``--tokens`` tokens,
  every one compared in constant time);
* RPC: one ``login`` check (SHA-256 and a constant-time comparison);
* TLS: the app's CPU time for one full TLS handshake of a switch (TLS 1.3,
  RSA-2048 keys, the client's certificate verified against the CA, as
  ``--ca-certs`` asks), measured in the serving thread with
  ``time.thread_time`` over loopback, and what a fleet reconnecting at once
  costs the app's one event loop (handshakes are green: they run in it).

Usage::

    .venv/bin/python benchmarks/auth_bench.py [--tokens 100] [--handshakes 200]

Prints a table and writes benchmarks/results/auth.json.
"""

import argparse
import os
import socket
import ssl
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'tests', 'unit'))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'tests'))

from nvo3_ryu_app.northbound import auth as A  # noqa: E402
from nvo3_ryu_app.northbound import rest  # noqa: E402
from nvo3_ryu_app.testbed.pki import Pki  # noqa: E402

import benchenv  # noqa: E402
import benchlib  # noqa: E402
import rest_support  # noqa: E402

FLEET = 1000


def best(func, rounds, per=1):
    """The fastest of ``rounds`` runs of ``func`` (``per`` calls each), in
    microseconds per call."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return round(min(times) / per * 1e6, 2)


def rest_costs(tokens):
    ctl, app, client = rest_support.populated()
    doc = {'tokens': [{'token': '%032x' % i, 'role': 'reader',
                       'name': 't%d' % i} for i in range(tokens)]}
    secured = rest.make_app(ctl, auth=A.Auth.from_document(doc))
    last = {'Authorization': 'Bearer %032x' % (tokens - 1)}
    plain_client, auth_client = client, rest_support.Client(secured)
    assert plain_client.call('GET', '/v1/vns')[0] == 200
    assert auth_client.call('GET', '/v1/vns', headers=last)[0] == 200
    assert auth_client.call('GET', '/v1/vns')[0] == 401
    n = 200
    plain, checked = [], []
    for _ in range(10):         # interleaved: the same machine state for both
        plain.append(best(lambda: [plain_client.call('GET', '/v1/vns')
                                   for _ in range(n)], 1, n))
        checked.append(best(lambda: [auth_client.call('GET', '/v1/vns',
                                                      headers=last)
                                     for _ in range(n)], 1, n))
    plain, checked = min(plain), min(checked)
    auth = A.Auth.from_document(doc)
    lookup = best(lambda: [auth.token('%032x' % 7) for _ in range(n)], 5, n)
    hv = A.Auth.from_document({'hypervisors': [
        {'name': 'hv1', 'secret': 's' * 32, 'nves': ['0000000000000001']}]})
    login = best(lambda: [hv.login('hv1', 's' * 32) for _ in range(n)], 5, n)
    # The difference of two whole requests drowns in the noise of a shared
    # machine: the check itself (header parsed, every token compared) is
    # timed alone.
    header = last['Authorization']
    check = best(lambda: [auth.token(A.bearer(header)) for _ in range(n)],
                 20, n)
    return {'rest_get_vns_us_plain': plain,
            'rest_get_vns_us_with_token': checked,
            'rest_token_check_us': check,
            'token_lookup_us': lookup, 'tokens_in_file': tokens,
            'rpc_login_check_us': login}


def tls_costs(handshakes):
    with tempfile.TemporaryDirectory(prefix='nvo3-authbench-') as tmp:
        pki = Pki(tmp)
        key, cert = pki.issue('nve1', '0000000000000001')
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.minimum_version = ssl.TLSVersion.TLSv1_2
        server.load_cert_chain(pki.controller_cert, pki.controller_key)
        server.load_verify_locations(pki.ca_cert)
        server.verify_mode = ssl.CERT_REQUIRED
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.load_verify_locations(pki.ca_cert)
        client.load_cert_chain(cert, key)
        lsock = socket.socket()
        lsock.bind(('127.0.0.1', 0))
        lsock.listen(16)
        port = lsock.getsockname()[1]
        cpu, wall, version = [], [], []

        def serve():
            for _ in range(handshakes):
                conn, _ = lsock.accept()
                c0, w0 = time.thread_time(), time.perf_counter()
                tls = server.wrap_socket(conn, server_side=True)
                cpu.append(time.thread_time() - c0)
                wall.append(time.perf_counter() - w0)
                version.append(tls.version())
                assert tls.getpeercert()['subject']
                tls.close()

        thread = threading.Thread(target=serve)
        thread.start()
        for _ in range(handshakes):
            with socket.create_connection(('127.0.0.1', port)) as raw:
                with client.wrap_socket(raw) as tls:
                    tls.recv(1)         # until the server closes
        thread.join()
        lsock.close()
    cpu_ms = benchenv.percentile(cpu, 50) * 1e3
    return {'tls_version': version[0], 'handshakes': handshakes,
            'tls_handshake_app_cpu_ms_p50': round(cpu_ms, 3),
            'tls_handshake_app_cpu_ms_p95': round(
                benchenv.percentile(cpu, 95) * 1e3, 3),
            'tls_handshake_wall_ms_p50': round(
                benchenv.percentile(wall, 50) * 1e3, 3),
            'fleet_reconnect_app_cpu_s': round(cpu_ms * FLEET / 1e3, 2),
            'fleet': FLEET}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tokens', type=int, default=100)
    parser.add_argument('--handshakes', type=int, default=200)
    args = parser.parse_args(argv)
    results = rest_costs(args.tokens)
    results.update(tls_costs(args.handshakes))
    rows = [
        ('GET /v1/vns, no auth file', '%.1f us' %
         results['rest_get_vns_us_plain']),
        ('GET /v1/vns, reader token (%d in the file)' % args.tokens,
         '%.1f us' % results['rest_get_vns_us_with_token']),
        ('  of which the token check', '%.1f us' %
         results['rest_token_check_us']),
        ('RPC login check', '%.1f us' % results['rpc_login_check_us']),
        ('TLS handshake of a switch (%s), app CPU p50 / p95'
         % results['tls_version'], '%.2f / %.2f ms' % (
             results['tls_handshake_app_cpu_ms_p50'],
             results['tls_handshake_app_cpu_ms_p95'])),
        ('%d NVEs reconnecting over TLS: app CPU' % FLEET,
         '%.1f s' % results['fleet_reconnect_app_cpu_s']),
    ]
    benchlib.table(rows)
    print('wrote %s' % benchlib.write_json('auth.json', results))


if __name__ == '__main__':
    main()
