"""Benchmark of the read planner: requests and bus time per cycle, against one read per point.

For every shipped profile and a synthetic 30-point device, plans a full read on Modbus TCP
(5 ms round trip) and on RS-485 at 9600 baud, and prints points, requests (naive and planned),
the cost per cycle in milliseconds (naive and planned) and the time the planner itself took.
Run by hand (not part of the test suite):

    /tmp/venv/bin/python bench/bench_planner.py
"""

from __future__ import annotations

import random
import time

from drivers.modbus.planner import CostModel, naive_plan, plan_reads
from drivers.modbus.profiles import load_profile, profile_names
from drivers.modbus.spec import ModbusPoint

Member = tuple[str, ModbusPoint]

MODELS = {"tcp": CostModel.for_tcp(), "rtu9600": CostModel.for_rtu(9600)}


def profile_points(name: str) -> list[Member]:
    raw = load_profile(name)["points"]
    return [(n, ModbusPoint.model_validate(p)) for n, p in raw.items()]


def synthetic_points(count: int = 30, seed: int = 7) -> list[Member]:
    """A made-up device: clusters of holding registers with holes, plus some coils."""
    rng = random.Random(seed)
    points: list[Member] = []
    address = 0
    for index in range(count):
        if index % 6 == 5:
            points.append(
                (
                    f"coil_{index}",
                    ModbusPoint.model_validate(
                        {"register": rng.randrange(0, 64), "table": "coil", "type": "bit"}
                    ),
                )
            )
            continue
        kind = rng.choice(["uint16", "int32", "float32"])
        address += rng.choice([0, 0, 0, 2, 4, 10, 40])  # mostly packed, sometimes a hole
        points.append(
            (f"reg_{index}", ModbusPoint.model_validate({"register": address, "type": kind}))
        )
        address += 2 if kind != "uint16" else 1
    return points


def planning_time(points: list[Member], model: CostModel, repeat: int = 200) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        plan_reads(points, cost=model)
    return (time.perf_counter() - start) / repeat


def main() -> None:
    devices = {name: profile_points(name) for name in profile_names()}
    devices["synthetic-30"] = synthetic_points()
    header = (
        f"{'device':<16} {'bus':<8} {'points':>6} {'naive':>6} {'planned':>7} "
        f"{'naive ms':>9} {'planned ms':>10} {'saved':>6} {'plan us':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, points in devices.items():
        for label, model in MODELS.items():
            naive = naive_plan(points, cost=model)
            plan = plan_reads(points, cost=model)
            saved = 1 - plan.cost / naive.cost
            print(
                f"{name:<16} {label:<8} {len(points):>6} {len(naive.requests):>6} "
                f"{len(plan.requests):>7} {naive.cost * 1e3:>9.1f} {plan.cost * 1e3:>10.1f} "
                f"{saved:>6.0%} {planning_time(points, model) * 1e6:>8.0f}"
            )
    big = synthetic_points(1000, seed=11)
    took = planning_time(big, MODELS["rtu9600"], repeat=5)
    print(f"\nplanning a synthetic 1000-point device takes {took * 1e3:.1f} ms")
    print("\nthe SDM630 plan on RS-485 at 9600 baud, as `--explain` shows it:\n")
    print(plan_reads(devices["eastron-sdm630"], cost=MODELS["rtu9600"]).explain())


if __name__ == "__main__":
    main()
