"""Work past one machine: the offline steps on a Ray cluster (`--ray auto|ADDRESS`).

The only package that imports Ray, and only inside functions: without `--ray` MESP stays one
process and never imports it (an import-linter contract keeps Ray out of every other package).

- `engine`: connecting to a cluster (or starting a local one), a clear error when Ray is missing;
- `trace`: `ShardedTrace`, the day files read into shards of functions, never whole in one process;
- `kshape`: `ShardedKShape`, K-Shape with its assignment and the sums shape extraction needs
  computed per shard; the fit equals the single-process `KShape` on the same rows and seed;
- `patterns`: `cluster_days_sharded`, Experiment 1 (`cluster_days`) over those shards.
"""
