"""``edge-agent install`` / ``uninstall`` on a tree in tmp_path (``--root``), never this system.

The account and unit steps run the real tools on that tree (``useradd --prefix``, ``usermod
--prefix``, ``systemctl --root``), which edit only the files under it; they need root, as on a
gateway (``scripts/install.sh`` refuses to run otherwise).
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.install import install_command, run_command, uninstall_command
from tests.helpers import ROOT

UNIT = ROOT / "systemd" / "edge-agent.service"

as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="useradd --prefix needs root, even on a tree in tmp_path"
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A Debian-like /etc with the dialout and bluetooth groups but no gpio group."""
    root = tmp_path / "root"
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\ndialout:x:20:\nbluetooth:x:112:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\ndialout:*::\nbluetooth:*::\n")
    return root


class Recorder:
    """Runs each command for real and remembers it."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> None:
        self.commands.append(list(argv))
        run_command(argv)


def _install(root: Path, *, dry_run: bool = False) -> tuple[Recorder, str]:
    recorder, out = Recorder(), io.StringIO()
    assert install_command(root=root, unit=UNIT, dry_run=dry_run, run=recorder, out=out) == 0
    return recorder, out.getvalue()


def _snapshot(root: Path) -> dict[str, tuple[int, bytes | str]]:
    return {
        str(p.relative_to(root)): (
            p.lstat().st_mode,
            os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else b"",
        )
        for p in sorted(root.rglob("*"))
    }


@as_root
def test_install_sets_up_the_gateway_and_a_second_run_changes_nothing(tree: Path) -> None:
    first, said = _install(tree)
    assert [c[0] for c in first.commands] == ["useradd", "usermod", "systemctl"]
    passwd = (tree / "etc/passwd").read_text()
    assert "edge-agent:x:" in passwd
    assert ":/var/lib/edge-agent:/usr/sbin/nologin" in passwd
    groups = (tree / "etc/group").read_text().splitlines()
    assert "dialout:x:20:edge-agent" in groups
    assert "bluetooth:x:112:edge-agent" in groups
    assert not any(line.startswith("gpio:") for line in groups), "no group is invented"
    config = tree / "etc/edge-agent/site.yaml"
    assert config.read_text() == (ROOT / "config/demo.yaml").read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    gid = next(int(g.split(":")[2]) for g in groups if g.startswith("edge-agent:"))
    assert config.stat().st_gid == gid, "readable by the service's group"
    assert (tree / "etc/systemd/system/edge-agent.service").read_text() == UNIT.read_text()
    wants = tree / "etc/systemd/system/multi-user.target.wants/edge-agent.service"
    assert os.readlink(wants) == "/etc/systemd/system/edge-agent.service"
    assert "enable the service at boot" in said

    before = _snapshot(tree)
    second, said = _install(tree)
    assert second.commands == []
    assert "nothing to do" in said
    assert _snapshot(tree) == before


@as_root
def test_a_technicians_config_is_kept_and_an_older_unit_is_replaced(tree: Path) -> None:
    _install(tree)
    config = tree / "etc/edge-agent/site.yaml"
    config.write_text("site: {id: hospital, name: 医院}\n")
    unit = tree / "etc/systemd/system/edge-agent.service"
    unit.write_text("[Service]\nExecStartPre=/opt/edge-agent/bin/edge-agent validate x\n")
    again, said = _install(tree)
    assert again.commands == []  # the user, its groups and the enablement are in place
    assert config.read_text() == "site: {id: hospital, name: 医院}\n"
    assert unit.read_text() == UNIT.read_text()
    assert said.splitlines() == ["edge-agent: install /etc/systemd/system/edge-agent.service"]


def test_a_dry_run_says_what_it_would_do_and_does_nothing(tree: Path) -> None:
    before = _snapshot(tree)
    recorder, said = _install(tree, dry_run=True)
    assert recorder.commands == []
    assert _snapshot(tree) == before
    lines = said.splitlines()
    assert lines[0].startswith("would create the system user edge-agent: useradd --prefix=")
    assert lines[1].endswith("usermod --prefix=" + str(tree) + " --append --groups "
                             "dialout,bluetooth edge-agent")  # fmt: skip
    assert "would install /etc/edge-agent/site.yaml from the demo config" in lines


@as_root
def test_uninstall_removes_the_unit_and_the_venv_and_keeps_data_config_and_user(
    tree: Path,
) -> None:
    _install(tree)
    venv = tree / "opt/edge-agent/bin"
    venv.mkdir(parents=True)
    (venv / "edge-agent").write_text("#!/bin/sh\n")
    data = tree / "var/lib/edge-agent/readings.db"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"SQLite format 3\x00")
    recorder, out = Recorder(), io.StringIO()
    assert uninstall_command(root=tree, dry_run=False, run=recorder, out=out) == 0
    assert recorder.commands == [["systemctl", f"--root={tree}", "disable", "edge-agent.service"]]
    assert not (tree / "etc/systemd/system/edge-agent.service").exists()
    assert not (tree / "etc/systemd/system/multi-user.target.wants/edge-agent.service").exists()
    assert not (tree / "opt/edge-agent").exists()
    assert data.read_bytes() == b"SQLite format 3\x00"
    assert (tree / "etc/edge-agent/site.yaml").exists()
    assert "edge-agent:x:" in (tree / "etc/passwd").read_text()
    assert "kept /var/lib/edge-agent" in out.getvalue()
    again = io.StringIO()
    assert uninstall_command(root=tree, dry_run=False, run=recorder, out=again) == 0
    assert "nothing to remove" in again.getvalue()


def test_the_command_line_dry_run(tree: Path) -> None:
    """`edge-agent install --root DIR --dry-run`, as a technician would preview it."""
    out = subprocess.run(
        [sys.executable, "-m", "agent", "install", "--root", str(tree), "--dry-run",
         "--unit", str(UNIT)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == (
        f"would enable the service at boot: systemctl --root={tree} enable edge-agent.service"
    )
    assert not (tree / "etc/edge-agent").exists()
