"""Check a configuration before starting with it.

    python -m nvo3_ryu_app.checkconfig /etc/nvo3/nvo3.conf
    nvo3ctl check-config /etc/nvo3/nvo3.conf          (runs this)

The app makes exactly these checks when it starts (app.py), and refuses to
start on any of them:

* every option of the ini's ``[nvo3]`` group is one of settings.Settings
  (a misspelled ``audit_intervall`` is named, with the option meant);
* no value carries what looks like an inline comment (oslo.config keeps
  ``state_dir = /var/lib/nvo3   ; the store`` as part of the value);
* every value is of its option's type and within its bounds (oslo.config
  itself reads them);
* the declarative file (``config_file``) reads, and applies to an empty
  mapping database through the same validating commands as at start.

The exit status is for scripts: 0 when the app can start with the file,
2 when it cannot (each problem on stderr, one line each).
"""

import difflib
import os
import re
import sys

from . import settings as S
from .authority import declared
from .authority.authority import Authority
from .authority.errors import MappingError
from .southbound.flowtable import FlowTables

INLINE_COMMENT = re.compile(r'\s[;#]')


def ini_problems(path):
    """Problems of the ``[nvo3]`` group of the ini at ``path`` (names,
    comments, values), and the Settings it gives (None if it cannot)."""
    from oslo_config import cfg, iniparser
    problems = []
    sections = {}

    class Reader(iniparser.BaseParser):
        """Collects (section, key, line) as oslo.config reads them."""

        section = None

        def assignment(self, key, value):
            # Called once the next line shows the value ended: find the
            # key's own line backwards.
            line = self.lineno
            while line > 1 and not raw[line - 1].lstrip().startswith(key):
                line -= 1
            sections.setdefault(self.section, []).append((key, value, line))

        def new_section(self, section):
            self.section = section

        def comment(self, _text):
            pass

    try:
        with open(path) as handle:
            raw = handle.read().splitlines()
        Reader().parse(raw)
    except OSError as exc:
        return ['%s: cannot read: %s' % (path, exc.strerror)], None
    except iniparser.ParseError as exc:
        return ['%s: %s' % (path, exc)], None
    known = {f.name for f in S.options()}
    for key, value, line in sections.get(S.GROUP, ()):
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=1)
            problems.append('%s:%d: unknown option %r in [%s]%s' % (
                path, line, key, S.GROUP,
                ' (did you mean %r?)' % near[0] if near else ''))
            continue
        text = ' '.join(value) if isinstance(value, list) else value
        if INLINE_COMMENT.search(text or ''):
            problems.append(
                '%s:%d: %s = %r: oslo.config keeps an inline comment as '
                'part of the value; put comments on lines of their own' % (
                    path, line, key, text))
    if problems:
        return problems, None
    conf = cfg.ConfigOpts()
    group = S.register(conf)
    try:
        conf(args=[], default_config_files=[path], project='nvo3')
        values = S.Settings.from_conf(group)
    except (cfg.Error, ValueError) as exc:
        return ['%s: %s' % (path, exc)], None
    return [], values


def declared_problems(settings):
    """Problems of the declarative file the settings name (none when there
    is none): read, then applied as at start to an empty database."""
    path = settings.config_file
    if not path:
        return []
    try:
        command = declared.load(path)
        Authority(FlowTables(), settings).execute(command, 0.0)
    except declared.ConfigError as exc:
        return ['%s: %s' % (path, exc)]
    except MappingError as exc:
        return ['%s: %s' % (path, exc.message)]
    return []


def auth_problems(settings):
    """Problems of the auth file the settings name (none when there is
    none), as the app would find them at start."""
    from .northbound import auth
    if not settings.auth_file:
        return []
    try:
        auth.Auth.load(settings.auth_file)
    except auth.AuthFileError as exc:
        return [str(exc)]
    return []


def check(path):
    """Every problem of the ini at ``path``, its declarative file and its
    auth file."""
    problems, values = ini_problems(path)
    if values is not None:
        problems += declared_problems(values) + auth_problems(values)
        state = os.path.dirname(os.path.abspath(values.state_dir))
        if values.persist and not os.path.isdir(state):
            problems.append('%s: state_dir %s: its parent directory does '
                            'not exist' % (path, values.state_dir))
    return problems


def main(argv=None):
    """Check the ini named on the command line; the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith('-'):
        sys.stderr.write('usage: python -m nvo3_ryu_app.checkconfig '
                         'NVO3.CONF\n')
        return 2
    problems = check(args[0])
    for problem in problems:
        sys.stderr.write('%s\n' % problem)
    if problems:
        sys.stderr.write('%s: the app would refuse to start\n' % args[0])
        return 2
    sys.stdout.write('%s: ok, the app can start with it\n' % args[0])
    return 0


if __name__ == '__main__':
    sys.exit(main())
