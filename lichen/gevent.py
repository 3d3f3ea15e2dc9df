"""Gevent mode: the engine driven from gevent's hub.

An io watcher on the engine's fileno() (readable whenever the engine has
something to do: an event, a timer due, work queued) calls run_once(0) in
the hub. The hub is then the engine's hub: the request greenlets are its
children, so gevent.sleep, gevent's sockets, queues, events, locks and
timeouts, and monkey-patched modules cooperate inside applications, and
greenlets they spawn run while the server serves.
"""

import threading

import gevent
from gevent.event import Event

__all__ = ["HubDriver", "patch"]

INSTALL = "pip install 'lichen[gevent]'"


def patch():
    """Monkey-patch the standard library, as early as can be: before the
    application is imported."""
    from gevent import monkey
    monkey.patch_all()


class HubDriver:
    """Runs an engine's turns in gevent's hub, from start() until its loop
    has ended after a stop."""

    def __init__(self, engine, on_end=None):
        self.engine = engine
        self.hub = None  # the hub of the thread that starts it
        self.thread = None
        self.ended = None
        self._on_end = on_end
        self._watcher = None

    @property
    def started(self):
        return self._watcher is not None

    def start(self):
        """Serve from the hub; returns at once."""
        if self._watcher is not None:
            return
        self.hub = gevent.get_hub()
        self.thread = threading.get_ident()
        self.ended = Event()
        self._watcher = self.hub.loop.io(self.engine.fileno(), 1)
        self._watcher.start(self._turn)
        # What was already pending (a connection accepted before the first
        # turn, a stop asked for) is seen without waiting for an edge.
        self.hub.loop.run_callback(self._turn)

    def _turn(self):
        if self.ended.is_set():
            return
        try:
            if self.engine.run_once(0):
                return
        except BaseException:
            # The loop failed (the fd would stay readable and call this
            # again and again): it ends here, as serve_forever would end,
            # and the hub reports the exception.
            self.engine.close()
            self._end()
            raise
        self._end()

    def _end(self):
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
        if self.ended is not None:
            self.ended.set()
        if self._on_end is not None:
            self._on_end()

    @property
    def done(self):
        return self.ended is not None and self.ended.is_set()

    def in_hub(self):
        return gevent.getcurrent() is self.hub

    def other_thread(self):
        """Whether the hub serving it is another thread's."""
        return self.thread is not None and \
            self.thread != threading.get_ident()

    def wait(self, timeout=None):
        """Block the calling greenlet until the loop has ended."""
        return self.ended.wait(timeout)

    def close(self, timeout):
        """Immediate stop. Run from the hub's own turn where it can be, so
        that the greenlets unwinding (the requests', the application's)
        switch back to the hub as they always do."""
        if self.done:
            return
        if not self.started or self.in_hub():
            self.engine.close()
            self._end()
            return
        self.engine.stop(0)
        if not self.wait(timeout):
            self.engine.close()
            self._end()
