"""Tests of mesp_core.offline: configuration, split, selection, training, extension, evaluation, plots."""
