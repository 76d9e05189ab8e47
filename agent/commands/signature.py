"""Signed commands: HMAC-SHA256 (RFC 2104, FIPS 180-4) over the command's canonical JSON.

The canonical form is the JSON Canonicalization Scheme, RFC 8785 (JCS), of the command object
without its ``sig`` member: members sorted by name (UTF-16 code units), no whitespace, strings
with only the escapes JSON requires, numbers as ECMAScript writes them (27.0 is ``27``, 1e21 is
``1e+21``). Every platform has a JCS library (e.g. ``canonicalize`` for JavaScript and Python,
``erdtman/java-json-canonicalization``), so a platform signs what it sends without caring how
its JSON library spaces the message. ``sig`` is the HMAC in lowercase hexadecimal (64 digits).

The shared secret is read from a file (``commands.secret_file``), as the MQTT password is: the
bytes of the file without its trailing newline.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from agent.commands.envelope import Refused, json_kind

__all__ = ["MIN_SECRET_BYTES", "SIG_FIELD", "canonical", "read_secret", "sign", "verify"]

SIG_FIELD = "sig"
MIN_SECRET_BYTES = 16
"""A shorter secret is refused: RFC 2104 §3 wants at least the hash's output length (32 bytes);
16 is the floor below which a secret is guessable, and the loader says so."""


def read_secret(path: Path) -> bytes:
    """The secret in ``path`` (OSError when unreadable, ValueError when too short)."""
    secret = path.read_bytes().rstrip(b"\r\n")
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"the command secret in {path} is {len(secret)} bytes; use at least "
            f"{MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32 > {path}`)"
        )
    return secret


def _number(value: int | float) -> str:
    """A number as ECMAScript's Number::toString writes it (RFC 8785 §3.2.2.3)."""
    if isinstance(value, int):
        if abs(value) > 2**53:
            raise Refused("a number in a signed command must be within ±2^53")
        return str(value)
    if not math.isfinite(value):
        raise Refused("a signed command cannot hold NaN or infinity")
    if value == 0:
        return "0"
    # The shortest digits that read back as the same double (Python's repr, as ECMAScript's),
    # and n: where the decimal point goes (value = 0.digits x 10^n).
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    assert isinstance(exponent, int)  # finite
    mantissa = "".join(map(str, digit_tuple))
    k = len(mantissa)
    n = k + exponent
    sign = "-" if value < 0 else ""
    if k <= n <= 21:
        return sign + mantissa + "0" * (n - k)
    if 0 < n <= 21:
        return sign + mantissa[:n] + "." + mantissa[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + mantissa
    e = n - 1
    body = mantissa if k == 1 else mantissa[0] + "." + mantissa[1:]
    return f"{sign}{body}e{'+' if e >= 0 else '-'}{abs(e)}"


def _write(value: Any, out: list[str]) -> None:
    if value is None or isinstance(value, bool):
        out.append(json.dumps(value))
    elif isinstance(value, int | float):
        out.append(_number(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, list):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif isinstance(value, Mapping):
        out.append("{")
        for index, key in enumerate(sorted(value, key=lambda k: str(k).encode("utf-16-be"))):
            if index:
                out.append(",")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    else:
        raise Refused(f"a signed command cannot hold {json_kind(value)}")


def canonical(command: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: RFC 8785 JSON of ``command`` without ``sig``."""
    out: list[str] = []
    _write({k: v for k, v in command.items() if k != SIG_FIELD}, out)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \\ud800 escape
        raise Refused("the command holds text that is not valid Unicode") from None


def sign(command: Mapping[str, Any], secret: bytes) -> str:
    """The ``sig`` of ``command`` (lowercase hex HMAC-SHA256 of its canonical form)."""
    return hmac.new(secret, canonical(command), hashlib.sha256).hexdigest()


def verify(command: Mapping[str, Any], secret: bytes) -> None:
    """Refused unless ``command`` carries a good ``sig``."""
    sig = command.get(SIG_FIELD)
    if sig is None:
        raise Refused("the command is not signed: this gateway requires `sig` (HMAC-SHA256)")
    if not isinstance(sig, str) or len(sig) != 64:
        raise Refused("`sig` must be 64 hexadecimal digits (HMAC-SHA256)")
    if not hmac.compare_digest(sig.lower(), sign(command, secret)):
        raise Refused(
            "the signature does not match: wrong secret, or the command changed after signing"
        )
