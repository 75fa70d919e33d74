"""Shared pytest configuration: the derandomized hypothesis profile used by every property test."""

from hypothesis import settings

settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True)
settings.load_profile("ci")
