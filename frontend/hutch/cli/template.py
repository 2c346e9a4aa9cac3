"""A small subset of Go templates for --format, as Docker's CLI takes them.

Supported: literal text, `{{.Field.Sub}}` (values print as Go prints them:
true/false, numbers, strings; maps and lists as JSON), `{{json .Field}}`
and `{{json .}}`, and `\\t`/`\\n` escapes. Anything else is an error.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hutch.errors import HutchError

ACTION = re.compile(r"\{\{\s*(.*?)\s*\}\}")
FIELD = re.compile(r"\.|(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _lookup(value: Any, path: str, template: str) -> Any:
    if path == ".":
        return value
    for name in path.split(".")[1:]:
        if not isinstance(value, dict) or name not in value:
            raise HutchError(f"invalid --format {template!r}: no field {name!r}")
        value = value[name]
    return value


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<no value>"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def render(template: str, value: Any) -> str:
    """Render TEMPLATE with VALUE as `.`."""

    def action(match: re.Match[str]) -> str:
        words = match.group(1).split()
        if len(words) == 1 and FIELD.fullmatch(words[0]):
            return _show(_lookup(value, words[0], template))
        if len(words) == 2 and words[0] == "json" and FIELD.fullmatch(words[1]):
            return json.dumps(_lookup(value, words[1], template))
        raise HutchError(
            f"invalid --format {template!r}: only {{{{.Field}}}} and {{{{json .Field}}}} are supported"
        )

    text = template.replace("\\t", "\t").replace("\\n", "\n")
    return ACTION.sub(action, text)
