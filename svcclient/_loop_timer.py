"""One cancel timer per asyncio event loop for many timed awaits (breaker calls, attempts).

``asyncio.timeout`` costs ~35 k instructions per use and ``anyio.fail_after`` ~75 k (a
context manager or two, a ``TimerHandle`` pushed on the loop's heap and left there
cancelled, anyio's per-task state); the breaker and the async driver pay that on every
call. Here a timed await costs a dict insert and a delete: its owner (a breaker, a
driver) keeps one :class:`LoopTimer` per event loop, each timed await adds an entry
``(task, deadline on the loop's clock, task.cancelling() now)`` under a fresh key and
deletes it when the await ends, and one ``call_at`` timer, armed for the earliest
deadline, is left armed when entries go. When it fires it cancels the tasks whose
deadline passed (popping their entries) and re-arms for the earliest one left, or stops
when there is none; so it fires about once per timeout, however many awaits come and go.

An await that finds its entry gone was cancelled by the timer: :func:`took_back` takes
that cancellation back (``Task.uncancel``, as ``asyncio.timeout`` does) and says whether
it was the timer's alone; a cancellation from elsewhere goes on.

asyncio only (``Task.cancelling``/``uncancel``, Python 3.11+); the callers use an anyio
cancel scope where :func:`running_loop` or :func:`current_task` give None (trio, or
code running outside a task). asyncio is imported on first use, not with svcclient.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

if TYPE_CHECKING:
    import asyncio

__all__ = ["Entry", "LoopTimer", "current_task", "running_loop", "took_back", "within"]

# An entry: (task, deadline (loop time), task.cancelling() when it was added).
TASK: Final = 0
DEADLINE: Final = 1
BASE: Final = 2
Entry = tuple["asyncio.Task[Any]", float, int]
_T = TypeVar("_T")


def _load_asyncio() -> asyncio.AbstractEventLoop | None:
    """Bind asyncio's task helpers on first use (asyncio is not imported with svcclient);
    then answer as ``running_loop`` does. Callers read ``running_loop`` and
    ``current_task`` as attributes of this module, so they see the bound helpers."""
    global running_loop, current_task  # noqa: PLW0603 - bound once, read per call
    import asyncio

    running_loop = asyncio._get_running_loop  # the C helper behind get_running_loop
    current: object = asyncio.current_task
    tasks = getattr(asyncio.tasks, "_current_tasks", None)
    if inspect.isfunction(current) and isinstance(tasks, dict):
        # Python 3.11's current_task(loop) is Python code for _current_tasks.get(loop);
        # the dict's own get is the same answer for a frame less (3.12+ is C already).
        current = tasks.get
    current_task = cast("Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None]", current)
    return running_loop()


def _no_task(loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any] | None:
    return None  # replaced by _load_asyncio before any use


running_loop: Callable[[], asyncio.AbstractEventLoop | None] = _load_asyncio
current_task: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = _no_task


def took_back(entry: Entry, exc: BaseException | None) -> bool:
    """The timer cancelled this entry's task: take that back; True if it is a timeout.

    ``exc``: what the await raised (None when it returned: the cancellation was
    swallowed). False when someone else cancelled the task too (their cancellation must
    go on) or the await raised something other than the cancellation.
    """
    outer = entry[TASK].uncancel() > entry[BASE]
    if outer:
        return False
    import asyncio

    return exc is None or isinstance(exc, asyncio.CancelledError)


class LoopTimer:
    """The timed awaits of one owner on one asyncio loop, and one timer for all of them.

    A timed await is an entry added before it and removed after it::

        key, entry = timer.add(task, deadline)  # deadline on the loop's clock (timer.now)
        try:
            result = await something
        except BaseException as exc:
            if timer.remove(key, entry, exc):
                raise TimeoutError from exc  # the timer fired: a timeout, not a cancellation
            raise
        timer.remove(key, entry, None)  # True: the await swallowed the timer's cancellation

    :func:`within` is that protocol for one awaitable.
    """

    __slots__ = ("calls", "grace", "handle", "last", "loop", "now", "shared_clock", "when")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        import asyncio
        import time

        self.loop = loop
        self.calls: dict[int, Entry] = {}
        self.handle: asyncio.TimerHandle | None = None
        self.when = float("inf")  # when the timer fires; inf when it is not armed
        # The last key handed out. Only tasks of ``loop`` (one thread) add entries, and
        # an insert has no await in it: an int attribute is enough (cheaper than a count).
        self.last = 0
        # asyncio's own loops read time.monotonic; call it directly (a frame less per use).
        base = type(loop).time is asyncio.BaseEventLoop.time
        self.now: Callable[[], float] = time.monotonic if base else loop.time
        # A caller's clock that is this one gives starts on the loop's clock for free.
        self.shared_clock: object = self.now if base else None
        # asyncio runs a timer up to the clock's resolution early: an entry due within
        # it is due now (else the timer would re-arm for it and spin until then).
        self.grace = max(time.get_clock_info("monotonic").resolution, 1e-6)

    def add(self, task: asyncio.Task[Any], deadline: float) -> tuple[int, Entry]:
        """Time ``task``'s await until ``deadline`` (the loop's clock): its key and entry."""
        entry = (task, deadline, task.cancelling())
        # Only tasks of ``loop`` (one thread) add entries and an insert has no await in it:
        # an int attribute is the key counter.
        key = self.last = self.last + 1
        self.calls[key] = entry
        if deadline < self.when:
            self.arm(deadline)
        return key, entry

    def remove(self, key: int, entry: Entry, exc: BaseException | None) -> bool:
        """The await ended (raising ``exc``, or None when it returned): True when the timer
        had fired for it and its cancellation was the timer's alone (taken back here)."""
        try:
            del self.calls[key]
        except KeyError:  # the timer fired (and popped it)
            return took_back(entry, exc)
        return False

    def arm(self, deadline: float) -> None:
        """Fire at ``deadline`` (earlier than the timer is armed for, or not armed)."""
        if self.handle is not None:
            self.handle.cancel()
        self.when = deadline
        self.handle = self.loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self.handle = None
        self.when = float("inf")
        now = self.now() + self.grace
        calls = self.calls
        overdue = [key for key, entry in calls.items() if entry[DEADLINE] <= now]
        for key in overdue:
            calls.pop(key)[TASK].cancel()  # the await finds its key gone: fired
        if calls:
            self.arm(min(entry[DEADLINE] for entry in calls.values()))


async def within(
    timer: LoopTimer, task: asyncio.Task[Any], awaitable: Awaitable[_T], seconds: float
) -> _T:
    """``await awaitable`` in ``task``, cancelled by ``timer`` after ``seconds``: raises
    ``TimeoutError`` when it fired (a cancellation from elsewhere goes on as it is). A
    result that came back although the timer fired (the awaitable swallowed the
    cancellation) stands, as with ``asyncio.timeout``."""
    key, entry = timer.add(task, timer.now() + seconds)
    try:
        result = await awaitable
    except BaseException as exc:
        if timer.remove(key, entry, exc):
            raise TimeoutError from exc
        raise
    timer.remove(key, entry, None)
    return result
