"""What a forked child must not inherit from svcclient, and what it gets instead.

Why
---
``gunicorn --preload`` (or any ``os.fork()`` after a client was used) copies the client
into every worker: its pooled keep-alive sockets, its locks, its counters. Parent and
child then share each TCP connection: both write requests on it and whoever reads first
gets the other's response (cross-talk). A lock held by one of the parent's threads at the
moment of the fork stays held for ever in the child, where that thread does not exist.
Health-check threads are not copied at all.

Theory of operation
-------------------
Nothing is checked per request. ``os.register_at_fork(after_in_child=...)`` runs
:func:`_after_fork_in_child` in the child, single-threaded, right after the fork:

1. **Sockets.** Every stream svcclient's pools opened was registered here (weakly) when
   it was connected (:func:`opened`, :func:`aopened`). The child closes *its copy* of
   each socket's file descriptor and never uses the connection: no ``shutdown()``, no TLS
   close-notify, no HTTP/2 GOAWAY, because the socket is shared and any of those would
   end the parent's connection. (Closing a descriptor only drops the child's reference;
   the connection lives on in the parent. Not closing it would keep every connection
   the parent later closes half-open until the child exits.) A sync socket is closed;
   an async one (bound to the parent's event loop, whose epoll instance the child also
   shares) is pointed at ``/dev/null`` with ``dup2`` and its objects are kept, so no
   finalizer ever runs loop code on the shared epoll.
2. **Owners.** Every live driver (``ResilientTransport``, ``AsyncResilientTransport``)
   registered itself (weakly: the registry never keeps a client alive). Starting from
   them and from svcclient's module globals, every svcclient (and prometheus_client)
   object reachable through attributes and containers gets fresh locks
   (``threading.Lock``/``RLock``; a ``threading.Event`` is replaced by one in the same
   state), then its ``_after_fork_in_child()`` if its class has one: that is where the
   drivers drop their pools (new, empty ones are built on first use), mark health checks
   for a lazy restart (their threads were not copied) and give a DNS refresh turn back,
   and where bulkheads, the concurrency limiter, the breaker and the balancer forget the
   work in flight in the parent's threads (slots, probe admissions, in-flight counts),
   which can never finish in the child. Replacing a lock is safe here: the only thread
   in the child is the one running this hook, and it holds none of them.

The walk costs a few milliseconds per fork (about a thousand objects and svcclient's
module globals). A transport the caller passed in (``ResilientTransport(transport=...)``)
is the caller's and is not touched. Forking from inside a request of the same client is
not supported (its bulkhead slot would be forgotten, and giving it back would fail).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import weakref
from collections import deque
from typing import Any, Protocol, TypeVar

__all__ = ["aopened", "discard_async", "opened", "register"]

_Lock = type(threading.Lock())
_RLock = type(threading.RLock())


class _Stream(Protocol):
    def get_extra_info(self, info: str) -> Any: ...


S = TypeVar("S", bound=_Stream)


class _Owner(Protocol):
    def _after_fork_in_child(self) -> None: ...


_sync_streams: weakref.WeakSet[Any] = weakref.WeakSet()
_async_streams: weakref.WeakSet[Any] = weakref.WeakSet()
_owners: weakref.WeakSet[Any] = weakref.WeakSet()

# What the child keeps but never uses: async streams and pools of the parent's event loop.
# Held so their finalizers (asyncio's transport __del__, aiohttp's connector) never run.
_graveyard: list[object] = []


def opened(stream: S) -> S:
    """Register a sync stream svcclient just connected (or wrapped in TLS); returns it."""
    _sync_streams.add(stream)
    return stream


def aopened(stream: S) -> S:
    """Register an async stream svcclient just connected (or wrapped in TLS); returns it."""
    _async_streams.add(stream)
    return stream


def register(owner: _Owner) -> None:
    """Have ``owner._after_fork_in_child()`` run in every forked child (held weakly)."""
    _owners.add(owner)


def discard_async(*objects: object) -> None:
    """Keep the parent's async objects (pools, health checkers) alive but unused in the
    child: their finalizers would touch the parent's event loop."""
    _graveyard.extend(o for o in objects if o is not None)


def _socket_of(stream: _Stream) -> Any:
    with contextlib.suppress(Exception):
        return stream.get_extra_info("socket")
    return None


def _drop_sockets() -> None:
    for stream in list(_sync_streams):
        sock = _socket_of(stream)
        if isinstance(sock, socket.socket):
            # close() only releases this process's descriptor: no shutdown(), and an
            # SSLSocket sends no close-notify. The parent's connection is untouched.
            with contextlib.suppress(OSError):
                sock.close()
    _sync_streams.clear()
    streams = list(_async_streams)
    _async_streams.clear()
    if not streams:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for stream in streams:
            sock = _socket_of(stream)
            fd = -1
            with contextlib.suppress(Exception):
                fd = sock.fileno() if sock is not None else -1
            if fd >= 0:
                # The descriptor number stays taken (by /dev/null) and owned by the stale
                # socket object, so it can never be closed twice or mistaken for another.
                os.dup2(devnull, fd)
            _graveyard.append(stream)
    finally:
        os.close(devnull)


# -- fresh locks -----------------------------------------------------------------------


# Whose objects are walked for locks: svcclient's, and prometheus_client's (the metrics
# svcclient updates on every request take a lock per update; a parent thread inside one
# at the fork would hang the child's first request).
_WALKED = frozenset({"svcclient", "prometheus_client"})


def _ours(value: object) -> bool:
    return type(value).__module__.partition(".")[0] in _WALKED


def _svcclient(value: object) -> bool:
    return type(value).__module__.partition(".")[0] == "svcclient"


def _fresh(value: object) -> object | None:
    """A replacement for a lock-like ``value``, or None if it is not one."""
    if isinstance(value, _Lock):
        return threading.Lock()
    if isinstance(value, _RLock):
        return threading.RLock()
    if isinstance(value, threading.Event):
        event = threading.Event()
        if value.is_set():
            event.set()
        return event
    return None


def _attributes(obj: object) -> list[tuple[str, object]]:
    names: dict[str, None] = {}
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__weakref__", "__dict__"):
                names[name] = None
    found = [(n, getattr(obj, n)) for n in names if hasattr(obj, n)]
    found.extend(getattr(obj, "__dict__", {}).items())
    return found


_CONTAINERS = (list, tuple, set, frozenset, deque)


def _walk(roots: list[object]) -> list[object]:
    """Every svcclient object reachable from ``roots`` (attributes and containers), each
    with its lock-like attributes already replaced."""
    seen: set[int] = set()
    found: list[object] = []
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            stack.extend(obj.values())
            continue
        if isinstance(obj, _CONTAINERS):
            stack.extend(obj)
            continue
        if not _ours(obj) or isinstance(obj, type):
            continue
        found.append(obj)
        for name, value in _attributes(obj):
            new = _fresh(value)
            if new is not None:
                object.__setattr__(obj, name, new)
            elif isinstance(value, (dict, *_CONTAINERS)) or _ours(value):
                stack.append(value)
    return found


def _module_roots() -> list[object]:
    """svcclient's module globals: module-level locks are replaced in place, the rest
    (the breaker registry, route tables) is walked."""
    roots: list[object] = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "svcclient" or name.startswith("svcclient.")):
            continue
        if name == __name__:
            continue  # the registries and the graveyard: nothing in them is to be re-armed
        for attr, value in list(vars(module).items()):
            if attr.startswith("__"):
                continue
            new = _fresh(value)
            if new is not None:
                setattr(module, attr, new)
            elif isinstance(value, (dict, *_CONTAINERS)) or _ours(value):
                roots.append(value)
    return roots


def _after_fork_in_child() -> None:
    _drop_sockets()
    failed: BaseException | None = None
    for obj in _walk([*_owners, *_module_roots()]):
        hook = getattr(type(obj), "_after_fork_in_child", None)
        if hook is None or not _svcclient(obj):
            continue
        try:
            hook(obj)
        except Exception as exc:  # one owner's failure must not leave the others as they were
            failed = failed or exc
    if failed is not None:
        raise failed  # reported by the interpreter ("Exception ignored in ..."); fork goes on


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
