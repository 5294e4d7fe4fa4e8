"""The trace-driven cold-start replay: the replay engine, the floor policies it compares (MESP's and
the baselines'), and its report."""
