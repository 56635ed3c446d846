"""Benchmarks for mesos-nb (``python -m bench``); figures go to BENCHMARKS.md.

Shared pieces: :mod:`bench.master_proc` (a master in its own process, instrumented from the
outside), :mod:`bench.emulated_agents` (thousands of agents on a few channel connections),
:mod:`bench.loop_probe` (event-loop stall probes).
"""
