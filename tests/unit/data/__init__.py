"""Tests of mesp_core.data: the trace, its reader and writer, the other tables, the generator, windows."""

import pytest

# support.py checks errors with plain asserts: have pytest explain them as it does in test modules.
pytest.register_assert_rewrite(f"{__name__}.support")
