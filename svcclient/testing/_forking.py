"""Forked children for fork-safety tests and benchmarks (the gunicorn ``--preload`` case).

A child runs a function, sends its JSON result back through a pipe and ends with
``os._exit``; the parent reaps it with a give-up time and kills it past that, so a hung
child is counted instead of hanging the run. ``echo_ids`` sends requests whose path
carries a unique id to a server that echoes the path (``Fault.ok``) and counts answers
meant for someone else.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import httpx

__all__ = ["Result", "aecho_ids", "echo_ids", "fork_child", "reap_child", "warm_pool"]

Result = dict[str, Any]


def fork_child(child: Callable[[], Result]) -> tuple[int, int]:
    """Fork; the child runs ``child``, writes its result as JSON to a pipe and
    ``_exit``s. Returns the child's pid and the pipe's read end."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns (DeprecationWarning) about fork() in a multi-threaded
        # process. Forking one (servers, health checks and app threads run) is the
        # scenario under test, so the warning is silenced for this call only.
        warnings.filterwarnings("ignore", message=".*fork", category=DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_fd)
            os.write(write_fd, json.dumps(child()).encode())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def reap_child(pid: int, read_fd: int, give_up: float) -> Result | None:
    """The child's result (``{"crashed": True}`` if it failed); None if it had to be
    killed at ``give_up`` (monotonic time)."""
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > give_up:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
            time.sleep(0.005)
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
    if status != 0 or not chunks:
        return {"crashed": True}
    result: Result = json.loads(b"".join(chunks))
    return result


def _path(role: str, i: int) -> str:
    return f"/{role}/{os.getpid()}/{i}"


def echo_ids(client: httpx.Client, role: str, n: int) -> Result:
    """``n`` requests with unique paths; counts echoed paths that are not the one sent."""
    crossed = errors = 0
    for i in range(n):
        path = _path(role, i)
        try:
            got = client.get(path).json()["path"]
        except httpx.HTTPError:
            errors += 1
            continue
        crossed += got != path
    return {"crossed": crossed, "errors": errors}


async def aecho_ids(client: httpx.AsyncClient, role: str, n: int) -> Result:
    """The async twin of :func:`echo_ids`."""
    crossed = errors = 0
    for i in range(n):
        path = _path(role, i)
        try:
            got = (await client.get(path)).json()["path"]
        except httpx.HTTPError:
            errors += 1
            continue
        crossed += got != path
    return {"crossed": crossed, "errors": errors}


def warm_pool(client: httpx.Client, threads: int = 4, each: int = 5) -> None:
    """Several pooled keep-alive connections, as a busy parent has."""

    def work() -> None:
        for _ in range(each):
            client.get("/warm")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
