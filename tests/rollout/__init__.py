"""Tests for tether.rollout."""
