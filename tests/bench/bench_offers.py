"""Offer matching speed. Prints medians; asserts nothing (targets are in the issue).

    .venv/bin/python tests/bench/bench_offers.py [--repeat 15]

- matching a task against the whole AWS + Azure catalog in process (target: under 20 ms),
  for a few typical tasks, with the catalogs already loaded, plus the one-off cost of loading
- `iacrun offers --gpu 80GB` end to end as a new process (target: under 0.4 s); through the
  `iacrun` console script when `offers` is registered there, otherwise through a bare typer
  app holding cli/offers.py (said in the output). Measured twice: as this environment runs
  Python, and with a bytecode cache (as an installed package has), in a temporary prefix.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IACRUN = str(Path(sys.executable).with_name("iacrun"))
BARE_APP = (
    "import sys, typer\n"
    "from iacrun.cli import offers\n"
    "app = typer.Typer()\n"
    "offers.register(app)\n"
    "app.callback()(lambda: None)\n"
    "app(sys.argv[1:])\n"
)
TASKS = {
    "gpu: 80GB": {"gpu": "80GB"},
    "gpu: 24GB.. (spot auto, max $1.5)": {"gpu": "24GB.."},
    "cpu: 4.. memory: 16GB.. (no GPU)": {"cpu": "4..", "memory": "16GB.."},
    "gpu: H100:8": {"gpu": "H100:8"},
}


def median_ms(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def in_process(repeat: int) -> None:
    sys.path.insert(0, str(ROOT))
    from iacrun.orchestrator.models.requirements import Requirements
    from iacrun.orchestrator.models.resources import ResourcesSpec
    from iacrun.orchestrator.offers.catalog import CatalogOfferSource, load_catalog, store
    from iacrun.orchestrator.offers.plan import collect_offers

    def cold() -> None:
        store.clear_cache()
        load_catalog("aws")
        load_catalog("azure")

    print(f"load both catalogs from disk (cold):         {median_ms(cold, repeat):7.2f} ms")
    sources = [CatalogOfferSource("aws"), CatalogOfferSource("azure")]
    rows = sum(len(load_catalog(c).prices) for c in ("aws", "azure"))
    for label, resources in TASKS.items():
        policy = "auto" if "auto" in label else "on-demand"
        max_price = 1.5 if "1.5" in label else None
        req = Requirements(
            resources=ResourcesSpec.model_validate(resources),
            spot_policy=policy,
            max_price=max_price,
        )
        count = len(collect_offers(sources, req).offers)
        ms = median_ms(lambda req=req: collect_offers(sources, req), repeat)
        print(f"match {label:<36} {ms:7.2f} ms  ({count} offers of {rows} price rows)")


def registered() -> bool:
    if not Path(IACRUN).exists():
        return False
    done = subprocess.run([IACRUN, "--help"], capture_output=True, text=True, check=False)
    return " offers " in done.stdout or "offers" in done.stdout.split()


def end_to_end(repeat: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="iacrun-bench-offers-"))
    base = dict(os.environ, IACRUN_HOME=str(work / "home"), HOME=str(work))
    if registered():
        argv, how = [IACRUN, "offers", "--gpu", "80GB"], "iacrun offers --gpu 80GB"
    else:
        argv = [sys.executable, "-c", BARE_APP, "offers", "--gpu", "80GB"]
        how = "python -c <bare typer app with cli/offers.py> offers --gpu 80GB (not registered yet)"
    cached = dict(base, PYTHONPYCACHEPREFIX=str(work / "pycache"))
    cached.pop("PYTHONDONTWRITEBYTECODE", None)
    print(how)
    for label, env in (
        ("as this environment runs python", base),
        ("with a bytecode cache", cached),
    ):
        subprocess.run(argv, env=env, capture_output=True, check=True)  # warm-up
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            done = subprocess.run(argv, env=env, capture_output=True, check=False)
            times.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(done.stderr.decode())
        print(f"  end to end, {label:<32} median {statistics.median(times):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    in_process(args.repeat)
    end_to_end(args.repeat)


if __name__ == "__main__":
    main()
