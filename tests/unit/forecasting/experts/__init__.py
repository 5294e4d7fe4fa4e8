"""Tests of mesp_core.forecasting.experts: the base classes, the registry and every family."""
