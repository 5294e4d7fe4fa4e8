"""Floor ideas tried for issue 16 and rejected, measured on the model's VALIDATION functions only.

Each idea adds floor candidates to the floor stage's 19 (or changes how the rolling choice weighs
the past); the question is whether the MESP curve, and the hindsight curve that bounds it, move
towards the targets (cold rate at the seasonal-naive floor's idle, idle at keep-alive 10's cold
rate). Every candidate is replayed alone as in `bench_floor_val.py --ceiling` (second half-day,
capacity 60, lead 1, 2 minutes of keep-alive), and two choices are made among them per cost:

- "rolling": the planner's rule on those replays: every RESELECT_EVERY minutes, each function takes
  the candidate cheapest by C * cold + idle over the last SCORE_WINDOW minutes (ties and the first
  MIN_SCORED_MINUTES keep the stage's default). It approximates MESP's own replay (a switch here does
  not carry instances over), the same way for every family, so the families compare fairly;
- "hindsight per 30-min block": the best any choice among these candidates can do.

Ideas:
- occupancy: a classifier of P(any invocation in [t, t + lead]) trained with binary cross-entropy on
  the model's FIT functions (the demand head's features + the last 8 inter-arrival gaps); floors
  1[p >= 1 / (1 + C)] (the newsvendor rule for one instance), alone or with the head's q=0.5 / q=0.7;
- hazard: each function's own idle-time histogram (with a prior from its busy share); floor 1 while
  the chance that the gap ends in [t, t + lead] is >= 1 / (1 + C), alone or with q=0.5 / q=0.7;
- recency: the rolling choice with the past weighted by decay^(k-1) for its k-th 30-minute block back.

    python bench/bench_floor_tried.py --model mesp_core/default_model [--sample N] [--json OUT.json]

Measured 2026-12-07 (packaged model, 1,027 validation functions x 720 minutes, 99 s): cold rate at
the naive floor's idle / idle at keep-alive 10's cold rate, as multiples of theirs:

                           rolling          hindsight per block
    the 19 candidates      0.756x  0.634x   0.481x  0.506x
    + occupancy            0.755x  0.633x   0.478x  0.505x
    + hazard               0.756x  0.633x   0.476x  0.504x
    recency decay 0.9      0.754x  0.632x   (the candidates are the same)
    recency decay 0.7      0.755x  0.633x
    recency decay 0.5      0.765x  0.647x

The two chances are calibrated (busy share where p is in [0.1, 0.2): 0.135 occupancy, 0.149
hazard; in [0.5, 0.9): 0.644, 0.813), yet no idea moves either curve by more than 0.005x: not kept.
Alone, the one-instance floors stop at 4.0% cold even at C = 64 (4.21% / 265,238 occupancy, 4.20% / 287,808 hazard at C = 8): the rest of the
cold starts are in scaling past one instance and in arrivals nothing in the past announces. This
"rolling" approximates MESP's own replay pessimistically (bench_floor_val: 0.70x / 0.60x), but it is
the same for every line above.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench_floor_val import add_validation_args, candidate_replays, interpolate, load_floor_model
from mesp_core.floor_cost import demand_instances, replay_floors
from mesp_core.forecasting.demand import origin_features
from mesp_core.forecasting.floors import ALL_CLUSTERS, MIN_SCORED_MINUTES, RESELECT_EVERY, SCORE_WINDOW

LEAD = 1
GAPS = 8  # inter-arrival gaps the occupancy classifier reads
GAP_SPAN = 240  # minutes it looks back for them
BLOCK = RESELECT_EVERY  # the planner reselects every 30 minutes; blocks of the same size


# ---------------------------------------------------------------------------- occupancy classifier
def gap_features(counts: np.ndarray, rows: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """[m, GAPS + 2]: the last GAPS gaps between busy minutes before each origin (log-scaled, GAP_SPAN + 1
    when unknown), the current idle time, and the idle time over the median gap."""
    out = np.zeros((len(rows), GAPS + 2), dtype=np.float32)
    scale = np.log1p(GAP_SPAN + 1)
    for lo in range(0, len(rows), 8192):
        r, o = rows[lo: lo + 8192], origins[lo: lo + 8192]
        cols = o[:, None] + np.arange(-GAP_SPAN, 0)[None, :]
        busy = (counts[r[:, None], np.clip(cols, 0, None)] > 0) & (cols >= 0)
        # Minutes back of the busy minutes, most recent first (a large number where there are fewer).
        back = np.sort(np.where(busy[:, ::-1], np.arange(1, GAP_SPAN + 1)[None, :], 10**6), axis=1)[:, : GAPS + 1]
        gaps = np.where(back[:, 1:] >= 10**6, GAP_SPAN + 1, np.diff(back, axis=1)).astype(np.float64)
        idle = np.minimum(back[:, 0], GAP_SPAN + 1).astype(np.float64)
        out[lo: lo + 8192, :GAPS] = np.log1p(np.minimum(gaps, GAP_SPAN + 1)) / scale
        out[lo: lo + 8192, GAPS] = np.log1p(idle) / scale
        out[lo: lo + 8192, GAPS + 1] = np.clip(idle / np.maximum(np.median(gaps, axis=1), 1.0), 0, 10) / 10
    return out


def occupancy_inputs(counts, rows, origins) -> np.ndarray:
    x, _level = origin_features(counts, rows, origins)
    return np.concatenate([x, gap_features(counts, rows, origins)], axis=1)


def train_occupancy(fit_counts: np.ndarray, origins: int, epochs: int, seed: int):
    """A seeded MLP classifier of P(busy in [t, t + LEAD]) on the fit functions' minutes."""
    rng = np.random.default_rng(seed)
    n, T = fit_counts.shape
    rows, at = rng.integers(0, n, origins), rng.integers(60, T - LEAD, origins)
    x = torch.from_numpy(occupancy_inputs(fit_counts, rows, at))
    y = torch.from_numpy(((fit_counts[rows, at] > 0) | (fit_counts[rows, at + LEAD] > 0)).astype(np.float32))
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                              torch.nn.ReLU(), torch.nn.Linear(128, 1))
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        order, total = torch.randperm(len(x), generator=generator), 0.0
        for lo in range(0, len(x), 256):
            batch = order[lo: lo + 256]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[batch])[:, 0], y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        print(f"occupancy classifier epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}", file=sys.stderr, flush=True)
    return net.eval()


def occupancy_probabilities(net, counts: np.ndarray, start: int) -> np.ndarray:
    n, T = counts.shape
    out = np.zeros((n, T - start), dtype=np.float32)
    with torch.inference_mode():
        for t in range(start, T):
            x = occupancy_inputs(counts, np.arange(n), np.full(n, t))
            out[:, t - start] = torch.sigmoid(net(torch.from_numpy(x))[:, 0]).numpy()
    return out


# ---------------------------------------------------------------------------- hazard from idle times
def hazard_probabilities(counts: np.ndarray, start: int, prior: float = 2.0, cap: int = 1441) -> np.ndarray:
    """Per minute t >= start, the chance that the current gap ends in [t, t + LEAD], from each
    function's own gaps before t (smoothed towards its busy share of the last 240 minutes)."""
    n, T = counts.shape
    busy = counts > 0
    hist = np.zeros((n, cap + 1))
    last = np.full(n, -1)
    out = np.zeros((n, T - start), dtype=np.float32)
    rows = np.arange(n)

    def record(m: int) -> None:
        nonlocal last
        ended = busy[:, m] & (last >= 0)
        np.add.at(hist, (np.flatnonzero(ended), np.minimum(m - last[ended], cap)), 1)
        last = np.where(busy[:, m], m, last)

    for m in range(start):
        record(m)
    for t in range(start, T):
        base = busy[:, max(0, t - 240): t].mean(axis=1)
        at_least = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]
        gap = np.where(last >= 0, t - last, cap)
        chance = [(hist[rows, np.minimum(gap + j, cap)] + prior * base) / (at_least[rows, np.minimum(gap + j, cap)] + prior)
                  for j in range(LEAD + 1)]
        out[:, t - start] = np.max(chance, axis=0)
        record(t)
    return out


# ---------------------------------------------------------------------------- choices and read-offs
def block_sums(per_minute: np.ndarray) -> np.ndarray:
    """[P, n, W] per minute -> [P, n, W // BLOCK] per reselect block (a last partial block is left out)."""
    P, n, W = per_minute.shape
    blocks = W // BLOCK
    return per_minute[:, :, : blocks * BLOCK].reshape(P, n, blocks, BLOCK).sum(-1)


def rolling_choice(cold_b, idle_b, cost: float, default: int, decay: float = 1.0) -> tuple[int, int]:
    """(cold starts, idle) of the planner's rule on candidates replayed alone, from their block sums
    [P, n, blocks]."""
    P, n, blocks = cold_b.shape
    window = SCORE_WINDOW // BLOCK
    chosen = np.full(n, default)
    total_cold = total_idle = 0
    for b in range(blocks):
        if b * BLOCK >= MIN_SCORED_MINUTES:
            lo = max(0, b - window)
            weights = decay ** np.arange(b - lo)[::-1]  # the block just before b weighs 1
            score = np.einsum("pnk,k->pn", cost * cold_b[:, :, lo:b] + idle_b[:, :, lo:b], weights)
            best = score.argmin(axis=0)
            keep = score[best, np.arange(n)] >= score[default] - 1e-9  # ties keep the default
            chosen = np.where(keep, default, best)
        total_cold += int(cold_b[chosen, np.arange(n), b].sum())
        total_idle += int(idle_b[chosen, np.arange(n), b].sum())
    return total_cold, total_idle


def per_block_hindsight(cold_b, idle_b, cost: float) -> tuple[int, int]:
    pick = np.argmin(cost * cold_b + idle_b, axis=0)[None]
    return int(np.take_along_axis(cold_b, pick, 0).sum()), int(np.take_along_axis(idle_b, pick, 0).sum())


def read_off(points, demanded: int, naive: tuple, keep_alive: tuple) -> tuple[float | None, float | None]:
    """(cold rate at the naive floor's idle / its cold rate, idle at keep-alive 10's cold rate / its idle);
    None where the curve does not reach that far."""
    curve = [{"cold_rate": cold / demanded, "idle": idle} for cold, idle in points]
    at_idle = interpolate(curve, "idle", "cold_rate", naive[1])
    at_cold = interpolate(curve, "cold_rate", "idle", keep_alive[0] / demanded)
    return (None if at_idle is None else at_idle / (naive[0] / demanded),
            None if at_cold is None else at_cold / keep_alive[1])


def times(ratio: float | None, width: int) -> str:
    return f"{'outside':>{width + 1}}" if ratio is None else f"{ratio:>{width}.3f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_validation_args(parser)
    parser.add_argument("--costs", nargs="+", type=float, default=[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
    parser.add_argument("--origins", type=int, default=200_000, help="training origins of the occupancy classifier")
    parser.add_argument("--epochs", type=int, default=6, help="its training epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    loaded = load_floor_model(args)
    if loaded is None:
        return 2
    model, trace, fit, val = loaded
    counts = trace.counts[val].astype(np.float64)
    demand = demand_instances(counts, 60.0)
    demanded = int(demand[:, args.start:].sum())
    started = time.monotonic()

    print(f"replaying the {len(model.floor.candidates)} candidates on {len(val)} validation functions", file=sys.stderr)
    names, replays, quantile_floor = candidate_replays(model, counts, args.start, args.costs, keep=("q=0.5", "q=0.7"))
    some = replays[args.costs[0]]
    naive = tuple(int(a[names.index("seasonal naive")].sum()) for a in some)
    keep_alive = tuple(int(a[names.index("keep-alive 10")].sum()) for a in some)

    print("training the occupancy classifier on the fit functions", file=sys.stderr)
    net = train_occupancy(trace.counts[fit].astype(np.float32), args.origins, args.epochs, args.seed)
    chances = {"occupancy": occupancy_probabilities(net, counts.astype(np.float32), args.start),
               "hazard": hazard_probabilities(counts, args.start)}
    busy_ahead = (counts[:, args.start:] > 0) | (np.roll(counts, -LEAD, axis=1)[:, args.start:] > 0)
    busy_ahead[:, -LEAD:] = counts[:, -LEAD:] > 0  # the last minute has no minute after it
    for family, p in chances.items():
        bins = [(0.0, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.5), (0.5, 0.9), (0.9, 1.01)]
        print(f"{family} calibration: " + ", ".join(
            f"p in [{lo:g}, {hi:g}): {busy_ahead[(p >= lo) & (p < hi)].mean():.3f}" for lo, hi in bins
            if ((p >= lo) & (p < hi)).any()), file=sys.stderr, flush=True)
    extras = {family: {} for family in chances}
    for family, p in chances.items():
        for c in args.costs:
            one = (p >= 1.0 / (1.0 + c)).astype(np.int64)
            floors = np.stack([one, np.maximum(one, quantile_floor["q=0.5"]), np.maximum(one, quantile_floor["q=0.7"])])
            extras[family][c] = replay_floors(demand, floors, keep_alive=2, lead_minutes=1, start=args.start)
            cold, idle = extras[family][c]
            print(f"{family} C={c:g}: alone {100 * cold[0].sum() / demanded:.2f}% / {int(idle[0].sum()):,}, "
                  f"+q=0.5 {100 * cold[1].sum() / demanded:.2f}% / {int(idle[1].sum()):,}, "
                  f"+q=0.7 {100 * cold[2].sum() / demanded:.2f}% / {int(idle[2].sum()):,}", file=sys.stderr, flush=True)

    # Per reselect block, once: every curve below reads these.
    base_blocks = {c: tuple(block_sums(a) for a in replays[c]) for c in args.costs}
    extra_blocks = {family: {c: tuple(block_sums(a) for a in extras[family][c]) for c in args.costs} for family in extras}

    def curves(family: str | None, decay: float = 1.0) -> dict:
        rolling, hindsight = [], []
        for c in args.costs:
            cold_b, idle_b = base_blocks[c]
            if family is not None:
                more_cold, more_idle = extra_blocks[family][c]
                cold_b, idle_b = np.concatenate([cold_b, more_cold]), np.concatenate([idle_b, more_idle])
            default = names.index(model.floor.defaults_for(c)[ALL_CLUSTERS])
            rolling.append(rolling_choice(cold_b, idle_b, c, default, decay))
            hindsight.append(per_block_hindsight(cold_b, idle_b, c))
        return {"rolling": read_off(rolling, demanded, naive, keep_alive),
                "hindsight per block": read_off(hindsight, demanded, naive, keep_alive),
                "rolling points": rolling}

    results = {"the 19 candidates": curves(None), "+ occupancy": curves("occupancy"), "+ hazard": curves("hazard")}
    for decay in (0.9, 0.7, 0.5):
        results[f"recency decay {decay:g}"] = curves(None, decay)
    print(f"{len(val)} validation functions x {counts.shape[1] - args.start} minutes in {time.monotonic() - started:.0f}s")
    print(f"{'':26s}{'rolling':>22s}{'hindsight per block':>26s}   (cold at naive idle, idle at KA10 cold)")
    for label, r in results.items():
        print(f"{label:26s}{times(r['rolling'][0], 10)} {times(r['rolling'][1], 8)}"
              f"{times(r['hindsight per block'][0], 14)} {times(r['hindsight per block'][1], 8)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"functions": int(len(val)), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
