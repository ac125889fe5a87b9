"""Tests of the benchmark harness (tether.bench)."""
