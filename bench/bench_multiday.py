"""Does multi-day context help? Seasonal naive with a daily lag only vs. with a weekly lag, on a
generated 14-day trace with a weekly cycle, holidays and level shifts.

    python bench/bench_multiday.py [--functions 400] [--seed 0] [--horizon 60] [--every 180]

The trace: 14 days of `mesp_core.data.synthetic` with holidays on d04 and d12 and level shifts in
10% of the functions (d01 a Thursday). Forecast origins
every `--every` minutes over the last 6 days, Friday to Wednesday (from day 8 on, so every context
holds the 8 days the weekly candidate needs); WAPE over all functions and origins, also per kind of day
the forecast falls on. Three seasonal-naive settings:

- "2-day, daily": the packaged model's own (input 2 days, periods up to a day);
- "14-day, daily": the same periods, 14 days of context (does more of the same help?);
- "14-day, +weekly": the default candidates now (periods up to a week), 14 days of context.

Fixed lags (1440, 10080) are shown beside them, plain and scaled by the last hour's level over
that hour one lag earlier.

Measured 2026-12-07 on the shared 2-CPU VM (load 15-25), defaults (400 functions, seed 0), 339 s:

    origins                            n  2-day, daily  14-day, daily  14-day, +weekly  lag 1440  lag 1440 x level  lag 10080  lag 10080 x level
    all origins                       48         0.243          0.249            0.247     0.347             0.276      0.323              0.269
    Tue-Fri, no holiday near           8         0.235          0.246            0.244     0.267             0.262      0.270              0.257
    Mon and Sat (day after a change)  16         0.246          0.254            0.254     0.383             0.278      0.335              0.271
    Sun                                8         0.244          0.247            0.246     0.263             0.253      0.277              0.252
    holiday or day after              16         0.244          0.245            0.243     0.393             0.292      0.362              0.281
    a week after a holiday             8         0.255          0.270            0.266     0.368             0.308      0.398              0.295
    diurnal/mixture functions only    48         0.277          0.280            0.281     0.477             0.315      0.379              0.305

Last week at the same time is the better lag: 0.323 vs 0.347 plain, 0.269 vs 0.276 level-scaled,
0.379 vs 0.477 on diurnal functions, most on the days after a weekday/weekend change (0.335 vs
0.383), least a week after a holiday (where it repeats the holiday: 0.398 vs 0.368). But the
seasonal-naive rule gains nothing from the longer context (0.247 vs 0.243): at h = 60 it mostly
picks the flat last-hour mean, which beats every fixed lag here. Multi-day context has to reach the
forecast as an input (yesterday and last week at the same time, level-scaled) of experts that also
see the last hour, not through the naive's choice of period.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.synthetic import generate_with_events
from mesp_core.forecasting.experts.naive import DEFAULT_PERIOD_CANDIDATES, SeasonalNaive

WEEK = 7 * MINUTES_PER_DAY
DAILY = [p for p in DEFAULT_PERIOD_CANDIDATES if p <= MINUTES_PER_DAY]


def wape(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.abs(actual - forecast).sum() / actual.sum())


def forecasts(counts: np.ndarray, origins, horizon: int) -> dict[str, np.ndarray]:
    """Each setting's forecasts [origins, n, horizon]."""
    settings = {
        "2-day, daily": SeasonalNaive(horizon=horizon, input_size=2 * MINUTES_PER_DAY, candidates=DAILY),
        "14-day, daily": SeasonalNaive(horizon=horizon, input_size=14 * MINUTES_PER_DAY, candidates=DAILY),
        "14-day, +weekly": SeasonalNaive(horizon=horizon, input_size=14 * MINUTES_PER_DAY,
                                         candidates=list(DEFAULT_PERIOD_CANDIDATES)),
    }
    out = {name: [] for name in settings}
    for lag in (MINUTES_PER_DAY, WEEK):
        out[f"lag {lag}"], out[f"lag {lag} x level"] = [], []
    steps = np.arange(horizon)
    for t in origins:
        context = counts[:, :t]
        for name, expert in settings.items():
            out[name].append(expert.predict(context[:, -expert.input_size:]))
        for lag in (MINUTES_PER_DAY, WEEK):
            # Seasonal naive at a fixed lag: minute t+h repeats t+h-lag (h < lag).
            repeat = counts[:, t + steps - lag]
            out[f"lag {lag}"].append(repeat)
            # The same, scaled by how the last hour compares with that hour one lag earlier (a
            # level shift or a holiday then carries over).
            # Clipped to [1/4, 4]: a spike in either hour must not scale a whole hour by 100.
            level = (counts[:, t - 60: t].sum(axis=1) + 1.0) / (counts[:, t - 60 - lag: t - lag].sum(axis=1) + 1.0)
            level = np.clip(level, 0.25, 4.0)
            out[f"lag {lag} x level"].append(repeat * level[:, None])
    return {name: np.stack(v) for name, v in out.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--functions", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--horizon", type=int, default=60)
    p.add_argument("--every", type=int, default=180, help="minutes between forecast origins (default 180)")
    p.add_argument("--holidays", type=int, nargs="+", default=[4, 12], metavar="DAY",
                   help="holiday day indices, 0 = d01 a Thursday (default 4 12: d05 Mon, so a week later the weekly lag "
                        "repeats a holiday, and d13 Tue, in the evaluated days)")
    p.add_argument("--level-shifts", type=float, default=0.1)
    args = p.parse_args(argv)

    began = time.perf_counter()
    trace, archetypes, events = generate_with_events(args.functions, days=14, seed=args.seed, start_weekday=3,
                                                     holidays=args.holidays, level_shifts=args.level_shifts)
    counts = trace.counts.astype(np.float64)
    first = WEEK + MINUTES_PER_DAY  # the weekly candidate needs 8 days of context
    origins = list(range(first, counts.shape[1] - args.horizon + 1, args.every))
    result = forecasts(counts, origins, args.horizon)
    actual = np.stack([counts[:, t: t + args.horizon] for t in origins])

    weekday = np.array([(3 + t // MINUTES_PER_DAY) % 7 for t in origins])  # 0 = Monday
    day = np.array([t // MINUTES_PER_DAY for t in origins])
    kinds = {
        "all origins": np.ones(len(origins), dtype=bool),
        "Tue-Fri, no holiday near": np.isin(weekday, (1, 2, 3, 4)) & ~np.isin(day, events.holidays)
        & ~np.isin(day - 1, events.holidays) & ~np.isin(day - 7, events.holidays),
        "Mon and Sat (day after a change)": np.isin(weekday, (0, 5)) & ~np.isin(day, events.holidays),
        "Sun": weekday == 6,
        "holiday or day after": np.isin(day, events.holidays) | np.isin(day - 1, events.holidays),
        "a week after a holiday": np.isin(day - 7, events.holidays),
    }
    print(f"{args.functions} functions x 14 days (seed {args.seed}); holidays "
          f"{[trace.days[d] for d in events.holidays]}, level shifts in {len(events.level_shifts)} functions; "
          f"{len(origins)} origins every {args.every} min from day {first / MINUTES_PER_DAY:g}, horizon {args.horizon}")
    names = list(result)
    print(f"{'origins':34} {'n':>3}  " + "  ".join(f"{n:>17}" for n in names))
    for kind, mask in kinds.items():
        if not mask.any():
            continue
        cells = "  ".join(f"{wape(actual[mask], result[n][mask]):17.3f}" for n in names)
        print(f"{kind:34} {int(mask.sum()):>3}  {cells}")
    diurnal = np.array([a in ("diurnal", "mixture") for a in archetypes])
    cells = "  ".join(f"{wape(actual[:, diurnal], result[n][:, diurnal]):17.3f}" for n in names)
    print(f"{'diurnal/mixture functions only':34} {len(origins):>3}  {cells}")
    print(f"WAPE = sum |error| / sum actual over functions, origins and the {args.horizon} minutes; "
          f"{time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
