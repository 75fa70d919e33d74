"""Shared pytest configuration: the hypothesis profiles used by every property test.

``ci`` (the default): 30 derandomized examples per property, so that CI is fast and repeatable.
``long``: 500 fresh random examples per property, for a deeper search before a release::

    HYPOTHESIS_PROFILE=long python -m pytest tests/test_optim_properties.py tests/test_llm_train.py
"""

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True)
settings.register_profile("long", max_examples=500, deadline=None, derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
