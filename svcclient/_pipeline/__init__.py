"""_pipeline: see the Design section of the README."""
