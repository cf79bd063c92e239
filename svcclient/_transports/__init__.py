"""_transports: see the Design section of the README."""
