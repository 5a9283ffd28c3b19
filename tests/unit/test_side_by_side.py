"""benchmarks/side_by_side.py: the anchor is an argument, its output parsed."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..',
                                'benchmarks'))
import side_by_side  # noqa: E402


def test_a_missing_anchor_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match='needs --anchor DIR'):
        side_by_side.anchor_dir(None)
    with pytest.raises(SystemExit, match='no such directory'):
        side_by_side.anchor_dir(str(tmp_path / 'nowhere'))
    with pytest.raises(SystemExit, match='no run.sh'):
        side_by_side.anchor_dir(str(tmp_path))
    (tmp_path / 'run.sh').write_text('#!/bin/bash\n')
    assert side_by_side.anchor_dir(str(tmp_path)) == str(tmp_path / 'run.sh')


def test_the_command_line_refuses_before_running_anything(capsys):
    with pytest.raises(SystemExit, match='no such directory'):
        side_by_side.main(['--anchor', '/nonexistent/anchor'])


def test_the_anchor_bring_up_log_is_parsed():
    log = ('phase 1 hv1 vm1 -> -: total - ms, from OVS bind - ms, after bind '
           'returned - ms\n'
           'phase 1 hv2 vm1 -> 192.168.1.11: total 49 ms, from OVS bind 35 '
           'ms, after bind returned 12 ms\n'
           'phase 2 hv3 vm5 -> 192.168.1.11: total 44 ms, from OVS bind 31 '
           'ms, after bind returned 9 ms\n'
           'phase 2 hv1 vm6 -> 192.168.2.11: total FAIL ms, from OVS bind '
           'FAIL ms, after bind returned FAIL ms\n')
    rows = side_by_side.parse_bringup(log)
    assert [(r['hv'], r['vm'], r['after_bind_ms']) for r in rows] == [
        (2, 1, 12.0), (3, 5, 9.0), (1, 6, None)]
    assert rows[0]['total_ms'] == 49.0 and rows[1]['from_bind_ms'] == 31.0


def test_the_anchor_migration_table_is_parsed():
    report = ('   mode move      lost outage_ms gap_ms  bind->reply_ms\n'
              '   bbb  hv1->hv2    44         44     46              25'
              '               45            19          1.20\n'
              '   mbb  hv2->hv1    12         12     15               9'
              '               31            20          1.10\n')
    rows = side_by_side.parse_migrations(report)
    assert [(r['mode'], r['lost'], r['outage_ms'], r['unplug_to_bind_ms'])
            for r in rows] == [('bbb', 44, 44, 19), ('mbb', 12, 12, 20)]


def test_ratios_are_ours_over_theirs():
    assert side_by_side.ratio(5.0, 10.0) == 0.5
    assert side_by_side.ratio(None, 10.0) is None
    assert side_by_side.ratio(5.0, 0) is None


def test_stats_are_percentiles_of_the_samples():
    s = side_by_side.stats([7.0, None, 3.0, 12.0, -8.0])
    assert (s['p50'], s['min'], s['max'], s['n']) == (5.0, -8.0, 12.0, 4)
    assert side_by_side.stats([None]) is None
