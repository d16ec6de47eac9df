"""Load tests and benchmarks (separate commands, never part of the pytest suite); see README.md."""
