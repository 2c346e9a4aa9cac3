"""Image name parsing: one strict parser for every name the store accepts."""

from __future__ import annotations

import pytest
from hutch.errors import HutchError
from hutch.store.refs import normalize_reference, parse_reference

VALID = [
    ("busybox", "busybox:latest"),
    ("busybox:1.36", "busybox:1.36"),
    ("localhost/foo:latest", "localhost/foo:latest"),
    ("localhost:5000/a/b_c__d-e.f:v1.0-rc_1", "localhost:5000/a/b_c__d-e.f:v1.0-rc_1"),
    ("docker.io/library/debian:bookworm", "docker.io/library/debian:bookworm"),
    ("a" * 200, "a" * 200 + ":latest"),
    ("x:" + "T" * 128, "x:" + "T" * 128),
]

INVALID = [
    "",
    "Busybox",
    "busybox:",
    "busybox:-tag",
    "busybox:" + "t" * 129,
    "/busybox",
    "busybox/",
    "a//b",
    "a..b",
    "a_-b",
    "-a",
    "a b",
    "busybox@sha256:" + "0" * 64,
    "a" * 256,
    "Host.Example/foo",
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_reference_valid(text: str, expected: str) -> None:
    assert normalize_reference(text) == expected


@pytest.mark.parametrize("text", INVALID)
def test_reference_invalid(text: str) -> None:
    with pytest.raises(HutchError, match="invalid image name"):
        parse_reference(text)


def test_reference_domain_detection() -> None:
    assert parse_reference("localhost/foo").has_domain
    assert parse_reference("example.com/foo").has_domain
    assert not parse_reference("library/foo").has_domain
