"""What both config paths share: the limits on a file's values, where a problem is (a location
in the data and a line and column in the file), and the list of problems found.

The quick path (agent.config.loader) and the located one (agent.config.located) both use them;
here, so that neither imports the other's insides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.core.errors import ConfigError, ConfigIssue

__all__ = ["MAX_DEPTH", "MAX_NUMBER", "MAX_VALUES", "Issues", "Loc", "format_path", "place"]

MAX_VALUES = 100_000  # after aliases are expanded: stops "billion laughs" files
MAX_DEPTH = 64  # a config nests about six levels
MAX_NUMBER = 2**64  # larger than any setting; also keeps float() conversions from overflowing

Loc = tuple[Any, ...]


@dataclass
class Issues:
    filename: str
    items: list[ConfigIssue] = field(default_factory=list)

    def add(self, at: tuple[int, int] | None, path: str, message: str) -> None:
        line, column = at if at else (None, None)
        self.items.append(ConfigIssue(self.filename, line, column, path, message))

    def whole_file(self, message: str) -> ConfigError:
        self.add(None, "", message)
        return ConfigError(self.sorted())

    def sorted(self) -> list[ConfigIssue]:
        """File order, whole-file problems first; one issue per place and problem.

        A value written once and used twice (an anchor and its aliases) is one problem.
        """
        unique: dict[tuple[Any, ...], ConfigIssue] = {}
        for issue in self.items:
            same = (issue.line, issue.column, issue.message) if issue.line else (id(issue),)
            unique.setdefault(same, issue)
        return sorted(unique.values(), key=lambda i: (i.line or 0, i.column or 0))

    def __bool__(self) -> bool:
        return bool(self.items)


def place(mark: Any) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def format_path(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and part and all(c.isalnum() or c in "_-" for c in part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text
