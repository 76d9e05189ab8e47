"""``edge-agent install`` / ``uninstall``: the README's gateway steps, idempotently.

``scripts/install.sh`` makes the virtual environment in /opt/edge-agent (it must exist before
this command does) and then runs ``edge-agent install``, which:

1. creates the system user and group ``edge-agent`` (home /var/lib/edge-agent, no shell);
2. adds it to ``dialout`` (serial adapters), ``gpio`` (GPIO chips) and ``bluetooth`` (BlueZ's
   D-Bus policy on Debian), each only where the group exists;
3. installs /etc/edge-agent/site.yaml from the demo config when there is none (a technician's
   file is never replaced), readable by root and the edge-agent group only;
4. installs the unit file (replacing an older one) and enables the service, starting it only
   when the config is valid.

Each step looks first and acts only when something is missing or different, so a second run
changes nothing. ``uninstall`` disables the service and removes the unit and /opt/edge-agent,
and keeps the data (/var/lib/edge-agent), the config (/etc/edge-agent) and the user (who owns
the data). ``--root DIR`` works on a tree under DIR instead of this system (useradd --prefix,
systemctl --root; no daemon-reload, nothing started): for images, and for the tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from agent.core.errors import ConfigError

__all__ = ["USER", "Installer", "Step", "add_commands", "dispatch"]

USER = "edge-agent"
DEVICE_GROUPS = ("dialout", "gpio", "bluetooth")
VENV = Path("opt/edge-agent")
CONFIG = Path("etc/edge-agent/site.yaml")
UNIT_NAME = "edge-agent.service"
UNIT = Path("etc/systemd/system") / UNIT_NAME
WANTS = Path("etc/systemd/system/multi-user.target.wants") / UNIT_NAME
DATA = Path("var/lib/edge-agent")

Runner = Callable[[Sequence[str]], None]


def run_command(argv: Sequence[str]) -> None:
    """Run one system command; a failure is an InstallError with its own message."""
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise InstallError(
            f"`{' '.join(argv)}` failed (exit {result.returncode})"
            + (f": {detail[-1]}" if detail else "")
        )


class InstallError(Exception):
    """A step that could not be done; the message is the sentence the technician reads."""


@dataclass
class Step:
    """One thing to do: a command, or a file to write (``write``), described for people."""

    what: str
    argv: list[str] = field(default_factory=list)
    write: Callable[[], None] | None = None

    def __str__(self) -> str:
        return f"{self.what}" + (f": {' '.join(self.argv)}" if self.argv else "")


def _entries(path: Path) -> dict[str, list[str]]:
    """name -> fields of a passwd/group file (local accounts, as useradd writes them)."""
    if not path.is_file():
        return {}
    return {
        line.split(":")[0]: line.split(":")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }


class Installer:
    """The steps for the system under ``root`` (``/`` for this one)."""

    def __init__(self, *, root: Path = Path("/"), unit_source: Path | None = None) -> None:
        self.root = root
        self.unit_source = unit_source
        self.live = root == Path("/")  # act on the running system (systemctl, start)

    def _at(self, relative: Path) -> Path:
        return self.root / relative

    def _prefix(self, flag: str) -> list[str]:
        return [] if self.live else [f"{flag}={self.root}"]

    def _groups(self) -> dict[str, list[str]]:
        return _entries(self._at(Path("etc/group")))

    # --- install ---------------------------------------------------------------------------

    def install_steps(self) -> list[Step]:
        steps: list[Step] = []
        if USER not in _entries(self._at(Path("etc/passwd"))):
            steps.append(
                Step(
                    f"create the system user {USER}",
                    ["useradd", *self._prefix("--prefix"), "--system", "--user-group",
                     "--home-dir", f"/{DATA}", "--no-create-home",
                     "--shell", "/usr/sbin/nologin", USER],
                )
            )  # fmt: skip
        groups = self._groups()
        missing = [
            name
            for name in DEVICE_GROUPS
            if name in groups and USER not in groups[name][3].split(",")
        ]
        if missing:
            steps.append(
                Step(
                    f"let {USER} use {', '.join(missing)}",
                    ["usermod", *self._prefix("--prefix"), "--append",
                     "--groups", ",".join(missing), USER],
                )
            )  # fmt: skip
        if not self._at(CONFIG).exists():
            steps.append(Step(f"install /{CONFIG} from the demo config", write=self._write_config))
        unit_text = self._unit_text()
        unit_changed = (
            not self._at(UNIT).is_file() or self._at(UNIT).read_text(encoding="utf-8") != unit_text
        )
        if unit_changed:
            steps.append(Step(f"install /{UNIT}", write=lambda: self._write_unit(unit_text)))
            if self.live:
                steps.append(Step("tell systemd", ["systemctl", "daemon-reload"]))
        if not self._enabled():
            enable = ["systemctl", *self._prefix("--root"), "enable", UNIT_NAME]
            steps.append(Step("enable the service at boot", enable))
        return steps

    def _enabled(self) -> bool:
        # The link's target is absolute (/etc/...): under --root it does not resolve here.
        return self._at(WANTS).is_symlink()

    def _unit_text(self) -> str:
        if self.unit_source is None:
            raise InstallError(
                "no unit file given: run scripts/install.sh, or pass --unit "
                "systemd/edge-agent.service from the source tree"
            )
        return self.unit_source.read_text(encoding="utf-8")

    def _group_id(self) -> int | None:
        entry = self._groups().get(USER)
        return int(entry[2]) if entry is not None else None

    def _write_config(self) -> None:
        target = self._at(CONFIG)
        target.parent.mkdir(parents=True, exist_ok=True)
        from agent.demo import demo_config_text  # the simulator is imported only here

        text = demo_config_text()
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        # Readable by the service (its group), not by every user: a real site's file names
        # password files and hosts.
        temporary.chmod(0o640)
        target.parent.chmod(0o750)
        gid = self._group_id()
        if gid is not None and os.geteuid() == 0:
            os.chown(temporary, 0, gid)
            os.chown(target.parent, 0, gid)
        os.replace(temporary, target)

    def _write_unit(self, text: str) -> None:
        target = self._at(UNIT)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.chmod(0o644)
        os.replace(temporary, target)

    # --- uninstall -------------------------------------------------------------------------

    def uninstall_steps(self) -> list[Step]:
        steps: list[Step] = []
        if self._enabled() or (self.live and self._at(UNIT).exists()):
            disable = ["systemctl", *self._prefix("--root"), "disable"]
            disable += ["--now", UNIT_NAME] if self.live else [UNIT_NAME]
            steps.append(Step("stop the service and disable it", disable))
        if self._at(UNIT).exists():
            steps.append(Step(f"remove /{UNIT}", write=self._at(UNIT).unlink))
            if self.live:
                steps.append(Step("tell systemd", ["systemctl", "daemon-reload"]))
        if self._at(VENV).exists():
            steps.append(
                Step(f"remove /{VENV}", write=lambda: shutil.rmtree(self._at(VENV)))
            )
        return steps

    def kept(self) -> list[str]:
        """What uninstall leaves, and why."""
        return [
            f"/{DATA} (the readings, with what was not sent yet)",
            f"/{CONFIG.parent} (the site config)",
            f"the user {USER} (it owns the data)",
        ]


def apply(steps: Sequence[Step], *, run: Runner = run_command, out: TextIO = sys.stdout) -> None:
    for step in steps:
        print(f"edge-agent: {step.what}", file=out)
        if step.write is not None:
            step.write()
        if step.argv:
            run(step.argv)


def install_command(
    *,
    root: Path,
    unit: Path | None,
    dry_run: bool,
    run: Runner = run_command,
    out: TextIO = sys.stdout,
) -> int:
    """``edge-agent install``: 0 done (or nothing to do), 1 a step failed (one sentence)."""
    installer = Installer(root=root, unit_source=unit)
    if installer.live and not dry_run and not (root / VENV / "bin" / "edge-agent").exists():
        print(
            f"edge-agent: install: the unit runs /{VENV}/bin/edge-agent, which is not there: "
            "run scripts/install.sh from the source tree (it makes that environment first)",
            file=sys.stderr,
        )
        return 1
    try:
        steps = installer.install_steps()
        if dry_run:
            for step in steps:
                print(f"would {step}", file=out)
            if not steps:
                print("nothing to do: installed and enabled", file=out)
            return 0
        apply(steps, run=run, out=out)
    except (InstallError, OSError) as exc:
        print(f"edge-agent: install: {exc}", file=sys.stderr)
        return 1
    if not steps:
        print("edge-agent: nothing to do: installed and enabled", file=out)
    return _start(installer, run=run, out=out)


def _start(installer: Installer, *, run: Runner, out: TextIO) -> int:
    from agent.config.loader import load_config

    config = installer.root / CONFIG
    try:
        load_config(config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(
            f"edge-agent: {config} needs fixing before the service can start; then "
            "`sudo systemctl start edge-agent`",
            file=sys.stderr,
        )
        return 0  # installed; the config is the technician's next step
    if installer.live:
        try:
            run(["systemctl", "start", UNIT_NAME])
        except InstallError as exc:
            print(f"edge-agent: install: {exc}", file=sys.stderr)
            return 1
        print(
            "edge-agent: running; edit /etc/edge-agent/site.yaml, then "
            "`sudo systemctl reload edge-agent`; `journalctl -u edge-agent -f` shows the log",
            file=out,
        )
    return 0


def uninstall_command(
    *, root: Path, dry_run: bool, run: Runner = run_command, out: TextIO = sys.stdout
) -> int:
    installer = Installer(root=root)
    steps = installer.uninstall_steps()
    if dry_run:
        for step in steps:
            print(f"would {step}", file=out)
    else:
        try:
            apply(steps, run=run, out=out)
        except (InstallError, OSError) as exc:
            print(f"edge-agent: uninstall: {exc}", file=sys.stderr)
            return 1
    if not steps:
        print("edge-agent: nothing to remove", file=out)
    print(f"edge-agent: kept {'; '.join(installer.kept())}", file=out)
    return 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``install`` and ``uninstall`` in the CLI."""
    for name, text in (
        ("install", "set up this gateway: user, groups, config, unit, enabled (idempotent)"),
        ("uninstall", "remove the unit and /opt/edge-agent; keep the data and the config"),
    ):
        setup = subparsers.add_parser(name, help=text)
        setup.add_argument(
            "--root", type=Path, default=Path("/"), help="work on a tree under DIR (images, tests)"
        )
        setup.add_argument("--dry-run", action="store_true", help="say what would be done")
        if name == "install":
            setup.add_argument(
                "--unit",
                type=Path,
                default=Path(sys.prefix) / UNIT_NAME,
                help="the unit file to install (default: the one scripts/install.sh put in "
                "the virtual environment)",
            )


def dispatch(args: argparse.Namespace) -> int:
    if not args.dry_run and args.root == Path("/") and os.geteuid() != 0:
        print(f"edge-agent: {args.command} changes this system: run it with sudo", file=sys.stderr)
        return 1
    if args.command == "install":
        return install_command(root=args.root, unit=args.unit, dry_run=args.dry_run)
    return uninstall_command(root=args.root, dry_run=args.dry_run)
