"""`edge-agent validate` (and the agent at start) refuses a config whose secret or certificate
files cannot be read, naming file, line and field like every other config error."""

from __future__ import annotations

import getpass
import json
import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from agent.config.loader import load_config, load_config_text
from agent.core.errors import ConfigError
from tests.helpers import ROOT

SITE = """\
site: {{id: s, name: S}}
uplink:
  url: mqtt://127.0.0.1
  password_file: {password}
commands:
  secret_file: {secret}
"""


def _issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load_config_text(text, filename="site.yaml")
    return [str(issue) for issue in error.value.issues]


def test_missing_and_unusable_secret_files_are_located(tmp_path: Path) -> None:
    secret = tmp_path / "command.secret"
    secret.write_text("s" * 32)
    text = SITE.format(password=tmp_path / "nowhere" / "mqtt.pw", secret=tmp_path)
    assert _issues(text) == [
        f"site.yaml:4:18: uplink.password_file: there is no file {tmp_path}/nowhere/mqtt.pw",
        f"site.yaml:6:16: commands.secret_file: {tmp_path} is a directory, not a file",
    ]
    inside_a_file = secret / "x"
    issues = _issues(SITE.format(password=secret, secret=inside_a_file))
    assert issues == [
        f"site.yaml:6:16: commands.secret_file: {inside_a_file} cannot be read: Not a directory"
    ]
    relative = _issues(SITE.format(password="mqtt.pw", secret=secret))
    assert relative == [
        "site.yaml:4:18: uplink.password_file: there is no file mqtt.pw "
        f"(looked for {Path.cwd() / 'mqtt.pw'})"
    ]
    config = load_config_text(SITE.format(password=secret, secret=secret), filename="site.yaml")
    assert config.commands.secret_file == secret
    short = tmp_path / "short.secret"
    short.write_text("hunter2\n")
    assert _issues(SITE.format(password=secret, secret=short)) == [
        f"site.yaml:6:16: commands.secret_file: the command secret in {short} is 7 bytes; use "
        f"at least 16 (e.g. `openssl rand -hex 32 > {short}`)"
    ]


def _load_as(user: str, site: Path) -> list[str]:
    """The issues `load_config` finds when run as ``user`` (a forked child that gives up root;
    the user the tests run as when they do not run as root)."""
    if os.geteuid() != 0:
        with pytest.raises(ConfigError) as error:
            load_config(site)
        return [str(i) for i in error.value.issues]
    entry = pwd.getpwnam(user)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read)
        try:
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            load_config(site)
            found = ["loaded"]
        except ConfigError as exc:
            found = [str(i) for i in exc.issues]
        os.write(write, json.dumps(found).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        found = json.loads(pipe.read())
    os.waitpid(child, 0)
    return list(found)


def test_files_the_service_user_cannot_read_are_refused() -> None:
    # Not under pytest's tmp_path: its parents are root's only, so another user reaches nothing.
    with tempfile.TemporaryDirectory(prefix="edge-agent-test-") as place:
        _unreadable(Path(place))


def _unreadable(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.pw"
    secret.write_text("password\n")
    secret.chmod(0o600)  # the owner's only, as a password file is before its group is set
    site = tmp_path / "site.yaml"
    site.write_text(
        f"site: {{id: s, name: S}}\nuplink:\n  url: mqtt://127.0.0.1\n  password_file: {secret}\n"
    )
    site.chmod(0o644)
    tmp_path.chmod(0o755)
    user = "nobody" if os.geteuid() == 0 else getpass.getuser()
    if os.geteuid() != 0:
        secret.chmod(0o000)  # not even the owner
    assert _load_as(user, site) == [
        f"{site}:4:18: uplink.password_file: {secret} cannot be read by this user ({user}): "
        "give the service's user read access (e.g. chmod 0640 and the service's group)"
    ]


def test_validate_exits_78_on_a_missing_password_file(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(password=tmp_path / "mqtt.pw", secret=tmp_path / "cmd.key"))
    done = subprocess.run(
        [sys.executable, "-m", "agent", "validate", str(site)],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 78
    assert done.stderr.splitlines() == [
        f"{site}:4:18: uplink.password_file: there is no file {tmp_path}/mqtt.pw",
        f"{site}:6:16: commands.secret_file: there is no file {tmp_path}/cmd.key",
    ]
