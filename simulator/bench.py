"""Prints what it costs to build the simulator's ticks: ``python -m simulator.bench --beds 1000``."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from simulator.errors import DATA_DIR_SETTING
from simulator.replay import Simulator, SimulatorConfig
from simulator.sources import SOURCE_KINDS


def bench(config: SimulatorConfig, ticks: int) -> dict[str, float]:
    """Seconds to set up and warm the sources, and per-tick build times (encode included, no sending)."""
    t0 = time.perf_counter()
    sim = Simulator(config, lambda bed, payload: None)
    t1 = time.perf_counter()
    sim.prepare()
    t2 = time.perf_counter()
    took = []
    for seq in range(min(ticks, sim.n_ticks)):
        b = time.perf_counter()
        sim.build_tick(seq)
        took.append(time.perf_counter() - b)
    took.sort()
    return {
        "setup_s": t1 - t0,
        "warm_s": t2 - t1,
        "tick_median_s": statistics.median(took),
        "tick_p99_s": took[min(len(took) - 1, int(0.99 * len(took)))],
        "tick_max_s": took[-1],
        "ticks": float(len(took)),
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--beds", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=120)
    parser.add_argument("--chunk-s", type=float, default=1.0)
    parser.add_argument("--source", choices=SOURCE_KINDS, action="append")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get(DATA_DIR_SETTING, "../shared/data"))
    args = parser.parse_args(argv)
    for source in args.source or list(SOURCE_KINDS):
        config = SimulatorConfig(
            n_beds=args.beds,
            duration_s=args.ticks * args.chunk_s,
            source=source,
            chunk_s=args.chunk_s,
            data_dir=args.data_dir,
            start_time_s=1_700_000_000.0,
        )
        r = bench(config, args.ticks)
        print(
            f"{source:9s} beds={args.beds} chunk={args.chunk_s:g}s setup={r['setup_s']:.2f}s warm={r['warm_s']:.2f}s "
            f"tick median={1e3 * r['tick_median_s']:.1f}ms p99={1e3 * r['tick_p99_s']:.1f}ms "
            f"max={1e3 * r['tick_max_s']:.1f}ms over {r['ticks']:.0f} ticks "
            f"({1e6 * r['tick_median_s'] / args.beds:.1f} us/bed)"
        )


if __name__ == "__main__":
    main()
