"""Unit tests; the folders mirror mesp_core's packages (data, forecasting, offline, replay, cli).

A package, so that test modules of the same name in different folders (e.g. replay/test_simulate.py
and cli/test_simulate.py) import as different modules (unit.replay.test_simulate, unit.cli.test_simulate).
"""
