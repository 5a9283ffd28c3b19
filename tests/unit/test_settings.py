"""The [nvo3] options generated from settings.Settings: every field is an
option with its default and help, list options come back as tuples, and a
value below an option's minimum is refused when the file is read."""

import pytest
from oslo_config import cfg

from nvo3_ryu_app import settings
from nvo3_ryu_app.settings import Settings


def load(tmp_path, text):
    path = tmp_path / 'nvo3.conf'
    path.write_text('[nvo3]\n' + text)
    conf = cfg.ConfigOpts()
    group = settings.register(conf)
    conf(['--config-file', str(path)])
    return Settings.from_conf(group)


def test_every_field_is_an_option_with_its_default_and_help():
    opts = {o.name: o for o in settings.oslo_options()}
    assert set(opts) == {f.name for f in settings.options()}
    for field in settings.options():
        assert opts[field.name].help, field.name
    assert Settings.from_conf(_defaults()) == Settings()


def _defaults():
    conf = cfg.ConfigOpts()
    group = settings.register(conf)
    conf([])
    return group


def test_options_are_read_from_the_file(tmp_path):
    got = load(tmp_path, 'rest_allowed_hosts = nva.example.net, localhost\n'
                         'nve_reply_timeout = 3\n'
                         'rpc_max_connections = 32\n')
    assert got.rest_allowed_hosts == ('nva.example.net', 'localhost')
    assert (got.nve_reply_timeout, got.rpc_max_connections) == (3.0, 32)
    hash(got)                        # settings never change in place


@pytest.mark.parametrize('text', ['rest_max_connections = 0\n',
                                  'nve_echo_interval = -1\n',
                                  'peer_log_per_minute = -5\n'])
def test_a_value_below_its_minimum_is_refused(tmp_path, text):
    with pytest.raises(ValueError):
        load(tmp_path, text)
