"""ratelog: what peers make the app log is bounded."""

import logging

from nvo3_ryu_app.runtime import ratelog


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_kind_gets_its_rate_and_says_what_it_held_back():
    clock = Clock()
    limit = ratelog.RateLimiter(6, clock=clock)
    got = [limit.allow('a') for _ in range(10)]
    assert got == [(True, 0)] * 6 + [(False, 0)] * 4
    assert limit.allow('b') == (True, 0)       # kinds are apart
    clock.now += 10.0                          # one more token (6/min)
    assert limit.allow('a') == (True, 4)
    assert limit.allow('a') == (False, 0)
    clock.now += 3600.0                        # refills to the rate only
    assert [limit.allow('a')[0] for _ in range(7)] == [True] * 6 + [False]


def test_zero_means_no_limit():
    limit = ratelog.RateLimiter(0)
    assert all(limit.allow('a') == (True, 0) for _ in range(1000))


def test_peer_log_cuts_long_lines(caplog):
    log = ratelog.PeerLog(logging.getLogger('test.peer'),
                          ratelog.RateLimiter(2, clock=Clock()),
                          max_chars=50)
    with caplog.at_level(logging.WARNING, logger='test.peer'):
        for _ in range(5):
            log.warning('bad message from %s: %s', 'peer', 'x' * 10000)
    assert len(caplog.records) == 2
    assert all(len(r.getMessage()) < 100 for r in caplog.records)
    assert 'characters cut' in caplog.records[0].getMessage()


def test_the_filter_bounds_a_logger_we_do_not_call(caplog):
    logger = logging.getLogger('test.foreign')
    clock = Clock()
    ratelog.guard_loggers(ratelog.RateLimiter(3, clock=clock),
                          names=('test.foreign',), max_chars=200)
    ratelog.guard_loggers(ratelog.RateLimiter(3, clock=clock),
                          names=('test.foreign',))       # once only
    assert len(logger.filters) == 1
    with caplog.at_level(logging.INFO, logger='test.foreign'):
        for i in range(20):
            try:
                raise ValueError('parse error %d' % i)
            except ValueError:
                logger.exception('Encountered an error: buf %s',
                                 'ab' * 40000)
    assert len(caplog.records) == 3
    for record in caplog.records:
        text = record.getMessage()
        assert len(text) < 500 and record.exc_info is None
        assert 'characters cut' in text
    assert 'Traceback' not in caplog.text
    assert '[ValueError: parse error 0]' in caplog.records[0].getMessage()
    logger.filters.clear()
