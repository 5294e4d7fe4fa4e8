"""Work past one machine: the offline steps on a Ray cluster (`--ray auto|ADDRESS`).

The only package that imports Ray, and only inside functions: without `--ray` MESP stays one
process and never imports it (an import-linter contract keeps Ray out of every other package).

- `engine`: connecting to a cluster (or starting a local one), a clear error when Ray is missing;
- `trace`: `ShardedTrace`, the day files read into shards of functions, never whole in one process;
- `kshape`: `ShardedKShape`, K-Shape with its assignment and the sums shape extraction needs
  computed per shard; the fit equals the single-process `KShape` on the same rows and seed;
- `patterns`: `cluster_days_sharded`, Experiment 1 (`cluster_days`) over those shards;
- `training`: `ShardedTraceAccess`, `train`'s reads of a ShardedTrace (day sample, windows,
  demand-head examples, validation series) cut in the shards' tasks, and `run_on_ray`, its dense
  family studies and per-cluster expert searches as parallel tasks (the same results as one process);
- `evaluation`: `backtest_on_ray` and `replay_on_ray`, `mesp evaluate` and `mesp simulate` over
  function shards, the figures computed from the joined per-function results as one process does.
"""
