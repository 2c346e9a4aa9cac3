"""Container records: what the CLI stores about each container it created.

A container lives in STORE/containers/ID/: `config.json` (written by the
CLI, replaced atomically), the overlay dirs `upper/` and `work/`, the mount
point `rootfs/`, and the files that hutch-helper writes (`log`, `status`,
`state.json`, `spawn.err`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hutch.errors import HutchError
from hutch.store.layout import remove_tree

NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
ADJECTIVES = (
    "brave", "calm", "eager", "fond", "gentle", "happy", "keen", "lucid",
    "merry", "nimble", "proud", "quiet", "rapid", "sharp", "steady", "tidy",
    "vivid", "wise", "witty", "zesty",
)  # fmt: skip
NOUNS = (
    "badger", "beaver", "crane", "falcon", "ferret", "heron", "lynx", "marten",
    "otter", "owl", "puffin", "rabbit", "raven", "robin", "stoat", "swift",
    "vole", "weasel", "wren", "yak",
)  # fmt: skip


@dataclass
class Container:
    """One container record; `data` is the content of config.json."""

    directory: Path
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.data["Id"]

    @property
    def name(self) -> str:
        return self.data["Name"]

    @property
    def image_id(self) -> str:
        return self.data["Image"]

    @property
    def upper(self) -> Path:
        return self.directory / "upper"

    @property
    def work(self) -> Path:
        return self.directory / "work"

    @property
    def rootfs(self) -> Path:
        return self.directory / "rootfs"

    def local_state(self) -> dict[str, Any]:
        """Return the last state the helper wrote, or {} if it wrote none."""
        try:
            return json.loads((self.directory / "state.json").read_text())
        except (OSError, ValueError):
            return {}


class ContainerStore:
    """The containers/ directory of an image store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(mode=0o700, exist_ok=True)

    def all(self) -> list[Container]:
        containers = []
        for directory in self.root.iterdir():
            container = self._read(directory)
            if container is not None:
                containers.append(container)
        containers.sort(key=lambda c: c.data.get("Created", ""), reverse=True)
        return containers

    def _read(self, directory: Path) -> Container | None:
        try:
            data = json.loads((directory / "config.json").read_text())
        except (OSError, ValueError):
            return None
        return Container(directory, data)

    def get(self, reference: str) -> Container:
        """Find a container by full id, name, or unambiguous id prefix."""
        containers = self.all()
        for container in containers:
            if reference in (container.id, container.name):
                return container
        if re.fullmatch(r"[0-9a-f]{1,63}", reference):
            matches = [c for c in containers if c.id.startswith(reference)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise HutchError(f"container id prefix {reference} is ambiguous; give more digits")
        raise HutchError(f"no such container: {reference}")

    def new_name(self) -> str:
        taken = {c.name for c in self.all()}
        for _ in range(100):
            name = f"{secrets.choice(ADJECTIVES)}_{secrets.choice(NOUNS)}"
            if name not in taken:
                return name
        return f"{secrets.choice(ADJECTIVES)}_{secrets.token_hex(4)}"

    def create(self, data: dict[str, Any]) -> Container:
        """Make the directory and config.json of a new container.

        DATA must not hold Id; the name in DATA["Name"] must be free.
        """
        name = data["Name"]
        if not NAME_PATTERN.fullmatch(name):
            raise HutchError(
                f"invalid container name {name!r}: use letters, digits, '_', '.' and '-'"
            )
        if any(c.name == name for c in self.all()):
            raise HutchError(
                f"the container name {name!r} is already in use; remove that container "
                "or choose another name"
            )
        container_id = secrets.token_hex(32)
        directory = self.root / container_id
        directory.mkdir(mode=0o700)
        for sub in ("upper", "work", "rootfs"):
            (directory / sub).mkdir(mode=0o755)
        container = Container(directory, {"Id": container_id, **data})
        self.save(container)
        return container

    def save(self, container: Container) -> None:
        temporary = container.directory / ".config.json.tmp"
        temporary.write_text(json.dumps(container.data, indent=1))
        os.replace(temporary, container.directory / "config.json")

    def remove(self, container: Container) -> None:
        # Remove the record first, so a crash mid-way never leaves a
        # half-deleted container that still lists.
        (container.directory / "config.json").unlink(missing_ok=True)
        remove_tree(container.directory)
