"""Tests for tether.export."""
