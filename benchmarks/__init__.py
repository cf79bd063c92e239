"""svcclient's benchmark suite: ``python -m benchmarks [--quick] [--out DIR]``.

Every figure is a ratio or a rate measured in one run with the contenders interleaved
(``benchmarks._timing``), min / median / max over repeats. The runner writes
``results/latest.json``, ``results/latest.md`` and ``results/latency_under_faults.svg`` and
exits non-zero when a CI guard is broken (see ``benchmarks.__main__``).

Sections: ``bench_overhead`` (happy-path cost vs httpx and vs tenacity + pybreaker),
``bench_fastfail`` (rejection with the breaker open / bulkhead full), ``bench_goodput``
(three real servers with faults), ``bench_scale`` (pick cost, memory, 1,000 concurrent);
plus the per-module micro-benchmarks ``bench_breaker``, ``bench_retry``,
``bench_balancing`` and ``bench_observability`` when present.
"""
