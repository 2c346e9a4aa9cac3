"""Image configs and manifests: creation, Docker's --change lines, canonical JSON."""

from __future__ import annotations

import copy
import datetime
import json
import platform
import re
import shlex
from typing import Any

from hutch.errors import HutchError
from hutch.store.layout import quoted

CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"

# Image configs, manifests and indexes usually nest four or five levels. Deeper
# JSON is rejected before json.loads, whose C parser recurses once per level.
MAX_JSON_DEPTH = 64
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}
_SIGNALS = frozenset(
    "HUP INT QUIT ILL TRAP ABRT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM TERM STKFLT CHLD CONT "
    "STOP TSTP TTIN TTOU URG XCPU XFSZ VTALRM PROF WINCH IO PWR SYS".split()
)


def canonical_json(value: Any) -> bytes:
    """Return VALUE as compact JSON with sorted keys, so equal values hash equally."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def parse_json(data: bytes | str, subject: str) -> Any:
    """Parse the untrusted JSON DATA, raising HutchError naming SUBJECT when it is invalid.

    Arrays and objects nested more than MAX_JSON_DEPTH levels deep are rejected
    before parsing, so hostile input cannot exhaust the recursion limit.
    """
    if isinstance(data, bytes):
        # The same decoding as json.loads of bytes: UTF-8, UTF-16 or UTF-32.
        try:
            data = data.decode(json.detect_encoding(data), "surrogatepass")
        except UnicodeDecodeError as error:
            raise HutchError(f"{subject} is not valid JSON: {error}") from None
    if json_depth_exceeds(data, MAX_JSON_DEPTH):
        raise HutchError(
            f"{subject} nests arrays and objects more than {MAX_JSON_DEPTH} levels "
            "deep, more than hutch accepts"
        )
    try:
        return json.loads(data)
    except RecursionError:
        # Only reached when the stack was already deep, because the check above
        # keeps the nesting at MAX_JSON_DEPTH.
        raise HutchError(f"{subject} nests too deeply to be parsed") from None
    except ValueError as error:
        raise HutchError(f"{subject} is not valid JSON: {error}") from None


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Return whether the JSON TEXT nests arrays and objects deeper than LIMIT.

    The result is exact for valid JSON. For invalid JSON it is exact up to the
    first error, which is as far as json.loads reads, so a False result still
    bounds how deep json.loads recurses.
    """
    # In valid JSON a backslash occurs only inside strings, where it starts an
    # escape: dropping the escaped backslashes first, and then every escaped
    # quote, leaves one '"' at each end of every string.
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    outside_strings = "".join(unescaped.split('"')[0::2])
    brackets = _NOT_BRACKETS.sub("", outside_strings)
    depth = 0
    for character in brackets:
        if character in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
            if depth < 0:
                # An unmatched closing bracket: json.loads stops with an error here.
                return False
    return False


def now_rfc3339() -> str:
    """Return the current UTC time in RFC 3339 with nine fraction digits, as Docker writes it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"


def rfc3339_to_epoch(text: str) -> int:
    """Return the Unix time of an RFC 3339 timestamp, or 0 when TEXT cannot be parsed."""
    if not isinstance(text, str) or len(text) < 19:
        return 0
    try:
        moment = datetime.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return 0
    offset = datetime.timedelta()
    tail = text[19:].lstrip("0123456789.")
    if tail and tail != "Z" and tail[0] in "+-" and len(tail) == 6:
        sign = 1 if tail[0] == "+" else -1
        offset = sign * datetime.timedelta(hours=int(tail[1:3]), minutes=int(tail[4:6]))
    return int((moment - offset).replace(tzinfo=datetime.timezone.utc).timestamp())


def host_architecture() -> str:
    machine = platform.machine()
    return _ARCHITECTURES.get(machine, machine)


def new_config(diff_id: str, created: str, comment: str) -> dict[str, Any]:
    """Return the OCI config of a one-layer image made by import."""
    return {
        "architecture": host_architecture(),
        "os": "linux",
        "created": created,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [
            {"created": created, "created_by": "hutch import", "comment": comment}
        ],
    }


def build_manifest(
    config_digest: str, config_size: int, layers: list[tuple[str, int]]
) -> dict[str, Any]:
    """Return an OCI manifest for a config and uncompressed layers given as (digest, size)."""
    return {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {"mediaType": LAYER_MEDIA_TYPE, "digest": digest, "size": size}
            for digest, size in layers
        ],
    }


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Return a copy of CONFIG with Dockerfile-style --change lines applied to config["config"].

    Supported: CMD, ENTRYPOINT (JSON or shell form), ENV, WORKDIR, USER, LABEL,
    EXPOSE, STOPSIGNAL, VOLUME. Raise HutchError naming the first bad line.
    """
    result = copy.deepcopy(config)
    container = result.setdefault("config", {})
    if not isinstance(container, dict):
        raise HutchError('image config has a non-object "config" field')
    for line in changes:
        instruction, _, argument = line.strip().partition(" ")
        handler = _CHANGE_HANDLERS.get(instruction.upper())
        if handler is None:
            names = ", ".join(sorted(_CHANGE_HANDLERS))
            raise HutchError(
                f"invalid change {quoted(line)}: the instruction must be one of {names}"
            )
        argument = argument.strip()
        if not argument:
            raise HutchError(
                f"invalid change {quoted(line)}: {instruction.upper()} needs an argument"
            )
        handler(container, argument, line)
    return result


def _command(argument: str, line: str) -> list[str]:
    if argument.startswith("["):
        value = parse_json(argument, f"invalid change {quoted(line)}: the JSON form")
        if not isinstance(value, list) or not all(
            isinstance(item, str) for item in value
        ):
            raise HutchError(
                f"invalid change {quoted(line)}: the JSON form must be a list of strings"
            )
        return value
    return ["/bin/sh", "-c", argument]


def _set_cmd(container: dict[str, Any], argument: str, line: str) -> None:
    container["Cmd"] = _command(argument, line)


def _set_entrypoint(container: dict[str, Any], argument: str, line: str) -> None:
    container["Entrypoint"] = _command(argument, line)


def _key_values(argument: str, line: str) -> list[tuple[str, str]]:
    try:
        words = shlex.split(argument)
    except ValueError as error:
        raise HutchError(f"invalid change {quoted(line)}: {error}") from None
    if words and "=" not in words[0]:
        # The old "ENV KEY VALUE" form: everything after the key is the value.
        key, _, value = argument.partition(" ")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, equals, value = word.partition("=")
        if not equals or not key:
            raise HutchError(
                f"invalid change {quoted(line)}: expected KEY=VALUE, got {quoted(word)}"
            )
        pairs.append((key, value))
    return pairs


def _set_env(container: dict[str, Any], argument: str, line: str) -> None:
    env = list(container.get("Env") or [])
    for key, value in _key_values(argument, line):
        env = [item for item in env if item.partition("=")[0] != key]
        env.append(f"{key}={value}")
    container["Env"] = env


def _set_label(container: dict[str, Any], argument: str, line: str) -> None:
    labels = dict(container.get("Labels") or {})
    labels.update(_key_values(argument, line))
    container["Labels"] = labels


def _set_workdir(container: dict[str, Any], argument: str, line: str) -> None:
    if not argument.startswith("/"):
        argument = "/" + argument
    container["WorkingDir"] = argument


def _set_user(container: dict[str, Any], argument: str, line: str) -> None:
    if any(character.isspace() for character in argument):
        raise HutchError(
            f"invalid change {quoted(line)}: USER takes one NAME[:GROUP] or UID[:GID]"
        )
    container["User"] = argument


def _set_expose(container: dict[str, Any], argument: str, line: str) -> None:
    ports = dict(container.get("ExposedPorts") or {})
    for word in argument.split():
        port, _, protocol = word.partition("/")
        protocol = protocol or "tcp"
        if (
            not port.isdigit()
            or len(port) > 5  # int() rejects strings of more than 4300 digits
            or not 0 < int(port) < 65536
            or protocol not in ("tcp", "udp", "sctp")
        ):
            raise HutchError(
                f"invalid change {quoted(line)}: {quoted(word)} is not PORT[/tcp|udp|sctp]"
            )
        ports[f"{int(port)}/{protocol}"] = {}
    container["ExposedPorts"] = ports


def _set_stopsignal(container: dict[str, Any], argument: str, line: str) -> None:
    name = argument.upper().removeprefix("SIG")
    number = argument.isdigit() and len(argument) <= 2 and 0 < int(argument) < 65
    if not number and name not in _SIGNALS:
        raise HutchError(
            f"invalid change {quoted(line)}: {quoted(argument)} is not a signal name or number"
        )
    container["StopSignal"] = argument


def _set_volume(container: dict[str, Any], argument: str, line: str) -> None:
    paths = _command(argument, line) if argument.startswith("[") else argument.split()
    volumes = dict(container.get("Volumes") or {})
    for path in paths:
        volumes[path] = {}
    container["Volumes"] = volumes


_CHANGE_HANDLERS = {
    "CMD": _set_cmd,
    "ENTRYPOINT": _set_entrypoint,
    "ENV": _set_env,
    "EXPOSE": _set_expose,
    "LABEL": _set_label,
    "STOPSIGNAL": _set_stopsignal,
    "USER": _set_user,
    "VOLUME": _set_volume,
    "WORKDIR": _set_workdir,
}
