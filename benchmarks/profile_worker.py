"""Where a Celery worker's time goes: cProfile of a solo-pool worker per workload.

For each workload (FlowOps map of 1000 items, plain group of 1000 no-ops, FlowOps
100-step pipeline, plain chain of 100 no-ops) a ``celery worker --pool solo`` runs under
cProfile, does that one workload, and is stopped; its self time is then grouped by layer
as in profile_embedded.py. Same database, broker and settings as bench_distributed.py.

    .venv/bin/python benchmarks/profile_worker.py [--workloads map group pipeline chain]
"""

from __future__ import annotations

import argparse
import pstats
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_distributed as bd  # noqa: E402  (sets the benchmark environment)
from _common import ROOT, save_result, work_dir  # noqa: E402
from profile_embedded import layer_of  # noqa: E402


class ProfiledWorker(bd.Worker):
    def __init__(self, name: str, prof: Path):
        super().__init__(name, concurrency=1)
        self.prof = prof

    def command(self) -> list[str]:
        return [str(ROOT / ".venv" / "bin" / "python"), "-m", "cProfile", "-o", str(self.prof),
                str(ROOT / ".venv" / "bin" / "celery"), "-A", "workers", "worker",
                "--pool", "solo", *self.options()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", nargs="+",
                        default=["map", "group", "pipeline", "chain"])
    args = parser.parse_args()
    bd.ensure_database()
    from _common import django_setup

    django_setup()
    mscript = bd.map_script()
    cscript = bd.write_chain_script(bd.CHAIN_STEPS, kind="sync")
    items = list(range(bd.MAP_ITEMS))
    workloads = {
        "map": (lambda: bd.run_flowops(mscript, items, [i + 1 for i in items]), bd.MAP_ITEMS),
        "group": (lambda: bd.run_group(bd.MAP_ITEMS), bd.MAP_ITEMS),
        "pipeline": (lambda: bd.run_flowops(cscript, 0, bd.CHAIN_STEPS), bd.CHAIN_STEPS),
        "chain": (lambda: bd.run_chain(bd.CHAIN_STEPS), bd.CHAIN_STEPS),
    }
    out = {}
    for name in args.workloads:
        fn, units = workloads[name]
        prof = work_dir("profiles") / f"worker_{name}.prof"
        worker = ProfiledWorker(f"prof-{name}", prof).start()
        try:
            result = fn()
        finally:
            worker.stop()
        stats = pstats.Stats(str(prof))
        layers: dict[str, float] = defaultdict(float)
        for (filename, _line, funcname), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():
            layers[layer_of(filename, funcname)] += tt
        # Idle waiting for the broker is not work: leave the poll/epoll wait out.
        idle = sum(tt for (f, _l, fn_), (_cc, _nc, tt, _ct, _c) in stats.stats.items()
                   if "poll" in fn_ and f == "~")
        busy = sum(layers.values()) - idle
        print(f"\n{name}: {result['seconds']:.3f} s wall with one solo worker under cProfile; "
              f"worker busy {busy:.2f} s = {busy / units * 1000:.2f} ms per item/step")
        for layer, tt in sorted(layers.items(), key=lambda kv: -kv[1]):
            print(f"  {tt / units * 1000:7.3f} ms/unit  {layer}")
        print(f"  (of which waiting in poll: {idle / units * 1000:.3f} ms/unit)")
        out[name] = {"wall_seconds": result["seconds"], "busy_ms_per_unit": busy / units * 1000,
                     "layers_ms_per_unit": {k: v / units * 1000 for k, v in layers.items()},
                     "poll_ms_per_unit": idle / units * 1000, "profile": str(prof)}
    save_result("profile_worker", out)


if __name__ == "__main__":
    main()
