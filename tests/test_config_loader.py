"""The config loader: a valid file loads; a broken one gives located sentences, not tracebacks."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from agent.config.loader import load_config, load_config_text
from agent.config.model import SiteConfig
from agent.core.errors import ConfigError
from agent.core.links import SerialLinkConfig, TcpLinkConfig
from drivers.modbus import spec
from drivers.modbus.spec import Table
from tests.helpers import DEMO_YAML

CONFIGS = Path(__file__).parent / "configs"
VALID = CONFIGS / "valid.yaml"

# A small config whose line numbers the tests below rely on (see the numbers on the right).
SMALL = """\
site:
  id: jingzhou-gov
  name: 荆州市政府办公楼
buses:
  plant-room:
    kind: modbus_tcp
    host: 192.168.10.20
    port: 502
  rs485-1:
    kind: modbus_rtu
    port: /dev/ttyUSB0
devices:
  - name: main-meter
    bus: plant-room
    profile: eastron-sdm630
  - name: chiller-1
    bus: rs485-1
    unit_id: 3
    points:
      active_power: {register: 52, table: input, type: float32}
"""
#  1 site:                     11     port: /dev/ttyUSB0
#  2   id:                     12 devices:
#  3   name:                   13   - name: main-meter
#  4 buses:                    14     bus: plant-room
#  5   plant-room:             15     profile: eastron-sdm630
#  6     kind: modbus_tcp      16   - name: chiller-1
#  7     host: ...             17     bus: rs485-1
#  8     port: 502             18     unit_id: 3
#  9   rs485-1:                19     points:
# 10     kind: modbus_rtu      20       active_power: {register: 52, ...}


def issues(text: str | bytes, filename: str = "site.yaml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, filename=filename)
    assert str(caught.value) == "\n".join(str(i) for i in caught.value.issues)
    return [str(issue) for issue in caught.value.issues]


def edit(old: str, new: str, text: str = SMALL) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# --- valid configs -------------------------------------------------------------------------------


def test_the_full_example_loads() -> None:
    config = load_config(VALID)
    assert isinstance(config, SiteConfig)
    assert config.site.name == "荆州市政府办公楼"
    assert config.store.batch_window == 2.0
    tcp, rtu = config.buses["plant-room"], config.buses["rs485-1"]
    assert isinstance(tcp, TcpLinkConfig)
    assert tcp.host == "192.168.10.20"
    assert isinstance(rtu, SerialLinkConfig)
    assert rtu.parity == "E"
    main, chiller, pv = config.devices
    assert main.interval == 15.0
    assert main.points["active_power"].address == 0x0034  # from the profile
    assert main.points["active_power"].table is Table.INPUT
    assert chiller.points["active_power"].address == 52  # `0x0034` is a number in YAML 1.2
    assert chiller.points["import_energy"].interval == 60.0
    assert chiller.points["running"].table is Table.COIL
    assert pv.points["active_power"].address == 0x2012  # the site's own point...
    assert "voltage_l1" in pv.points  # ...next to the profile's


def test_the_small_example_loads() -> None:
    config = load_config_text(SMALL, filename="site.yaml")
    assert [d.name for d in config.devices] == ["main-meter", "chiller-1"]


def test_bytes_with_a_bom_and_merge_keys_load() -> None:
    text = SMALL.replace(
        "  plant-room:\n    kind: modbus_tcp\n",
        "  plant-room:\n    <<: {kind: modbus_tcp, port: 503}\n",
    )
    config = load_config_text(b"\xef\xbb\xbf" + text.encode(), filename="site.yaml")
    assert config.buses["plant-room"].kind == "modbus_tcp"
    assert config.buses["plant-room"].port == 502  # the mapping's own key wins


# --- problems in values and keys -----------------------------------------------------------------


def test_unknown_key_says_what_was_meant() -> None:
    text = edit("{register: 52,", "{regster: 52,")
    assert issues(text) == [
        "site.yaml:20:22: devices[1].points.active_power.regster: "
        "unknown key 'regster' (did you mean 'register'?)"
    ]


def test_unknown_key_without_a_close_match_lists_the_keys() -> None:
    text = edit("  name: 荆州市政府办公楼\n", "  name: 荆州市政府办公楼\n  colour: red\n")
    (issue,) = issues(text)
    assert issue.startswith("site.yaml:4:3: site.colour: unknown key 'colour'; the keys here are: ")
    assert "timezone" in issue


def test_duplicate_keys_are_all_reported_with_both_lines() -> None:
    text = edit("    port: 502\n", "    port: 502\n    port: 503\n    port: 504\n")
    assert issues(text) == [
        "site.yaml:9:5: buses.plant-room.port: key 'port' appears twice in this mapping "
        "(first on line 8); a later value would silently replace the earlier one",
        "site.yaml:10:5: buses.plant-room.port: key 'port' appears twice in this mapping "
        "(first on line 8); a later value would silently replace the earlier one",
    ]


def test_wrong_type_points_at_the_value() -> None:
    assert issues(edit("port: 502", "port: abc")) == [
        "site.yaml:8:11: buses.plant-room.port: 'abc' is not a whole number"
    ]


def test_a_number_where_text_belongs_suggests_quotes() -> None:
    (issue,) = issues(edit("id: jingzhou-gov", "id: 0x10"))
    assert issue.startswith("site.yaml:2:7: site.id: must be text, not the number 16")
    assert "'0x10'" in issue


def test_register_out_of_range() -> None:
    assert issues(edit("register: 52", "register: 70000")) == [
        "site.yaml:20:32: devices[1].points.active_power.register: must be at most 65535, not 70000"
    ]


def test_missing_required_key_points_at_its_mapping() -> None:
    assert issues(edit("    host: 192.168.10.20\n", "")) == [
        "site.yaml:6:5: buses.plant-room: the required key 'host' is missing"
    ]


def test_unknown_bus_kind() -> None:
    assert issues(edit("kind: modbus_tcp", "kind: modbus_tpc")) == [
        "site.yaml:6:11: buses.plant-room.kind: 'modbus_tpc' is not a bus kind "
        "(did you mean 'modbus_tcp'?); "
        "the bus kinds are: modbus_tcp, tcp, modbus_rtu, serial, ble, gpio"
    ]


def test_missing_bus_kind() -> None:
    assert issues(edit("    kind: modbus_rtu\n", "")) == [
        "site.yaml:10:5: buses.rs485-1: the required key 'kind' is missing; "
        "the bus kinds are: modbus_tcp, tcp, modbus_rtu, serial, ble, gpio"
    ]


def test_enum_value_lists_the_choices() -> None:
    (issue,) = issues(edit("table: input", "table: fc3"))
    assert issue == (
        "site.yaml:20:43: devices[1].points.active_power.table: "
        "'fc3' is not one of: coil, discrete, holding, input"
    )


def test_device_on_an_unknown_bus() -> None:
    assert issues(edit("bus: rs485-1", "bus: rs485-2")) == [
        "site.yaml:17:10: devices[1].bus: no bus is named 'rs485-2' "
        "(did you mean 'rs485-1'?); the buses are: plant-room, rs485-1"
    ]


def test_duplicate_device_names() -> None:
    assert issues(edit("name: chiller-1", "name: main-meter")) == [
        "site.yaml:16:11: devices[1].name: device name 'main-meter' is already used by devices[0]"
    ]


def test_own_validator_message_without_pydantic_prefix() -> None:
    (issue,) = issues(edit("  name: 荆州市政府办公楼\n", "  name: x\n  timezone: Asia/Shangai\n"))
    assert issue == (
        "site.yaml:4:13: site.timezone: "
        "'Asia/Shangai' is not a known time zone (did you mean 'Asia/Shanghai'?)"
    )


def test_a_problem_in_a_profile_point_points_at_the_profile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No shipped profile is broken, so stand one in: the point it brings is not in the file.
    monkeypatch.setattr(spec, "load_profile", lambda name: {"points": {"bad": {"register": -1}}})
    assert issues(SMALL) == [
        "site.yaml:15:14: devices[0].points.bad.register: must be at least 0, not -1"
    ]


def test_several_problems_are_all_reported_in_file_order() -> None:
    text = SMALL
    text = edit("register: 52", "register: 70000", text)
    text = edit("id: jingzhou-gov", "id: Jingzhou Gov", text)
    text = edit("bus: rs485-1", "bus: rs485", text)
    text = edit("    port: 502\n", "    port: 502\n    port: 503\n", text)
    text = edit("kind: modbus_rtu", "kind: modbus_rt", text)
    found = issues(text)
    assert [line.split(": ")[0] for line in found] == [
        "site.yaml:2:7",
        "site.yaml:9:5",
        "site.yaml:11:11",
        "site.yaml:18:10",
        "site.yaml:21:32",
    ]
    assert "may use only lowercase letters" in found[0]
    assert "appears twice" in found[1]
    assert "'modbus_rt' is not a bus kind" in found[2]
    # The unknown bus is a cross-check on the raw data: reported in the same run.
    assert "no bus is named 'rs485' (did you mean 'rs485-1'?)" in found[3]
    assert "must be at most 65535" in found[4]


# --- problems with the file as a whole -----------------------------------------------------------


def test_empty_file() -> None:
    assert issues("") == ["site.yaml: the file is empty; a config needs at least a `site:` section"]


def test_only_comments() -> None:
    (issue,) = issues("# site: to be done\n\n")
    assert issue.startswith("site.yaml: the file holds no settings (only comments)")


def test_a_list_instead_of_a_mapping() -> None:
    (issue,) = issues("- site:\n    id: x\n")
    assert issue.startswith("site.yaml:1:1: the file must be a mapping of sections")
    assert "not a list" in issue


def test_a_single_value_instead_of_a_mapping() -> None:
    (issue,) = issues("hello\n")
    assert issue.endswith("but it holds the text 'hello'")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: there is no such file " + (
        f"(looked for {tmp_path / 'nope.yaml'})"
    )


def test_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="this is a directory, not a config file"):
        load_config(tmp_path)


def test_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SMALL, encoding="utf-8")
    denied = PermissionError(13, "Permission denied")
    with (
        mock.patch.object(Path, "open", autospec=True, side_effect=denied),
        pytest.raises(ConfigError, match="permission denied"),
    ):
        load_config(path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_for_real(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SMALL, encoding="utf-8")
    path.chmod(0)
    with pytest.raises(ConfigError, match="permission denied"):
        load_config(path)


def test_binary_garbage() -> None:
    assert issues(bytes(range(256))) == [
        "site.yaml:1:1: the file is binary, not YAML text: it holds a NUL byte at offset 0"
    ]


def test_text_that_is_not_utf8_says_where() -> None:
    text = "site:\n  id: x\n  name: 荆州\n".encode("gbk")
    (issue,) = issues(text)
    assert issue.startswith("site.yaml:3:9: the file is not UTF-8 text: byte 0xBE at offset 22")
    assert "GBK" in issue


def test_tab_indentation() -> None:
    assert issues("site:\n\tid: x\n") == [
        "site.yaml:2:1: a tab character cannot indent YAML; use spaces"
    ]


def test_unclosed_bracket() -> None:
    assert issues("site: {id: x, name: [1, 2\ngateway:\n  id: g\n") == [
        "site.yaml:2:8: the '[' opened on line 1 is not closed: a ',' or ']' was expected here"
    ]


def test_missing_space_after_a_colon() -> None:
    assert issues("site:\n  id:x\n  name: y\n") == [
        "site.yaml:2:1: a space is missing after the ':' of this `key: value`"
    ]


def test_several_documents() -> None:
    assert issues(SMALL + "---\nsite: {id: b, name: b}\n") == [
        "site.yaml:21:1: a second YAML document starts here; a config is one document: "
        "remove the '---' on line 21 or split the file"
    ]


def test_aliases_that_expand_without_end_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (issue,) = issues("\n".join(lines) + "\n")
    assert "expand to more than" in issue


def test_tags_and_huge_numbers_are_located() -> None:
    text = edit("port: 502", "port: !!int abc", edit("unit_id: 3", "unit_id: " + "9" * 40))
    assert issues(text) == [
        "site.yaml:8:11: buses.plant-room.port: 'abc' cannot be read as a whole number",
        f"site.yaml:18:14: devices[1].unit_id: the number {'9' * 40} is too large for any setting",
    ]


# --- no input is a traceback ---------------------------------------------------------------------


def _valid_data() -> dict[str, Any]:
    data = YAML(typ="safe", pure=True).load(VALID.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


_DATA = _valid_data()
_VALID_TEXT = VALID.read_text(encoding="utf-8")


def _containers(node: Any, found: list[Any]) -> list[Any]:
    if isinstance(node, dict | list):
        found.append(node)
        for child in node.values() if isinstance(node, dict) else node:
            _containers(child, found)
    return found


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["modbus_tcp", "holding", "0x10", "5s", "yes", "", "~", "eastron-sdm630"]),
)


def _check(text: str) -> None:
    """Loading succeeds or raises ConfigError with sentences; anything else fails the test."""
    found = []
    try:
        load_config_text(text, filename="fuzz.yaml")
    except ConfigError as exc:
        found = exc.issues
        assert found
    assert all(issue.message and issue.file == "fuzz.yaml" for issue in found)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_configs_give_config_errors_only(data: st.DataObject) -> None:
    tree = copy.deepcopy(_DATA)
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from(_containers(tree, [])))
        if not target:
            continue
        index = data.draw(st.integers(0, len(target) - 1))
        action = data.draw(st.sampled_from(["delete", "rename", "replace"]))
        if isinstance(target, list):
            if action == "delete":
                del target[index]
            else:
                target[index] = data.draw(_scalars)
            continue
        key = list(target)[index]
        if action == "delete":
            del target[key]
        elif action == "rename":
            target[data.draw(st.text(min_size=1, max_size=12))] = target.pop(key)
        else:
            target[key] = data.draw(_scalars)
    stream = _Stream()
    YAML(typ="safe", pure=True).dump(tree, stream)
    _check(stream.text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mangled_text_gives_config_errors_only(data: st.DataObject) -> None:
    text = _VALID_TEXT
    for _ in range(data.draw(st.integers(1, 3))):
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, min(len(text), start + 8)))
        insert = data.draw(st.text(alphabet=" \t\n:-[]{},#&*!|>'\"%@`?x0\x00é", max_size=4))
        text = text[:start] + insert + text[end:]
    _check(text)


class _Stream:
    def __init__(self) -> None:
        self.text = ""

    def write(self, chunk: str | bytes) -> None:
        self.text += chunk.decode("utf-8") if isinstance(chunk, bytes) else chunk


def test_a_value_shared_through_an_alias_is_one_problem() -> None:
    text = edit(
        "    port: 502\n",
        "    timeout: &t abc\n",
        edit("    port: /dev/ttyUSB0\n", "    port: /dev/ttyUSB0\n    timeout: *t\n"),
    )
    assert issues(text) == [
        "site.yaml:8:14: buses.plant-room.timeout: 'abc' is not a duration; "
        "write e.g. 5s, 1m, 250ms or 1h30m"
    ]


def test_a_merged_key_is_replaced_by_the_mappings_own_and_located_there() -> None:
    text = edit(
        "    kind: modbus_tcp\n",
        "    <<: {kind: modbus_tcp, port: 503}\n",
        edit("    port: 502\n", "    port: 70000\n"),
    )
    assert issues(text) == [
        "site.yaml:8:11: buses.plant-room.port: must be at most 65535, not 70000"
    ]


def test_a_device_on_a_bus_of_the_wrong_kind_is_located() -> None:
    # A DL/T 645 meter needs a serial line; the demo's switchboard is a Modbus TCP gateway.
    text = DEMO_YAML.read_text(encoding="utf-8").replace(
        "    bus: plant-room\n    address: \"000000000161\"",
        "    bus: switchboard\n    address: \"000000000161\"",
    )
    problems = issues(text)
    assert len(problems) == 1, problems
    assert problems[0].endswith(
        "devices[5].bus: bus 'switchboard' is of kind modbus_tcp; a dlt645 device sits on a bus "
        "of kind serial"
    )
