"""_balancing: see the Design section of the README."""
