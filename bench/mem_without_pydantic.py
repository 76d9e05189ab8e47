"""What the running agent would weigh without pydantic in its process: a measurement, not a design.

pydantic (fixed by the user) validates the config and gives every config error its file, line
and field; it is also the largest single layer of the agent's memory (``bench.mem_floor``). A
design that validates in a child process and runs on plain objects would not carry it. Before
anyone builds that, this measures what it would save, on the same site, meters and broker:

1. ``as shipped``: ``edge-agent run``.
2. ``without pydantic``: the config validated in a child with the real pydantic
   (``--dump``), every model handed over as plain data (its class by name, each field's value),
   and the agent run (``--run``) where ``pydantic`` is a stand-in that only lets the config
   modules import: their classes keep their methods, nothing is validated. It is written to a
   temporary directory for the run and never installed; the run checks that the real pydantic
   was not loaded and that readings were stored.

Both as the unit runs the agent (its Environment= lines), for ``--seconds`` seconds; printed:
peak RSS and the readings stored.

    .venv/bin/python -m bench.mem_without_pydantic --meters 50
"""

from __future__ import annotations

# Only the standard library at the top: the --run child's memory is the figure measured.
import argparse
import asyncio
import importlib
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_MODEL = "__model__"

# The stand-in: enough of pydantic's names for the agent's modules to import (classes and
# functions that do nothing); a module-level model (a constant) keeps the arguments it is given.
STAND_IN = '''"""A stand-in for pydantic (bench.mem_without_pydantic only): nothing is validated."""
class _Anything:
    def __init__(self, *args, **kwargs): pass
    def __call__(self, *args, **kwargs): return _Anything()
    def __getitem__(self, key): return self
    def __getattr__(self, name): return _Anything()
class BaseModel:
    model_config = {}
    def __init_subclass__(cls, **kwargs): pass
    def __init__(self, **kwargs): self.__dict__.update(kwargs)
    @classmethod
    def model_validate(cls, data): return cls(**data)
def ConfigDict(**kwargs): return kwargs
def Field(default=None, *args, **kwargs): return None if default is ... else default
def field_validator(*args, **kwargs): return lambda function: function
def model_validator(*args, **kwargs): return lambda function: function
class ValidationError(Exception): pass
BeforeValidator = WithJsonSchema = Discriminator = Tag = TypeAdapter = PrivateAttr = _Anything
def __getattr__(name): return _Anything
'''


def _plain(value: Any) -> Any:
    """A validated config as plain data: a model is its class's name and its fields' values."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        fields = {name: _plain(getattr(value, name)) for name in type(value).model_fields}
        cls = type(value)
        return (_MODEL, cls.__module__, cls.__qualname__, fields, sorted(value.model_fields_set))
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(item) for item in value)
    return value


def _rebuilt(value: Any) -> Any:
    """The plain data of ``_plain`` as instances of the (stand-in based) config classes."""
    if isinstance(value, tuple) and value and value[0] == _MODEL:
        _, module, qualname, fields, fields_set = value
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        model = object.__new__(cls)
        model.__dict__.update({name: _rebuilt(item) for name, item in fields.items()})
        model.__dict__["model_fields_set"] = set(fields_set)
        return model
    if isinstance(value, dict):
        return {key: _rebuilt(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_rebuilt(item) for item in value)
    return value


def _dump(config_path: Path) -> None:
    from agent.config.loader import load_config

    sys.stdout.buffer.write(pickle.dumps(_plain(load_config(config_path, check_files=False))))


def _run(config_path: Path, data_dir: Path, seconds: float) -> None:
    blob = subprocess.run(
        [sys.executable, "-m", "bench.mem_without_pydantic", "--dump", str(config_path)],
        capture_output=True, check=True, timeout=60, cwd=tempfile.gettempdir(),
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # the real pydantic
    ).stdout  # fmt: skip
    config = _rebuilt(pickle.loads(blob))
    del blob
    from agent.daemon import run_service

    async def main() -> None:
        stop, reload = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)  # as `edge-agent run` stops
        loop.call_later(seconds, stop.set)
        await run_service(config, config_path=config_path, data_dir=data_dir, stop=stop,
                          reload=reload)  # fmt: skip

    asyncio.run(main())
    if "pydantic_core" in sys.modules:
        raise SystemExit("the real pydantic was loaded: the measurement is void")


def _measure(
    cmd: list[str], env: dict[str, str], data_dir: Path, seconds: float
) -> tuple[float, float, int]:
    """(peak RSS MB, heap MB at the end, readings stored) of ``cmd`` run for about ``seconds``."""
    from bench.bench_agent import status_mb

    proc = subprocess.Popen(cmd, env=env, cwd=tempfile.gettempdir(), stderr=subprocess.DEVNULL)
    try:
        time.sleep(seconds)
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:3]} exited early with {proc.returncode}")
        peak, anon = status_mb(proc.pid, "VmHWM"), status_mb(proc.pid, "RssAnon")
        proc.terminate()
        if proc.wait(timeout=30) != 0:
            raise RuntimeError(f"{cmd[:3]} exited with {proc.returncode}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with sqlite3.connect(data_dir / "readings.db") as conn:
        (stored,) = conn.execute("SELECT count(*) FROM readings").fetchone()
    return peak, anon, int(stored)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dump:
        _dump(args.dump)
        return
    if args.run:
        _run(Path(args.run[0]), Path(args.run[1]), float(args.run[2]))
        return

    from bench.bench_agent import Meters, mosquitto
    from bench.make_site import site_yaml
    from hil.unit_env import unit_environment

    meters = Meters(args.meters, 1, 0.0)
    try:
        with tempfile.TemporaryDirectory(prefix="mem-nopyd-") as tmp, mosquitto(Path(tmp)) as port:
            work = Path(tmp)
            config = work / "site.yaml"
            config.write_text(
                site_yaml(args.meters, 1, meters.ports, mqtt_url=f"mqtt://127.0.0.1:{port}",
                          hvac_energy=True),
                encoding="utf-8",
            )  # fmt: skip
            (work / "stand-in" / "pydantic").mkdir(parents=True)
            (work / "stand-in" / "pydantic" / "__init__.py").write_text(STAND_IN, "utf-8")
            env = {**os.environ, **unit_environment(), "PYTHONPATH": str(ROOT)}
            agent = str(Path(sys.executable).with_name("edge-agent"))
            runs = {
                "as shipped": [agent, "--log-level", "warning", "run", "--config", str(config),
                               "--data-dir", str(work / "shipped")],
                "without pydantic": [sys.executable, "-m", "bench.mem_without_pydantic", "--run",
                                     str(config), str(work / "plain"), str(args.seconds + 30)],
            }  # fmt: skip
            print(f"{args.meters} meters with HVAC and energy, {args.seconds:g} s each")
            print(f"{'run':<18} {'peak RSS MB':>11} {'anon MB':>8} {'readings stored':>16}")
            for label, cmd in runs.items():
                run_env = env
                if label == "without pydantic":
                    run_env = {**env, "PYTHONPATH": f"{work / 'stand-in'}{os.pathsep}{ROOT}"}
                data_dir = Path(cmd[-1]) if label == "as shipped" else Path(cmd[-2])
                peak, anon, stored = _measure(cmd, run_env, data_dir, args.seconds)
                print(f"{label:<18} {peak:11.1f} {anon:8.1f} {stored:16,}")
    finally:
        meters.close()
    print(json.dumps({"note": "the stand-in validates nothing: a bound, not a product"}))


if __name__ == "__main__":
    main()
