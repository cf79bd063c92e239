"""Every private name svcclient uses from another library, found by walking its source.

A library's private name (one leading underscore) can move or change meaning in any
release. So each one svcclient relies on is declared in ``PINS`` below, with its owner
(the module or class that defines it) and why svcclient uses it, and three tests hold
the table to the source and to the installed libraries:

* the walk finds no private foreign name missing from the table (printed as file:line);
* every entry is still used (no stale entry hides that a name was dropped);
* every entry resolves on the installed versions (on the class or module, or on a real
  instance for what ``__init__`` sets).

How the walk tells a foreign name from svcclient's own
------------------------------------------------------
It reads every module of ``svcclient/`` and ``pytest_svcclient.py`` and finds each
``x._name`` (read, written or deleted), ``getattr``/``hasattr``/``setattr``/``delattr``
(and ``object.__setattr__``) with a constant ``"_name"``, ``from lib import _name`` or
``from lib._private import name``, and ``import lib._private``. Private means one leading
underscore, dunders excluded. A name is svcclient's own when svcclient defines it:
a function, class or variable name, a ``self._name``/``cls._name`` assignment, a
``__slots__`` entry, a dataclass field, an import alias, an argument. Three cases are
foreign all the same:

* a name svcclient does not define (``headers._list``);
* a name svcclient defines, used on something other than ``self``/``cls``, that one of
  the libraries it imports (``LIBRARIES``, read from their source) defines too:
  ``client._state`` is httpx's even though the breaker has a ``_state`` of its own;
* a name a class of svcclient's defines or reaches through ``self`` when a library class
  among its bases has it as well: an override (``FoldedHistogram._metric_init``), or the
  base's state read or set (``RequestFailedError``'s ``self._request``).

Other asserts about what such names mean (not only that they exist) live in
``tests/test_httpx_private.py``.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import importlib.util
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import svcclient

# The walk imports every module of svcclient's to resolve class bases, the aiohttp wire
# included: it needs the aiohttp extra (in the dev extra, so CI has it).
pytest.importorskip("aiohttp")

PACKAGE = pathlib.Path(svcclient.__file__).resolve().parent
ROOT = PACKAGE.parent
SOURCES = (*sorted(PACKAGE.rglob("*.py")), ROOT / "pytest_svcclient.py")
OWN = ("svcclient", "pytest_svcclient")
# The libraries whose own private names make a use on a foreign object foreign even when
# svcclient has an attribute of the same name (what svcclient imports beyond the stdlib,
# and asyncio, whose privates change between Python versions).
LIBRARIES = (
    "httpx",
    "httpcore",
    "h11",
    "prometheus_client",
    "opentelemetry",
    "anyio",
    "sniffio",
    "aiohttp",
    "asyncio",
    "tenacity",
    "dns",
    "respx",
)
SELF = frozenset({"self", "cls"})


# -- the table ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pin:
    """A private name of a library's that svcclient uses."""

    owner: str  # the module or class that has it, dotted (``httpx.Headers``)
    name: str
    why: str
    # builds an object that has ``name`` when ``__init__`` sets it (not the class)
    instance: Callable[[], Any] | None = None


def _client() -> Any:
    import httpx

    return httpx.Client()


def _async_client() -> Any:
    import httpx

    return httpx.AsyncClient()


def _bound_stream() -> Any:
    """The stream httpx's client puts on a response it sent."""
    import httpx

    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client:
        response = client.send(client.build_request("GET", "http://a/"), stream=True)
        response.close()
        return response.stream


def _async_bound_stream() -> Any:
    import httpx
    from httpx import _client

    stream = httpx.ByteStream(b"")
    response = httpx.Response(200, stream=stream)
    return _client.BoundAsyncStream(stream, response=response, start=0.0)


def _histogram() -> Any:
    from prometheus_client import Histogram

    return Histogram("pin_histogram", "pinned", registry=None)


def _counter() -> Any:
    from prometheus_client import Counter

    return Counter("pin_counter", "pinned", ["label"], registry=None)


def _runtime_context() -> Any:
    from opentelemetry import context

    return context._RUNTIME_CONTEXT  # type: ignore[attr-defined]


def _lazy(dotted: str, *args: Any) -> Callable[[], Any]:
    """``lambda: module.Class(*args)`` for a dotted class name, imported when called."""

    def make() -> Any:
        module, _, name = dotted.rpartition(".")
        return getattr(importlib.import_module(module), name)(*args)

    return make


_URL = "http://a/"
PINS: tuple[Pin, ...] = (
    # -- httpx: types svcclient's signatures share with httpx's (typing only) ----------------
    Pin("httpx._client", "UseClientDefault", "type of httpx.USE_CLIENT_DEFAULT (typing only)"),
    Pin("httpx._types", "AuthTypes", "the auth= type httpx accepts (typing only)"),
    Pin("httpx._types", "CookieTypes", "the cookies= type httpx accepts (typing only)"),
    Pin("httpx._types", "HeaderTypes", "the headers= type httpx accepts (typing only)"),
    # -- httpx: the client shells' shortcuts (svcclient/_shortcuts.py, _client.py) -----------
    Pin("httpx._client", "ClientState", "send()'s closed-client check (the plain send)"),
    Pin("httpx.Client", "_merge_url", "overridden: merged URLs remembered per plain path"),
    Pin("httpx.AsyncClient", "_merge_url", "overridden: merged URLs remembered per plain path"),
    Pin("httpx.Client", "_send_single_request", "the plain send: httpx's own single exchange"),
    Pin("httpx.AsyncClient", "_send_single_request", "the plain send's single exchange"),
    Pin("httpx.Client", "_set_timeout", "the plain send gives the request the client timeout"),
    Pin("httpx.Client", "_build_redirect_request", "the plain send's response.next_request"),
    Pin("httpx.Client", "_state", "the plain send's closed/opened bookkeeping", _client),
    Pin("httpx.Client", "_auth", "the plain send only when the client has no auth", _client),
    Pin("httpx.Client", "_event_hooks", "the plain send only with no event hook", _client),
    Pin("httpx.Client", "_params", "the plain request only with no client params", _client),
    Pin("httpx.Client", "_cookies", "the cookies property (client cookie jar)", _client),
    Pin("httpx.AsyncClient", "_cookies", "the cookies property (client cookie jar)", _async_client),
    Pin("httpx.Client", "_headers", "the plain request's header list, copied", _client),
    Pin("httpx.Client", "_timeout", "the plain request's timeout extension", _client),
    Pin(
        "httpx.Headers", "_list", "the plain request's header list, copied", _lazy("httpx.Headers")
    ),
    Pin(
        "httpx.Headers",
        "_encoding",
        "set on a Headers made without __init__",
        _lazy("httpx.Headers"),
    ),
    Pin(
        "httpx.Request",
        "_content",
        "a plain request's empty body",
        _lazy("httpx.Request", "GET", _URL),
    ),
    Pin(
        "httpx.Response",
        "_content",
        "the body an attempt read, set as httpx's read does",
        _lazy("httpx.Response", 200),
    ),
    Pin(
        "httpx.Response",
        "_num_bytes_downloaded",
        "what httpx's read sets",
        _lazy("httpx.Response", 200),
    ),
    Pin(
        "httpx._client.BoundSyncStream",
        "_stream",
        "the in-memory body inside httpx's stream",
        _bound_stream,
    ),
    Pin(
        "httpx._client.BoundAsyncStream",
        "_stream",
        "the in-memory body inside httpx's stream",
        _async_bound_stream,
    ),
    Pin(
        "httpx.ByteStream",
        "_stream",
        "the body's bytes (a body-less request skips a call)",
        _lazy("httpx.ByteStream", b""),
    ),
    # -- httpx and httpcore: the pipeline and its pools --------------------------------------
    Pin(
        "httpx.URL",
        "_uri_reference",
        "parsed path/scheme/host/port without property calls",
        _lazy("httpx.URL", _URL),
    ),
    Pin(
        "httpx.RequestError",
        "_request",
        "set without three __init__ calls (fast fail)",
        _lazy("httpx.ConnectError", "x"),
    ),
    Pin(
        "httpx.HTTPTransport",
        "_pool",
        "a caller's transport's pool, sockets capped",
        _lazy("httpx.HTTPTransport"),
    ),
    Pin(
        "httpcore.ConnectionPool",
        "_network_backend",
        "a caller's pool's sockets, capped",
        _lazy("httpcore.ConnectionPool"),
    ),
    Pin(
        "httpcore.ConnectionPool",
        "_http2",
        "HTTP/2 pools are left uncapped",
        _lazy("httpcore.ConnectionPool"),
    ),
    Pin("httpx.Client", "_transport", "instrument() wraps a plain client's transport", _client),
    Pin("httpx.Client", "_mounts", "instrument() wraps a plain client's mounts", _client),
    # -- prometheus_client: metric reuse and the lock-free histogram -------------------------
    Pin(
        "prometheus_client.CollectorRegistry",
        "_names_to_collectors",
        "find a metric already registered under a name (no public lookup)",
        _lazy("prometheus_client.CollectorRegistry"),
    ),
    Pin(
        "prometheus_client.metrics.MetricWrapperBase",
        "_labelnames",
        "a reused metric must have svcclient's labels",
        _counter,
    ),
    Pin(
        "prometheus_client.metrics.MetricWrapperBase",
        "_documentation",
        "a clashing metric described in the error",
        _counter,
    ),
    Pin("prometheus_client.Histogram", "_metric_init", "overridden: a series' pending list"),
    Pin(
        "prometheus_client.metrics.MetricWrapperBase",
        "_child_samples",
        "overridden: a scrape folds the pending values first",
    ),
    Pin(
        "prometheus_client.Histogram", "_upper_bounds", "the buckets a fold counts into", _histogram
    ),
    Pin(
        "prometheus_client.Histogram", "_buckets", "the bucket counters a fold adds to", _histogram
    ),
    Pin("prometheus_client.Histogram", "_sum", "the sum a fold adds to", _histogram),
    # -- OpenTelemetry API: globals read without the getters' Python calls -------------------
    Pin("opentelemetry.trace", "_TRACER_PROVIDER", "is a tracer provider set (~30 ns)"),
    Pin("opentelemetry.metrics", "_internal", "the module that holds the meter provider"),
    Pin("opentelemetry.metrics._internal", "_METER_PROVIDER", "is a meter provider set"),
    Pin("opentelemetry.context", "_RUNTIME_CONTEXT", "the context's ContextVar, read directly"),
    Pin(
        "opentelemetry.context.contextvars_context.ContextVarsRuntimeContext",
        "_current_context",
        "the ContextVar behind get_current()",
        _runtime_context,
    ),
    Pin(
        "opentelemetry.context",
        "_SUPPRESS_HTTP_INSTRUMENTATION_KEY",
        "the key HTTP instrumentations check (read with a default)",
    ),
    # -- the standard library ----------------------------------------------------------------
    Pin("asyncio", "_get_running_loop", "the C helper behind get_running_loop (LoopTimer)"),
    Pin("asyncio.tasks", "_current_tasks", "3.11's current_task(loop) as a dict get"),
    Pin(
        "http.cookiejar.CookieJar",
        "_cookies_lock",
        "a forked child's jar gets a fresh lock",
        _lazy("http.cookiejar.CookieJar"),
    ),
    Pin("os", "_exit", "a forked test child exits without running the parent's cleanup"),
)


# -- the walk -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Use:
    """One place svcclient uses a private foreign name."""

    key: str  # the name, or an import's dotted path
    where: str  # file:line
    kind: str


@dataclasses.dataclass(frozen=True)
class _Module:
    path: pathlib.Path
    name: str
    tree: ast.Module
    parents: dict[ast.AST, ast.AST]

    def where(self, node: ast.AST) -> str:
        return f"{self.path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_own(module: str) -> bool:
    return module.split(".", 1)[0] in OWN


def _on_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in SELF


def _modules() -> list[_Module]:
    found = []
    for path in SOURCES:
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        tree = ast.parse(path.read_text(), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        found.append(_Module(path, ".".join(parts), tree, parents))
    return found


@functools.cache
def _library_names() -> frozenset[str]:
    """The private names ``LIBRARIES`` define (functions, classes, globals, attributes
    they assign), read from their installed source."""
    names: set[str] = set()
    for lib in LIBRARIES:
        spec = importlib.util.find_spec(lib)
        if spec is None:
            continue
        for root in spec.submodule_search_locations or [spec.origin]:
            base = pathlib.Path(str(root))
            for path in base.rglob("*.py") if base.is_dir() else [base]:
                try:
                    tree = ast.parse(path.read_bytes())
                except (SyntaxError, ValueError):
                    continue
                for node in ast.walk(tree):
                    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                        names.add(node.name)
                    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                        names.add(node.id)
                    elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                        names.add(node.attr)
    return frozenset(filter(_is_private, names))


@functools.cache
def _class_privates(cls: type) -> dict[str, str]:
    """A library class's private names (its attributes, and what its methods and those of
    its library bases assign to ``self``) -> the class that has each."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if _is_own(klass.__module__) or klass.__module__ == "builtins":
            continue
        owner = f"{klass.__module__}.{klass.__qualname__}"
        for name in vars(klass):
            if _is_private(name):
                found[name] = owner
        # The class's source, found through its functions' code (httpx sets __module__ to
        # "httpx" on its public classes, where inspect.getsource cannot find them).
        files = {
            f.__code__.co_filename
            for f in vars(klass).values()
            if hasattr(f, "__code__") and f.__code__.co_filename.endswith(".py")
        }
        for file in files:
            for node in ast.walk(ast.parse(pathlib.Path(file).read_bytes())):
                if isinstance(node, ast.ClassDef) and node.name == klass.__name__:
                    for child in ast.walk(node):
                        if (
                            isinstance(child, ast.Attribute)
                            and isinstance(child.ctx, ast.Store)
                            and _on_self(child.value)
                            and _is_private(child.attr)
                        ):
                            found[child.attr] = owner
    return found


def _namespace(module: _Module) -> dict[str, Any]:
    """The module's globals plus what its functions import locally (to resolve bases)."""
    space = dict(vars(importlib.import_module(module.name)))
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                bound = alias.asname or alias.name
                if alias.name != "*" and bound not in space:
                    lib = importlib.import_module(node.module)
                    try:
                        space[bound] = getattr(lib, alias.name)
                    except AttributeError:  # a submodule its package does not import
                        space[bound] = importlib.import_module(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".", 1)[0]
                if alias.asname:
                    space.setdefault(alias.asname, importlib.import_module(alias.name))
                else:
                    space.setdefault(top, importlib.import_module(top))
    return space


def _qualname(module: _Module, node: ast.ClassDef) -> str:
    names = [node.name]
    parent = module.parents.get(node)
    while parent is not None and not isinstance(parent, ast.Module):
        if isinstance(parent, ast.ClassDef):
            names.append(parent.name)
        elif isinstance(parent, ast.FunctionDef | ast.AsyncFunctionDef):
            names += ["<locals>", parent.name]
        parent = module.parents.get(parent)
    return ".".join(reversed(names))


def _class_body(node: ast.ClassDef) -> Iterator[ast.AST]:
    """The nodes of a class's own body (nested classes left out) and the private name
    each defines or reaches through ``self``."""
    todo: list[ast.AST] = list(node.body)
    class_level = {
        target
        for stmt in node.body
        if isinstance(stmt, ast.Assign | ast.AnnAssign)
        for target in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])
    }
    while todo:
        child = todo.pop()
        if not isinstance(child, ast.ClassDef):
            todo.extend(ast.iter_child_nodes(child))
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield child
        elif isinstance(child, ast.Attribute) and _on_self(child.value):
            yield child
        elif child in class_level:
            yield child


def _node_name(node: ast.AST) -> str:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _overrides(modules: list[_Module]) -> dict[ast.AST, str]:
    """Nodes where a class of svcclient's (or one of svcclient's classes it inherits
    from) defines or touches on ``self`` a private name that a library class among its
    bases has: node -> that library class."""
    classes = {
        (module.name, _qualname(module, node)): node
        for module in modules
        for node in ast.walk(module.tree)
        if isinstance(node, ast.ClassDef)
    }
    found: dict[ast.AST, str] = {}
    for module in modules:
        space: dict[str, Any] | None = None
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.ClassDef) or not node.bases:
                continue
            space = space if space is not None else _namespace(module)
            mro: list[type] = []
            for base in node.bases:
                expr = base.value if isinstance(base, ast.Subscript) else base
                try:
                    obj = eval(ast.unparse(expr), space)  # svcclient's own source
                except Exception as exc:
                    raise AssertionError(
                        f"{module.where(node)}: cannot resolve the base {ast.unparse(expr)}"
                    ) from exc
                mro += getattr(obj, "__mro__", ())  # none for typing.TypedDict's function
            privates: dict[str, str] = {}
            for klass in mro:
                if not _is_own(klass.__module__):
                    privates = _class_privates(klass) | privates
            if not privates:
                continue
            own = [node] + [
                classes[k.__module__, k.__qualname__]
                for k in mro
                if (k.__module__, k.__qualname__) in classes
            ]
            for klass_node in own:
                for child in _class_body(klass_node):
                    name = _node_name(child)
                    if _is_private(name) and name in privates:
                        found[child] = privates[name]
    return found


def _attribute_call(node: ast.Call) -> tuple[ast.expr, str] | None:
    """``getattr(x, "_name", ...)`` and kin: (x, "_name")."""
    func = node.func
    named = isinstance(func, ast.Name) and func.id in {"getattr", "hasattr", "setattr", "delattr"}
    dunder = isinstance(func, ast.Attribute) and func.attr == "__setattr__"
    if (named or dunder) and len(node.args) >= 2:
        arg = node.args[1]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _is_private(arg.value):
            return node.args[0], arg.value
    return None


def _own_names(modules: list[_Module], overrides: dict[ast.AST, str]) -> set[str]:
    """The private names svcclient defines itself (see the module docstring)."""
    ours: set[str] = set()
    for module in modules:
        for node in ast.walk(module.tree):
            if node in overrides:
                continue
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                ours.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                ours.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if _on_self(node.value):
                    ours.add(node.attr)
            elif isinstance(node, ast.arg):
                ours.add(node.arg)
            elif isinstance(node, ast.alias) and node.asname:
                ours.add(node.asname)
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
            ):
                ours.update(
                    c.value
                    for c in ast.walk(node.value)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                )
            elif isinstance(node, ast.Call) and (found := _attribute_call(node)) is not None:
                if _on_self(found[0]) and getattr(node.func, "id", "") != "getattr":
                    ours.add(found[1])
    return {name for name in ours if _is_private(name)}


@functools.cache
def walk() -> tuple[Use, ...]:
    """Every use of a private foreign name in svcclient's source."""
    modules = _modules()
    overrides = _overrides(modules)
    ours = _own_names(modules, overrides)
    libraries = _library_names()

    def foreign(receiver: ast.AST, name: str) -> bool:
        if name not in ours:
            return True
        return not _on_self(receiver) and name in libraries

    uses: list[Use] = []
    for module in modules:
        for node in ast.walk(module.tree):
            where = module.where(node)
            if node in overrides:
                uses.append(
                    Use(_node_name(node), where, f"defined or reached as {overrides[node]}'s")
                )
            elif isinstance(node, ast.Attribute) and _is_private(node.attr):
                if foreign(node.value, node.attr):
                    uses.append(Use(node.attr, where, "attribute"))
            elif isinstance(node, ast.Call) and (found := _attribute_call(node)) is not None:
                if foreign(*found):
                    uses.append(Use(found[1], where, "attribute by name"))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if not _is_own(node.module):
                    for alias in node.names:
                        path = f"{node.module}.{alias.name}"
                        if any(map(_is_private, path.split("."))):
                            uses.append(Use(path, where, "import"))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if not _is_own(alias.name) and any(map(_is_private, alias.name.split("."))):
                        uses.append(Use(alias.name, where, "import"))
    return tuple(uses)


def _covers(pin: Pin, use: Use) -> bool:
    return use.key in (pin.name, f"{pin.owner}.{pin.name}")


# -- the tests ------------------------------------------------------------------------------


def test_every_private_foreign_name_svcclient_uses_is_in_the_table() -> None:
    """A private name of another library's used anywhere in svcclient is declared in PINS."""
    missing = [u for u in walk() if not any(_covers(pin, u) for pin in PINS)]
    assert not missing, (
        "private names of other libraries used by svcclient but not declared in PINS "
        "(tests/test_private_names.py): add each with its owner and why, or stop using it:\n"
        + "\n".join(f"  {u.where}: {u.key} ({u.kind})" for u in missing)
    )


def test_no_stale_entry_in_the_table() -> None:
    """Each entry in PINS is still used somewhere in svcclient's source."""
    uses = walk()
    stale = [pin for pin in PINS if not any(_covers(pin, u) for u in uses)]
    assert not stale, "entries of PINS svcclient no longer uses (remove them):\n" + "\n".join(
        f"  {pin.owner}.{pin.name}" for pin in stale
    )


def _resolve(dotted: str) -> Any:
    """A module, or an attribute reached from the longest importable module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("pin", PINS, ids=lambda pin: f"{pin.owner}.{pin.name}")
def test_each_entry_resolves_on_the_installed_version(pin: Pin) -> None:
    """Each entry of PINS exists where svcclient looks for it, in the installed release."""
    if importlib.util.find_spec(pin.owner.split(".", 1)[0]) is None:
        pytest.skip(f"{pin.owner.split('.', 1)[0]} is not installed (an extra)")
    owner = _resolve(pin.owner)
    if pin.instance is None:
        assert hasattr(owner, pin.name), f"{pin.owner} has no {pin.name}"
        return
    obj = pin.instance()
    try:
        assert isinstance(obj, owner), f"{pin.owner}: the instance is a {type(obj)}"
        assert hasattr(obj, pin.name), f"a {pin.owner} instance has no {pin.name}"
    finally:
        close = getattr(obj, "close", None)
        if callable(close) and not isinstance(obj, _resolve("httpx.AsyncClient")):
            close()


def test_the_walk_finds_what_it_should() -> None:
    """The walk itself: an override, a use through self of a library base's state, a
    getattr by name, a private import and a name svcclient shares with httpx are found;
    svcclient's own private names are not."""
    keys: dict[str, set[str]] = {}
    for use in walk():
        keys.setdefault(use.key, set()).add(use.kind)
    # FoldedHistogram's override, and RequestFailedError's self._request (httpx's state)
    assert "defined or reached as prometheus_client.metrics.Histogram's" in keys["_metric_init"]
    assert keys["_request"] == {"defined or reached as httpx.RequestError's"}
    assert keys["_http2"] == {"attribute by name"}  # getattr(pool, "_http2", True)
    assert "httpx._types.AuthTypes" in keys
    assert "_state" in keys  # client._state, though the breaker has a _state of its own
    assert "_core" not in keys and "_lock" not in keys  # svcclient's own pools' attributes
