"""_config: see the Design section of the README."""
