"""How long a move or an attach takes to reach every NVE it changed.

A move (or attach) has converged when every NVE whose flows it changed has
acknowledged them (barrier reply) or went away.  The time is recorded in
its event (``convergence_ms``, shown by ``GET /v1/events``); an attach is
timed from its packet-in (the event's time), a move from when its flows
were computed, a completed migration from its first frame at the new place
(``arrived``: its switch-over).  Plain Python, time passed in.
"""

from ..authority import events as ev


class Convergence:
    """Moves and attaches whose flows are not acknowledged yet.

    ``record(event, seconds)`` is called when one converges (the authority
    keeps the figure), and ``observe_move(seconds)`` too for moves (the
    app's histogram), if given, as ``observe_migration(seconds)`` for
    completed migrations.
    """

    def __init__(self, record, observe_move=None, observe_migration=None):
        self.record = record
        self.observe_move = observe_move
        self.observe_migration = observe_migration
        # The convergences under way: id -> (event, started, {dpid still to
        # acknowledge}), and the index dpid -> {id} that lets an NVE's
        # acknowledgement look at its own only.
        self.convergences = {}
        self._waiting = {}
        self._next = 0

    def started(self, events, waiting, now):
        """``events`` (move and attach events) changed the flows of the
        connected NVEs ``waiting``."""
        for event in events:
            kind = event['type']
            started = event['time'] if kind == ev.ATTACH else \
                event['arrived'] if kind == ev.MIGRATION_COMPLETED else now
            if not waiting:
                self._done(event, started, now)
                continue
            cid = self._next
            self._next += 1
            self.convergences[cid] = (event, started, set(waiting))
            for dpid in waiting:
                self._waiting.setdefault(dpid, set()).add(cid)

    def acknowledged(self, dpids, settled, now):
        """The NVEs ``dpids`` changed state; ``settled(dpid)`` says whether
        one has acknowledged everything (or is gone).  Only the moves
        waiting on those NVEs are looked at: with many attachments in
        flight, sweeping all of them on every barrier reply would cost
        more than everything else the app does."""
        for dpid in dpids:
            ids = self._waiting.get(dpid)
            if not ids or not settled(dpid):
                continue
            del self._waiting[dpid]
            for cid in ids:
                event, started, waiting = self.convergences[cid]
                waiting.discard(dpid)
                if not waiting:
                    del self.convergences[cid]
                    self._done(event, started, now)

    def _done(self, event, started, now):
        seconds = now - started
        self.record(event, seconds)
        if event['type'] == ev.MOVE and self.observe_move is not None:
            self.observe_move(seconds)
        elif event['type'] == ev.MIGRATION_COMPLETED and \
                self.observe_migration is not None:
            self.observe_migration(seconds)
