"""What vulture reports unused in svcclient but is not dead: read by vulture only.

``vulture`` (configured in pyproject.toml, run by .ci/run) scans svcclient and the pytest
plugin, not the tests: code only the tests call is dead code too. Each name below says
why it stays. A new report is either dead code (delete it) or one of these kinds (add
it here, with the reason).
"""

# ruff: noqa: B018, F821

# -- public API: exported names' methods and fields users call ------------------------------
_.panic  # LoadBalancer.panic (svcclient.LoadBalancer)
_.on_start  # LoadBalancer.on_start (documented in its docstring example)
_.search_list  # DnsResolver.search_list() (svcclient.DnsResolver)
_.resolved_at  # EndpointSet.resolved_at (svcclient.EndpointSet)
_.next_refresh  # EndpointSet.next_refresh
_.refreshing  # EndpointSet.refreshing
failure_rate  # BreakerStats.failure_rate (svcclient.BreakerStats field)
slow_call_rate  # BreakerStats.slow_call_rate
_.successes  # BreakerStats.successes
_.disable  # CircuitBreaker.disable() (opossum's API)
_.off  # CircuitBreaker.off() (opossum's API: unsubscribe)
withdrawn_total  # BudgetStats.withdrawn_total (svcclient.BudgetStats field)
exhausted_total  # BudgetStats.exhausted_total
_.from_header  # Deadline.from_header() (svcclient.Deadline)
_.disabled  # RetryPolicy.disabled() (svcclient.RetryPolicy)
_.max_retries  # RetryPolicy.max_retries
_.is_accept  # ThrottlePolicy.is_accept() (svcclient.ThrottlePolicy)
_.on_attempt_start  # Hooks events: the observer protocol; HookTable finds them by name
_.on_attempt_end  # (hooks._EVENTS) and calls them through CallEvents or fire()
_.on_retry

# -- public test helpers: svcclient.testing and the pytest plugin's fixtures ----------------
_.kubernetes  # the svc_env fixture's kubernetes()
_.option  # the svc_env fixture's option()
_.asleep  # FakeClock.asleep()
_.stall_before_headers  # Fault.stall_before_headers() and the other faults below
_.stall_mid_body
_.truncated
_.malformed
_.dribble
_.dribble_headers
_.endless_chunked
_.accept_never_answer
_.never_accept
_.upgrade
_.open_connections  # FaultServer.open_connections
_.push_faults  # FaultServer.push_faults()
_.set_backends  # KubeProxy.set_backends()
_.set_silent  # LocalDns.set_silent()
_.queries  # LocalDns.queries

# -- protocols: module __getattr__/__dir__, __exit__ and __get__ parameters -----------------
__getattr__  # svcclient/__init__.py: lazy exports (PEP 562)
__dir__
tb  # __exit__(self, exc_type, exc, tb)
objtype  # __get__(self, obj, objtype=None)

# -- attributes a library reads, set by svcclient -------------------------------------------
_._cookies_lock  # http.cookiejar.CookieJar's lock, replaced in a forked child
_.lifetime  # dns.resolver.Resolver.lifetime
_.attempt_number  # tenacity.RetryCallState.attempt_number, read by the wait strategies
_.is_stream_consumed  # httpx.Response: what httpx's read sets (the plain send)
_._num_bytes_downloaded
_._encoding  # httpx.Headers._encoding on a header list built without __init__
_.next_request  # httpx.Response.next_request

# -- internal helpers kept for tests and tools -----------------------------------------------
_.order  # HashRing.order(): every slot from a key's first choice to its last (test_hashing)
_.excluded  # OutlierDetector.excluded(): the endpoints out of rotation (test_outlier)

# -- kept for tests ---------------------------------------------------------------------------
# The bulkhead core's release step as its own method (tests drive the release protocol
# through it; Bulkhead.release does the same step under its own fast path).
_.free_slot
# BreakerPolicy.is_failure_status: public (the pipeline reads failure_status_codes as data).
_.is_failure_status
