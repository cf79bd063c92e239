"""_discovery: see the Design section of the README."""
