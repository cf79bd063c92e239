"""_policies: see the Design section of the README."""
