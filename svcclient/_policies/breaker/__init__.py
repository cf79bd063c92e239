"""breaker: policy (frozen), machine (state table, no I/O), guard (the callable wrapper),
window (rolling counts), registry (shared by name). See the Design section of the README.

Imports go one way: registry -> guard -> machine -> policy, window.
"""
