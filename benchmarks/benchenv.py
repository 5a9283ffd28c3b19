"""What every benchmark records beside its figures: when, and on what.

``machine()`` reads the facts the README's figures need (CPU count and
model, memory, kernel, Python, Open vSwitch version) from /proc and the
programs themselves; a fact that cannot be read is None, never a guess.
"""

import datetime
import json
import os
import platform
import re
import shutil
import subprocess


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(
        timespec='seconds')


def _cpu_model():
    try:
        with open('/proc/cpuinfo') as fh:
            for line in fh:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_gib():
    try:
        with open('/proc/meminfo') as fh:
            for line in fh:
                if line.startswith('MemTotal:'):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _ovs_version():
    exe = shutil.which('ovs-vswitchd') or (
        '/usr/sbin/ovs-vswitchd' if os.path.exists('/usr/sbin/ovs-vswitchd')
        else None)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, '--version'], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'(\d+\.\d+\.\d+)', out)
    return m.group(1) if m else None


def machine():
    return {
        'nproc': os.cpu_count(),
        'cpu_model': _cpu_model(),
        'mem_gib': _mem_gib(),
        'kernel': platform.release(),
        'python': platform.python_version(),
        'ovs': _ovs_version(),
    }


def write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write('\n')
    os.replace(tmp, path)


def percentile(samples, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    s = sorted(samples)
    if not s:
        return None
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]
