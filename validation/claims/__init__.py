"""Claim modules; each registers its claims with :func:`validation.core.claim` on import."""
