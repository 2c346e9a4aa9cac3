"""Docker --change lines applied to an image config."""

from __future__ import annotations

import pytest
from hutch.errors import HutchError
from hutch.store.config import (
    apply_changes,
    json_depth_exceeds,
    parse_json,
    rfc3339_to_epoch,
)


def test_changes_all_instructions() -> None:
    config = apply_changes(
        {"config": {"Env": ["PATH=/bin", "A=old"]}},
        [
            'CMD ["/bin/sh", "-c", "echo hi"]',
            "ENTRYPOINT /bin/tini --",
            'ENV A=new B="two words"',
            "ENV C plain value",
            "WORKDIR /srv/app",
            "USER 1000:1000",
            'LABEL org.example.name="hutch test" version=1',
            "EXPOSE 80 53/udp",
            "STOPSIGNAL SIGINT",
            "VOLUME /data /cache",
        ],
    )["config"]
    assert config["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "/bin/tini --"]
    assert config["Env"] == ["PATH=/bin", "A=new", "B=two words", "C=plain value"]
    assert config["WorkingDir"] == "/srv/app"
    assert config["User"] == "1000:1000"
    assert config["Labels"] == {"org.example.name": "hutch test", "version": "1"}
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["StopSignal"] == "SIGINT"
    assert config["Volumes"] == {"/data": {}, "/cache": {}}


def test_changes_leave_input_alone() -> None:
    original = {"config": {"Env": ["A=1"]}}
    apply_changes(original, ["ENV A=2"])
    assert original == {"config": {"Env": ["A=1"]}}


@pytest.mark.parametrize(
    "line",
    [
        "RUN echo hi",
        "CMD",
        'CMD ["a", 1]',
        "CMD [broken",
        "EXPOSE 99999",
        "EXPOSE 80/icmp",
        "STOPSIGNAL SIGNOPE",
        "USER a b",
        "ENV =x",
        "LABEL 'unterminated",
    ],
)
def test_changes_invalid(line: str) -> None:
    with pytest.raises(HutchError, match="invalid change"):
        apply_changes({}, [line])


def test_changes_reject_deep_json() -> None:
    line = "CMD " + "[" * 5_000
    with pytest.raises(HutchError) as caught:
        apply_changes({}, [line])
    message = str(caught.value)
    assert message.startswith("invalid change 'CMD [[[")
    assert "more than 64 levels deep" in message
    assert len(message) < 400


@pytest.mark.parametrize("instruction", ["EXPOSE", "STOPSIGNAL"])
def test_changes_shorten_long_line(instruction: str) -> None:
    line = f"{instruction} " + "8" * 10_000
    with pytest.raises(HutchError) as caught:
        apply_changes({}, [line])
    message = str(caught.value)
    assert message.startswith(f"invalid change '{instruction} 888")
    assert "..." in message
    assert len(message) < 600


@pytest.mark.parametrize(
    ("text", "exceeds"),
    [
        ("[" * 64 + "]" * 64, False),
        ("[" * 65 + "]" * 65, True),
        ('{"a": ' * 65 + "1" + "}" * 65, True),
        ("[" * 100_000, True),
        ('["' + "[" * 100 + '"]', False),
        ('["\\"' + "[" * 100 + '"]', False),
        ('["\\\\", ' + "[" * 100 + "]" * 100 + "]", True),
        ("]" + "[" * 100, False),
    ],
    ids=[
        "at-limit",
        "over-limit",
        "objects",
        "unclosed",
        "in-string",
        "after-escaped-quote",
        "after-escaped-backslash",
        "unmatched-close",
    ],
)
def test_json_depth(text: str, exceeds: bool) -> None:
    assert json_depth_exceeds(text, 64) is exceeds


def test_parse_json_utf16_depth() -> None:
    """json.loads reads UTF-16 bytes too, so the check must see through them."""
    text = '["\\"", ' + "[" * 5_000 + "]" * 5_000 + "]"
    with pytest.raises(HutchError, match="more than 64 levels deep"):
        parse_json(text.encode("utf-16"), "the document")
    assert parse_json('["\\"", [[]]]'.encode("utf-16"), "the document") == ['"', [[]]]


def test_rfc3339_parsing() -> None:
    assert rfc3339_to_epoch("1970-01-01T00:00:10Z") == 10
    assert rfc3339_to_epoch("2020-09-13T12:26:40.123456789Z") == 1_600_000_000
    assert rfc3339_to_epoch("2020-09-13T14:26:40+02:00") == 1_600_000_000
    assert rfc3339_to_epoch("garbage") == 0
