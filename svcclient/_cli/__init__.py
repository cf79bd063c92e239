"""_cli: see the Design section of the README."""
