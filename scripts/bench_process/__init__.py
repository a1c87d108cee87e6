"""The whole-process benchmark behind scripts/bench-process.py: workloads, runner, report."""
