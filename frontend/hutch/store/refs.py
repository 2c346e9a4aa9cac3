"""Parse image names with Docker's reference grammar, restricted to lowercase.

    reference  := name [ ":" tag ]
    name       := [ domain "/" ] component ( "/" component )*
    domain     := host ( "." host )* [ ":" port ]
    component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}

Names are kept as given: "busybox" becomes "busybox:latest", never
"docker.io/library/busybox:latest", and "localhost/foo" stays as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hutch.errors import HutchError
from hutch.store.layout import quoted

MAX_NAME_LENGTH = 255
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])"
_DOMAIN = rf"{_HOST}(?:\.{_HOST})*(?::[0-9]+)?"
_NAME_RE = re.compile(rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class Reference:
    """An image name and its tag."""

    name: str
    tag: str

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def has_domain(self) -> bool:
        first, slash, _ = self.name.partition("/")
        return bool(slash) and ("." in first or ":" in first or first == "localhost")


def parse_reference(text: str) -> Reference:
    """Parse NAME[:TAG], or raise HutchError naming TEXT when it is not a valid name."""
    if "@" in text:
        raise HutchError(
            f"invalid image name {quoted(text)}: digest references are not supported"
        )
    name, tag = text, DEFAULT_TAG
    last_colon = text.rfind(":")
    if last_colon > text.rfind("/"):
        name, tag = text[:last_colon], text[last_colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise HutchError(
                f"invalid image name {quoted(text)}: the tag must match [A-Za-z0-9_][A-Za-z0-9_.-]* "
                "and be at most 128 characters"
            )
    if len(name) > MAX_NAME_LENGTH:
        raise HutchError(
            f"invalid image name {quoted(text)}: longer than {MAX_NAME_LENGTH} characters"
        )
    if not _NAME_RE.fullmatch(name):
        hint = (
            "use lowercase letters"
            if name.lower() != name
            else "use [a-z0-9] separated by . _ -"
        )
        raise HutchError(
            f"invalid image name {quoted(text)}: {hint}, and / between parts"
        )
    return Reference(name, tag)


def normalize_reference(text: str) -> str:
    """Return TEXT as NAME:TAG, adding the "latest" tag when it has none."""
    return str(parse_reference(text))
