"""Tests of mesp_core.forecasting: K-Shape, day patterns, the router, the model and its artifact."""
