"""The pool's accounting core (svcclient._transports.pool_core), with fake connections."""

from __future__ import annotations

import pytest

from svcclient._transports.pool_core import NEW, PoolCore, Waiter


def alive(conn: str) -> bool:
    return not conn.startswith("dead")


def test_slots_then_queue() -> None:
    """Up to max_connections takers get a slot (NEW); the next one must queue (None)."""
    core: PoolCore[str] = PoolCore(2, 2, None)
    dead: list[str] = []
    assert core.take(alive, dead) is NEW
    assert core.take(alive, dead) is NEW
    assert core.take(alive, dead) is None
    assert core.slots == 2


def test_idle_connections_are_handed_out_last_in_first_out() -> None:
    """The most recently returned connection is handed out first."""
    core: PoolCore[str] = PoolCore(3, 3, None)
    dead: list[str] = []
    for _ in range(3):
        core.take(alive, dead)
    for conn in ("a", "b", "c"):
        assert core.give_back(conn, True, 0.0, dead) is None
    assert [core.take(alive, dead) for _ in range(3)] == ["c", "b", "a"]
    assert dead == []


def test_keepalive_limit_counts_idle_connections_only() -> None:
    """With 10 busy connections and a keep-alive limit of 2, the first two returned stay
    idle (busy ones do not count against the limit); a third idle one closes the
    longest-idle."""
    core: PoolCore[str] = PoolCore(10, 2, None)
    dead: list[str] = []
    for _ in range(10):
        core.take(alive, dead)
    for conn in ("a", "b"):
        core.give_back(conn, True, 0.0, dead)
    assert (list(core.idle), dead) == (["a", "b"], [])
    core.give_back("c", True, 0.0, dead)
    assert (list(core.idle), dead) == (["b", "c"], ["a"])
    assert core.slots == 9


def test_surplus_idle_connections_linger_before_closing() -> None:
    """Idle connections above the keep-alive limit stay for ``linger`` seconds (a burst's
    returns bunch up for an instant), then the longest-idle close at the next return."""
    core: PoolCore[str] = PoolCore(10, 1, None, linger=1.0)
    dead: list[str] = []
    for _ in range(3):
        core.take(alive, dead)
    core.give_back("a", True, 0.0, dead)
    core.give_back("b", True, 0.5, dead)
    assert (list(core.idle), dead) == (["a", "b"], [])
    core.give_back("c", True, 1.2, dead)  # "a" idle 1.2 s: closed; "b" 0.7 s: kept
    assert (list(core.idle), dead) == (["b", "c"], ["a"])
    assert core.slots == 2


def test_unusable_idle_connections_are_closed_and_their_slots_reused() -> None:
    """Only the connection being handed out is checked; dead ones free their slots."""
    core: PoolCore[str] = PoolCore(2, 2, None)
    dead: list[str] = []
    core.take(alive, dead)
    core.take(alive, dead)
    core.give_back("ok", True, 0.0, dead)
    core.give_back("dead1", True, 0.0, dead)
    assert core.take(alive, dead) == "ok"
    assert dead == ["dead1"]
    assert core.take(alive, dead) is NEW
    assert core.slots == 2


def test_waiters_are_served_first_in_first_out() -> None:
    """Returned connections go to the waiters in arrival order, not onto the stack."""
    core: PoolCore[str] = PoolCore(1, 1, None)
    dead: list[str] = []
    core.take(alive, dead)
    w1: Waiter[str] = Waiter()
    w2: Waiter[str] = Waiter()
    core.enqueue(w1)
    core.enqueue(w2)
    assert core.give_back("a", True, 0.0, dead) is w1
    assert (w1.granted, w1.conn) == (True, "a")
    assert not w2.granted
    assert core.give_back("a", True, 0.0, dead) is w2
    assert core.give_back("a", True, 0.0, dead) is None
    assert list(core.idle) == ["a"]


def test_a_closed_connection_passes_its_slot_to_the_first_waiter() -> None:
    """A connection that cannot be reused frees its slot for the first waiter to dial."""
    core: PoolCore[str] = PoolCore(1, 1, None)
    dead: list[str] = []
    core.take(alive, dead)
    w: Waiter[str] = Waiter()
    core.enqueue(w)
    assert core.give_back("a", False, 0.0, dead) is w
    assert (w.granted, w.conn, core.slots) == (True, None, 1)


def test_a_waiter_that_gives_up_before_being_served_leaves_the_queue() -> None:
    """A cancelled waiter is removed; the next connection goes to the one behind it."""
    core: PoolCore[str] = PoolCore(1, 1, None)
    dead: list[str] = []
    core.take(alive, dead)
    w1: Waiter[str] = Waiter()
    w2: Waiter[str] = Waiter()
    core.enqueue(w1)
    core.enqueue(w2)
    assert core.abandon(w1, 0.0, dead) is None
    assert core.give_back("a", True, 0.0, dead) is w2


@pytest.mark.parametrize("reusable", [True, False])
def test_a_waiter_cancelled_after_being_served_gives_it_on(reusable: bool) -> None:
    """A waiter granted a connection (or a slot) and cancelled before using it hands it to
    the next waiter: no connection and no slot leaks."""
    core: PoolCore[str] = PoolCore(1, 1, None)
    dead: list[str] = []
    core.take(alive, dead)
    w1: Waiter[str] = Waiter()
    w2: Waiter[str] = Waiter()
    core.enqueue(w1)
    core.enqueue(w2)
    core.give_back("a", reusable, 0.0, dead)
    assert w1.granted
    assert core.abandon(w1, 0.0, dead) is w2
    assert w2.conn == ("a" if reusable else None)
    assert core.slots == 1
    # and with nobody waiting, the abandoned grant goes back to the pool
    assert core.abandon(w2, 0.0, dead) is None
    assert core.slots == (1 if reusable else 0)
    assert list(core.idle) == (["a"] if reusable else [])


def test_close_while_waiting_wakes_every_waiter_and_closes_idle() -> None:
    """close() returns the idle connections to close and the waiters to wake; a
    connection returned afterwards is closed, not kept."""
    core: PoolCore[str] = PoolCore(2, 2, None)
    dead: list[str] = []
    core.take(alive, dead)
    core.take(alive, dead)
    core.give_back("a", True, 0.0, dead)
    core.take(alive, dead)  # "a" busy again
    core.give_back("b", True, 0.0, dead)
    w: Waiter[str] = Waiter()
    core.take(alive, dead)  # "b" busy
    assert core.take(alive, dead) is None
    core.enqueue(w)
    idle, waiters = core.close()
    assert (idle, waiters, w.granted, w.conn) == ([], [w], True, None)
    assert core.give_back("a", True, 0.0, dead) is None
    assert dead == ["a"]


def test_idle_connections_expire_from_the_bottom() -> None:
    """An idle connection older than keepalive_expiry is closed at the next return."""
    core: PoolCore[str] = PoolCore(3, 3, 5.0)
    dead: list[str] = []
    for _ in range(3):
        core.take(alive, dead)
    core.give_back("old", True, 0.0, dead)
    core.give_back("mid", True, 4.0, dead)
    core.give_back("new", True, 5.0, dead)
    assert dead == []
    assert core.take(alive, dead) == "new"
    core.give_back("new", True, 5.5, dead)
    assert dead == ["old"]
    assert list(core.idle) == ["mid", "new"]
    assert core.slots == 2


def test_release_slot_after_a_failed_dial() -> None:
    """A slot whose dial failed goes to the first waiter, or back to the pool."""
    core: PoolCore[str] = PoolCore(1, 1, None)
    dead: list[str] = []
    core.take(alive, dead)
    w: Waiter[str] = Waiter()
    core.enqueue(w)
    assert core.release_slot() is w
    assert core.release_slot() is None
    assert core.slots == 0
