"""breaker: see the Design section of the README."""
