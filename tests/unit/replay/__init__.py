"""Tests of mesp_core.replay: policies, baselines, the replay engine, its report and the standard comparison."""
