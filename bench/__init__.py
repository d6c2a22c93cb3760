"""Benchmarks and load scripts (not part of the fusion_jobs package); ``bench.settings`` is their Django config."""
