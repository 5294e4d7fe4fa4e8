"""Tests of mesp_core.cli: one file per command, plus what the commands share."""
