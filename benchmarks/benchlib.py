"""What the scale benchmarks share: the app under test, REST, figures.

The app runs as the real ``osken-manager`` (testbed ControllerProcess: free
ports on 127.0.0.1, its own run directory, killed by PID), its NVEs are
simulated by ofswitch_sim.py.  Nothing here leaves loopback.
"""

import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, 'results')
sys.path.insert(0, ROOT)

import benchenv  # noqa: E402  (benchmarks/ is the script's directory)
from nvo3_ryu_app.testbed.controller import ControllerProcess  # noqa: E402


def start_app(config, extra_ini='', timeout=300.0):
    """osken-manager with ``config`` (a declared-state dict) as its
    config_file; returns the started ControllerProcess."""
    ctl = ControllerProcess(extra_ini=extra_ini)
    os.makedirs(ctl.rundir, exist_ok=True)
    path = os.path.join(ctl.rundir, 'fleet.yaml')
    with open(path, 'w', encoding='utf-8') as handle:
        yaml.dump(config, handle, Dumper=getattr(yaml, 'CSafeDumper',
                                                 yaml.SafeDumper))
    ctl.config_file = path
    try:
        ctl.start(timeout=timeout, wait_for=('of', 'rest'))
    except BaseException:
        ctl.close()
        raise
    return ctl


def get(ctl, path, timeout=60.0):
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (
            ctl.rest_port, path), timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body[:1] in (b'{', b'[') else body.decode()


def metrics(ctl):
    """Every sample of /metrics: {'name{k=v,...}': value}."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for family in text_string_to_metric_families(get(ctl, '/metrics')):
        for sample in family.samples:
            labels = ','.join('%s=%s' % kv
                              for kv in sorted(sample.labels.items()))
            out['%s{%s}' % (sample.name, labels)] = sample.value
    return out


def metric(samples, name):
    return samples.get(name + '{}', 0.0)


def metric_sum(samples, prefix):
    return sum(v for k, v in samples.items() if k.startswith(prefix + '{'))


def histogram(samples, name, labels=''):
    """[(upper bound, cumulative count)] of a histogram (``labels``: its
    other labels as 'k=v,...', sorted, for a labelled one)."""
    prefix = name + '_bucket{' + (labels + ',' if labels else '') + 'le='
    out = []
    for key, value in samples.items():
        if key.startswith(prefix):
            out.append((float(key[len(prefix):-1]), value))
    return sorted(out)


def histogram_quantile(before, after, q):
    """The q-quantile's bucket upper bound of the observations between two
    scrapes (Prometheus histogram_quantile without interpolation)."""
    old = dict(before)
    buckets = [(b, c - old.get(b, 0.0)) for b, c in after]
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return float('inf')


def sync_state(ctl):
    """(connected, in_sync, total) NVE counts from /v1/sync; None while the
    REST port does not answer yet."""
    try:
        nves = get(ctl, '/v1/sync', timeout=30)['nves']
    except (urllib.error.URLError, ConnectionError, OSError):
        return None
    connected = sum(1 for s in nves.values() if s['connected'])
    in_sync = sum(1 for s in nves.values()
                  if s['connected'] and s['in_sync'])
    return connected, in_sync, len(nves)


def wait_sync(ctl, n, timeout, interval=0.05, check=None):
    """Until ``n`` NVEs are connected and in sync; returns seconds.
    ``check`` (called on every poll) may raise to give up early."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        if check is not None:
            check()
        if not ctl.running:
            raise RuntimeError('the app exited:\n' + ctl.log_tail(20))
        last = sync_state(ctl)
        if last is not None and last[1] >= n:
            return time.monotonic() - t0
        time.sleep(interval)
    raise TimeoutError('NVEs not in sync after %.0fs: %s (log tail:\n%s)'
                       % (timeout, last, ctl.log_tail(15)))


def exit_on_sigterm():
    """SIGTERM (e.g. from ``timeout``) raises SystemExit, so that the
    benchmark's ``finally`` blocks stop what it started."""
    def handler(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def rss_kib(pid):
    with open('/proc/%d/status' % pid, encoding='ascii') as handle:
        for line in handle:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """user + system CPU seconds of a process so far."""
    with open('/proc/%d/stat' % pid, encoding='ascii') as handle:
        fields = handle.read().rsplit(')', 1)[1].split()
    ticks = os.sysconf('SC_CLK_TCK')
    return (int(fields[11]) + int(fields[12])) / ticks


def dir_bytes(path):
    out = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            out[name] = os.path.getsize(full)
    return out


from nvo3_ryu_app.testbed.prober import percentile  # noqa: E402,F401


def ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 3)


def env():
    return {'python': platform.python_version(),
            'platform': platform.platform(), 'cpus': os.cpu_count(),
            'git': _git_head()}


def _git_head():
    try:
        return subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short',
                               'HEAD'], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def table(rows, title=None):
    """Print [(label, value)] as an aligned two-column table."""
    if title:
        print(title)
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print('  %-*s  %s' % (width, label, value))


def write_json(name, data):
    path = os.path.join(RESULTS, name)
    benchenv.write_json(path, data)
    return path


def profile(pid, seconds, out_prefix, rate=100):
    """py-spy the app for ``seconds`` (``py-spy record --format raw``: one
    collapsed stack per line, the input of flamegraph.pl and speedscope).
    Returns (raw path, top frames by own samples, top frames by total
    samples, sample count), or None without py-spy in the venv."""
    spy = os.path.join(os.path.dirname(sys.executable), 'py-spy')
    if not os.access(spy, os.X_OK):
        return None
    raw = out_prefix + '.txt'
    subprocess.run([spy, 'record', '--pid', str(pid), '--duration',
                    str(int(seconds)), '--rate', str(rate), '--format',
                    'raw', '--output', raw, '--nonblocking'],
                   capture_output=True, timeout=seconds + 60)
    read = benchenv.read_pyspy(raw)
    if read is None:
        return None
    samples, own, total = read
    return (raw, benchenv.top_frames(own, samples),
            benchenv.top_frames(total, samples), samples)
