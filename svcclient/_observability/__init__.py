"""_observability: see the Design section of the README."""
