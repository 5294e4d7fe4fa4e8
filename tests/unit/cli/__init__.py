"""Tests of mesp_core.cli: one file per command, plus what the commands share."""

import pytest

# support.py checks one-line errors with plain asserts: have pytest explain them as in test modules.
pytest.register_assert_rewrite(f"{__name__}.support")
