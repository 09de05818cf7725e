"""A virtual-time asyncio loop: calls over a simulated link run faster than real time.

:class:`VirtualClockLoop` is a selector event loop whose ``time()`` only moves when
the loop would otherwise sleep: it first polls the sockets (loopback UDP has
arrived by the time ``sendto`` returns), and when nothing is ready it jumps straight
to the next timer. Everything scheduled on the loop (asyncio sleeps and timeouts,
aioice's STUN and consent timers, aiortc's SCTP timers, the relay's deliveries, a
sender pacing its input) then runs in simulated time, and a 10 s call over a slow
link takes as long as its CPU work. CPU time itself costs no simulated time, as if
the machine were infinitely fast; while an executor thread is busy the loop waits in
real time instead of jumping.

Two things in aiortc keep real time:

* SCTP measures RTT and expiry with ``time.time()``: :func:`virtual_time` patches
  ``aiortc.rtcsctptransport.time`` to read the running loop's clock while it runs;
* OpenSSL's DTLS retransmission timer runs on the real clock, so a lost handshake
  flight would only be resent after real seconds (thousands of simulated ones):
  simulated links must spare DTLS handshake datagrams from random loss
  (``LinkRelay(protect=is_dtls_handshake)``); they still queue and travel with delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class _LoopClock:
    """Stands in for the ``time`` module inside aiortc's SCTP transport."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def time(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:  # no loop running in this thread
            return self._real.time()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _VirtualSelector(selectors.BaseSelector):
    """Wraps a real selector; ``select()`` advances the owning loop's virtual clock."""

    def __init__(self, inner: selectors.BaseSelector, grace_s: float) -> None:
        self._inner = inner
        self._grace_s = grace_s
        self.loop: VirtualClockLoop | None = None
        self.jumps = 0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Any:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self.loop
        if loop is None or not loop.virtual:
            return self._inner.select(timeout)
        events = self._select_virtual(loop, timeout)
        loop.catch_up_with_due_timers()
        return events

    def _select_virtual(
        self, loop: VirtualClockLoop, timeout: float | None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._inner.select(0)
        if events or timeout == 0:
            return events
        if loop.executor_jobs:  # a thread is working in real time: wait for it for real
            started = time.monotonic()
            events = self._inner.select(timeout)
            loop.advance(time.monotonic() - started)
            return events
        if self._grace_s > 0:
            events = self._inner.select(self._grace_s)
            if events:
                return events
        if timeout is None:  # nothing scheduled: only real I/O can wake us
            return self._inner.select(None)
        loop.advance_to_next_timer(timeout)
        self.jumps += 1
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """Selector event loop on a virtual clock (``virtual=False``: an ordinary loop)."""

    def __init__(self, virtual: bool = True, grace_s: float = 0.0) -> None:
        selector = _VirtualSelector(selectors.DefaultSelector(), grace_s)
        super().__init__(selector)
        selector.loop = self
        self._vselector = selector
        self._virtual = virtual
        self._now = time.monotonic()
        self._offset = 0.0  # real mode: time() = monotonic + offset (monotonic across switches)
        self.executor_jobs = 0

    @property
    def virtual(self) -> bool:
        return self._virtual

    @property
    def timer_jumps(self) -> int:
        """How many times the clock jumped ahead instead of sleeping."""
        return self._vselector.jumps

    def set_virtual(self, virtual: bool) -> None:
        """Switch clocks; time stays continuous and monotonic across the switch."""
        if virtual == self._virtual:
            return
        if virtual:
            self._now = time.monotonic() + self._offset
        else:
            self._offset = self._now - time.monotonic()
        self._virtual = virtual

    def time(self) -> float:
        return self._now if self._virtual else time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds

    def catch_up_with_due_timers(self) -> None:
        """Move the clock onto the timers asyncio is about to run early.

        asyncio runs every timer due before ``time() + clock resolution`` (1 ns). On a
        virtual clock that would otherwise be a live-lock: a timer due one float step
        ahead runs while time stands still (the selector gets timeout 0 whenever callbacks
        are ready, as when the waiter re-arms), the waiter finds its deadline not reached
        and re-arms, forever. Called on every select, before asyncio collects the timers.
        """
        scheduled = getattr(self, "_scheduled", None)
        res = getattr(self, "_clock_resolution", 0.0)
        if not scheduled or scheduled[0]._when >= self._now + res:
            return  # the usual case: nothing due early
        while True:
            due = [h._when for h in scheduled if self._now < h._when < self._now + res]
            if not due:
                return
            self._now = max(due)

    def advance_to_next_timer(self, timeout_s: float) -> None:
        target = self._now + timeout_s
        scheduled = getattr(self, "_scheduled", None)  # asyncio's timer heap
        if scheduled:
            target = max(target, scheduled[0]._when)
        self._now = max(self._now, target)

    def run_in_executor(self, executor: Any, func: Callable[..., T], *args: Any) -> Any:
        future = super().run_in_executor(executor, func, *args)
        self.executor_jobs += 1

        def done(_: Any) -> None:
            self.executor_jobs -= 1

        future.add_done_callback(done)
        return future


@contextlib.contextmanager
def virtual_time() -> Iterator[None]:
    """Let aiortc's SCTP transport read the running loop's clock (restored on exit)."""
    from aiortc import rtcsctptransport

    real = rtcsctptransport.time
    if isinstance(real, _LoopClock):  # nested use
        yield
        return
    rtcsctptransport.time = _LoopClock(real)  # type: ignore[assignment]
    try:
        yield
    finally:
        rtcsctptransport.time = real  # type: ignore[assignment]


def run(main: Awaitable[T] | Callable[[], Awaitable[T]], *, virtual: bool = True) -> T:
    """Run a coroutine on a fresh :class:`VirtualClockLoop` (``asyncio.run`` semantics)."""

    def factory() -> VirtualClockLoop:
        return VirtualClockLoop(virtual=virtual)

    coro = main() if callable(main) else main
    with virtual_time(), asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)  # type: ignore[arg-type]
