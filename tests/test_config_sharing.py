"""A loaded config keeps each distinct point config once, and means exactly what it says."""

from __future__ import annotations

import yaml

from agent.config.loader import load_config_text
from agent.config.model import SiteConfig
from bench.make_site import site_yaml

HEAD = """
site: {id: s, name: S}
buses: {line: {kind: modbus_tcp, host: 127.0.0.1, port: 5020}}
devices:
"""


def _device(name: str, unit: int, points: str) -> str:
    return f"  - name: {name}\n    bus: line\n    unit_id: {unit}\n    points: {points}\n"


def test_equal_points_of_many_devices_are_one_object() -> None:
    config = load_config_text(site_yaml(20, 2, [15020, 15021]), filename="site.yaml")
    points = [p for d in config.devices for p in d.points.values()]
    assert len(points) == 20 * 35
    assert len({id(p) for p in points}) == 35  # one per distinct point
    # Nothing else changed: the same config as validated without sharing.
    unshared = SiteConfig.model_validate(yaml.safe_load(site_yaml(20, 2, [15020, 15021])))
    assert config == unshared


def test_points_that_differ_in_any_way_stay_apart() -> None:
    text = HEAD + "".join(
        [
            _device("a", 1, "{x: {register: 0, type: float32, offset: 0.0}}"),
            _device("b", 2, "{x: {register: 0, type: float32, offset: 0.0}}"),  # = a
            _device("c", 3, "{x: {register: 0, type: float32, offset: -0.0}}"),  # sign of zero
            _device("d", 4, "{x: {register: 0, type: float32}}"),  # offset not written
            _device("e", 5, "{x: {register: 2, type: float32, offset: 0.0}}"),  # register
        ]
    )
    config = load_config_text(text, filename="site.yaml")
    x = {d.name: d.points["x"] for d in config.devices}
    assert x["a"] is x["b"]
    assert len({id(x[n]) for n in "acde"}) == 4
    assert str(x["c"].offset) == "-0.0"
