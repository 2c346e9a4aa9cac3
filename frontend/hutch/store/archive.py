"""The docker-archive and oci-archive formats of save and load.

Writing: members are sorted by name, owned by 0:0 and stamped with the image's
creation time, so the same images always give the same bytes.

Reading: the archive may come from a pipe, so nothing seeks. Every regular
member is streamed to a scratch file while it is hashed. Links between
members are recorded, and once the whole archive has been read the manifests
are parsed and every digest is checked.
"""

from __future__ import annotations

import itertools
import json
import os
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from hutch.errors import HutchError
from hutch.store import refs
from hutch.store.blobs import hash_file_range, write_blob
from hutch.store.config import (
    INDEX_MEDIA_TYPE,
    canonical_json,
    host_architecture,
    parse_json,
)
from hutch.store.extract import iterate_members, open_tar_stream
from hutch.store.layout import (
    CHUNK_SIZE,
    Limits,
    is_hex_digest,
    member_components,
    quoted,
    read_capped,
    split_digest,
)
from hutch.store.tario import ForwardReader, OutputError, RangeReader, TarOutput

DOCKER_ARCHIVE = "docker-archive"
OCI_ARCHIVE = "oci-archive"
FORMATS = (DOCKER_ARCHIVE, OCI_ARCHIVE)

_INDEX_TYPES = (
    INDEX_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_MAX_LINK_HOPS = 16


@dataclass
class SavedImage:
    """The blobs and names of one stored image, as save needs them."""

    id: str  # config digest hex
    tags: list[str]
    config_path: Path
    manifest_path: Path
    manifest_digest: str  # hex
    layers: list[tuple[str, Path]]  # (diff id hex, layer tar blob), bottom first
    mtime: int


# -- writing ------------------------------------------------------------------


class _ArchiveWriter:
    def __init__(self, out: BinaryIO, mtime: int) -> None:
        self.tar = TarOutput(out, tar_format=tarfile.GNU_FORMAT)
        self.mtime = mtime

    def _member(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        member = tarfile.TarInfo(name)
        member.type = kind
        member.mode = mode
        member.mtime = self.mtime
        member.uid = member.gid = 0
        member.uname = member.gname = ""
        return member

    def directory(self, name: str) -> None:
        self.tar.add(self._member(name + "/", tarfile.DIRTYPE, 0o755))

    def data(self, name: str, data: bytes) -> None:
        self.tar.add_bytes(self._member(name, tarfile.REGTYPE, 0o644), data)

    def file(self, name: str, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            member = self._member(name, tarfile.REGTYPE, 0o644)
            member.size = os.fstat(fd).st_size
            self.tar.add_data(member, fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        self.tar.close()


def write_archive(images: list[SavedImage], out: BinaryIO, fmt: str) -> None:
    """Write IMAGES to OUT as one archive of format FMT (docker-archive or oci-archive)."""
    if fmt not in FORMATS:
        raise HutchError(
            f"unknown archive format {fmt!r}: use one of {', '.join(FORMATS)}"
        )
    writer = _ArchiveWriter(out, max((image.mtime for image in images), default=0))
    entries = _docker_entries(images) if fmt == DOCKER_ARCHIVE else _oci_entries(images)
    try:
        for name in sorted(entries, key=lambda item: item.rstrip("/")):
            content = entries[name]
            if content is None:
                writer.directory(name.rstrip("/"))
            elif isinstance(content, Path):
                writer.file(name, content)
            else:
                writer.data(name, content)
        writer.close()
    except OutputError as error:
        raise cast(OSError, error.__cause__) from None


def _docker_entries(images: list[SavedImage]) -> dict[str, bytes | Path | None]:
    entries: dict[str, bytes | Path | None] = {}
    manifest = []
    repositories: dict[str, dict[str, str]] = {}
    for image in images:
        parent = ""
        for diff_id, blob in image.layers:
            if diff_id + "/" not in entries:
                legacy = {"id": diff_id, "created": "1970-01-01T00:00:00Z"}
                if parent:
                    legacy["parent"] = parent
                entries[diff_id + "/"] = None
                entries[f"{diff_id}/VERSION"] = b"1.0"
                entries[f"{diff_id}/json"] = canonical_json(legacy)
                entries[f"{diff_id}/layer.tar"] = blob
            parent = diff_id
        entries[f"{image.id}.json"] = image.config_path
        manifest.append(
            {
                "Config": f"{image.id}.json",
                "RepoTags": image.tags,
                "Layers": [f"{diff_id}/layer.tar" for diff_id, _ in image.layers],
            }
        )
        for tag in image.tags:
            reference = refs.parse_reference(tag)
            if image.layers:
                repositories.setdefault(reference.name, {})[reference.tag] = (
                    image.layers[-1][0]
                )
    entries["manifest.json"] = json.dumps(manifest, separators=(",", ":")).encode()
    entries["repositories"] = canonical_json(repositories)
    return entries


def _oci_entries(images: list[SavedImage]) -> dict[str, bytes | Path | None]:
    entries: dict[str, bytes | Path | None] = {"blobs/": None, "blobs/sha256/": None}
    descriptors = []
    for image in images:
        for diff_id, blob in image.layers:
            entries[f"blobs/sha256/{diff_id}"] = blob
        entries[f"blobs/sha256/{image.id}"] = image.config_path
        entries[f"blobs/sha256/{image.manifest_digest}"] = image.manifest_path
        descriptor = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{image.manifest_digest}",
            "size": image.manifest_path.stat().st_size,
        }
        if not image.tags:
            descriptors.append(descriptor)
        for tag in image.tags:
            annotations = {
                "org.opencontainers.image.ref.name": tag,
                "io.containerd.image.name": tag,
            }
            descriptors.append({**descriptor, "annotations": annotations})
    entries["index.json"] = canonical_json(
        {"schemaVersion": 2, "manifests": descriptors}
    )
    entries["oci-layout"] = canonical_json({"imageLayoutVersion": "1.0.0"})
    return entries


# -- reading ------------------------------------------------------------------


@dataclass
class ArchiveMember:
    """A regular member of a loaded archive, as a scratch file with its digest."""

    name: str
    path: Path
    digest: str  # hex
    size: int


@dataclass
class LayerSpec:
    """One layer of an image in a loaded archive."""

    member: ArchiveMember
    expected_diff_id: str  # hex, from the image config


@dataclass
class ImageSpec:
    """One image found in a loaded archive."""

    config: bytes
    config_digest: str  # hex
    tags: list[str]
    layers: list[LayerSpec] = field(default_factory=list)


class ArchiveReader:
    """Read a save/load archive from a stream into scratch files."""

    def __init__(
        self,
        scratch: Path,
        limits: Limits,
        stored_blob: Callable[[str], Path | None] = lambda hex_digest: None,
    ) -> None:
        self.scratch = scratch
        self.limits = limits
        # Return the path of a blob the store already has, or None.
        self.stored_blob = stored_blob
        self._file: tuple[int, int] | None = None  # (fd, offset of the tar)
        self.members: dict[str, ArchiveMember] = {}
        self.links: dict[str, str] = {}
        self._scratch_names = (f"member-{number}" for number in itertools.count())

    def read(self, source: BinaryIO, file: tuple[int, int] | None = None) -> None:
        """Read the archive SOURCE, an uncompressed tar.

        FILE is (fd, offset of the tar) when SOURCE reads a regular file, which lets
        members the store already has be hashed without being copied.
        """
        self._file = file
        self._source = ForwardReader(source, None if file is None else file[1])
        tar = open_tar_stream(cast(BinaryIO, self._source), self.limits, seekable=True)
        count = 0
        for member in iterate_members(tar, "the archive"):
            count += 1
            if count > self.limits.max_archive_members:
                raise HutchError(
                    f"the archive has more than {self.limits.max_archive_members} members"
                )
            name = self._normalize(member.name, member.name)
            if member.isdir():
                continue
            if name in self.members or name in self.links:
                # The copies could differ, and a check and a load that picked
                # different copies would disagree, so neither copy is used.
                raise HutchError(
                    f"the archive has more than one member named {quoted(member.name)}: "
                    "an archive must contain each name only once"
                )
            if member.isreg():
                self._store_member(member, name)
            elif member.issym() or member.islnk():
                self.links[name] = self._link_target(member, name)
            else:
                raise HutchError(
                    f"the archive member {quoted(member.name)} is not a file, "
                    "directory or link"
                )

    def _normalize(self, name: str, shown: str) -> str:
        try:
            parts = member_components(name, self.limits)
        except ValueError as error:
            raise HutchError(
                f"the archive member {quoted(shown)} has an unsafe name: {error}"
            ) from None
        return "/".join(parts)

    def _link_target(self, member: tarfile.TarInfo, name: str) -> str:
        """Return the member name that the symlink or hard link MEMBER points to.

        docker save before Docker 25 may write a layer.tar that two images share as a
        symlink to its first copy, so links are kept, but only as references to other
        members: no link target is ever looked up outside the archive.
        """
        kind = "symlink" if member.issym() else "hard link"
        target = member.linkname
        problem = (
            f"the archive member {quoted(member.name)} is a {kind} to "
            f"{quoted(target)}, which"
        )
        hint = (
            "an image archive contains only files, directories and links to its members"
        )
        if target.startswith("/"):
            raise HutchError(f"{problem} is outside the archive: {hint}")
        if member.issym():
            base = name.rpartition("/")[0]
            stack: list[str] = base.split("/") if base else []
            for part in target.split("/"):
                if part == "..":
                    if not stack:
                        raise HutchError(f"{problem} is outside the archive: {hint}")
                    stack.pop()
                elif part not in ("", "."):
                    stack.append(part)
            target = "/".join(stack)
        try:
            parts = member_components(target, self.limits)
        except ValueError as error:
            raise HutchError(f"{problem} is not a valid member name: {error}") from None
        if not parts:
            raise HutchError(f"{problem} is the archive's top directory: {hint}")
        return "/".join(parts)

    def _store_member(self, member: tarfile.TarInfo, name: str) -> None:
        if member.sparse is not None:
            raise HutchError(
                f"the archive member {quoted(member.name)} is a sparse file, "
                "which no docker-archive or oci-archive contains"
            )
        subject = f"the archive member {quoted(member.name)}"
        if self._file is not None and member.size >= CHUNK_SIZE:
            fd, base = self._file
            digest = hash_file_range(fd, base + member.offset_data, member.size)
            stored = self.stored_blob(digest) if digest else None
            if stored is not None:
                # The store's own copy is used, so no later change to the file matters.
                self.members[name] = ArchiveMember(name, stored, digest, member.size)
                return
        self._source.seek(member.offset_data)
        data = RangeReader(self._source, member.size)
        file_name = next(self._scratch_names)
        try:
            digest, size = write_blob(
                cast(BinaryIO, data),
                self.scratch / file_name,
                limit=self.limits.max_layer_bytes,
                subject=subject,
            )
        except tarfile.TarError as error:
            raise HutchError(f"{subject} is truncated ({error})") from None
        if size != member.size:
            raise HutchError(f"{subject} is truncated")
        self.members[name] = ArchiveMember(name, self.scratch / file_name, digest, size)

    def member(self, name: str, subject: str) -> ArchiveMember:
        """Return the regular member NAME, following links, or raise when it is missing."""
        try:
            normalized = "/".join(member_components(name, self.limits))
        except ValueError as error:
            raise HutchError(
                f"{subject} is named {quoted(name)}, which is not a valid member "
                f"name: {error}"
            ) from None
        for _ in range(_MAX_LINK_HOPS):
            if normalized in self.members:
                return self.members[normalized]
            if normalized not in self.links:
                break
            normalized = self.links[normalized]
        raise HutchError(
            f"the archive is missing {quoted(name)} ({subject}): "
            "it is incomplete or damaged"
        )

    def has(self, name: str) -> bool:
        return name in self.members or name in self.links

    def json(self, name: str, subject: str) -> Any:
        member = self.member(name, subject)
        return parse_json(
            read_capped(member.path, self.limits.max_json_bytes, subject), subject
        )

    # -- formats ---------------------------------------------------------------

    def images(self) -> list[ImageSpec]:
        """Return the images the archive describes, with every digest checked."""
        if self.has("manifest.json"):
            return self._docker_images()
        if self.has("index.json"):
            return self._oci_images()
        raise HutchError(
            "the archive has neither manifest.json (docker-archive) nor index.json (oci-archive)"
        )

    def _docker_images(self) -> list[ImageSpec]:
        manifest = self.json("manifest.json", "the docker-archive manifest")
        if not isinstance(manifest, list) or not manifest:
            raise HutchError(
                "the archive's manifest.json is not a non-empty list of images"
            )
        images = []
        for index, entry in enumerate(manifest):
            subject = f"image {index} of manifest.json"
            if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
                raise HutchError(f"{subject} has no Config")
            layers = entry.get("Layers")
            tags = entry.get("RepoTags") or []
            if not isinstance(layers, list) or not all(
                isinstance(item, str) for item in layers
            ):
                raise HutchError(f"{subject} has no valid Layers list")
            if not isinstance(tags, list) or not all(
                isinstance(item, str) for item in tags
            ):
                raise HutchError(f"{subject} has an invalid RepoTags list")
            config_member = self.member(entry["Config"], f"the config of {subject}")
            _check_named_digest(config_member, entry["Config"])
            image = self._image_spec(
                config_member, [refs.normalize_reference(tag) for tag in tags], subject
            )
            members = []
            for layer in layers:
                layer_member = self.member(layer, f"a layer of {subject}")
                _check_named_digest(layer_member, layer)
                members.append(layer_member)
            images.append(self._attach_layers(image, members, subject))
        return images

    def _oci_images(self) -> list[ImageSpec]:
        index = self.json("index.json", "the OCI index")
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise HutchError("the archive's index.json has no manifests list")
        images = []
        for position, descriptor in enumerate(index["manifests"]):
            subject = f"manifest {position} of index.json"
            tags = _oci_tags(descriptor, subject)
            manifest = self._oci_manifest(descriptor, subject)
            config_member = self._descriptor_blob(
                manifest.get("config"), f"the config of {subject}"
            )
            image = self._image_spec(config_member, tags, subject)
            layer_descriptors = manifest.get("layers")
            if not isinstance(layer_descriptors, list):
                raise HutchError(f"{subject} has no layers list")
            members = [
                self._descriptor_blob(layer, f"layer {number} of {subject}")
                for number, layer in enumerate(layer_descriptors)
            ]
            images.append(self._attach_layers(image, members, subject))
        return merge_same_images(images)

    def _oci_manifest(self, descriptor: Any, subject: str) -> dict[str, Any]:
        for _ in range(_MAX_LINK_HOPS):
            member = self._descriptor_blob(descriptor, subject)
            document = parse_json(
                read_capped(member.path, self.limits.max_json_bytes, subject), subject
            )
            if not isinstance(document, dict):
                raise HutchError(f"{subject} is not a JSON object")
            media_type = document.get("mediaType") or descriptor.get("mediaType")
            if media_type not in _INDEX_TYPES and "manifests" not in document:
                return document
            descriptor = _pick_platform(document, subject)
        raise HutchError(f"{subject} nests indexes too deeply")

    def _descriptor_blob(self, descriptor: Any, subject: str) -> ArchiveMember:
        if not isinstance(descriptor, dict) or not isinstance(
            descriptor.get("digest"), str
        ):
            raise HutchError(f"{subject} has no digest")
        hex_digest = split_digest(descriptor["digest"], subject)
        member = self.member(f"blobs/sha256/{hex_digest}", subject)
        if member.digest != hex_digest:
            raise HutchError(
                f"{subject}: blob sha256:{hex_digest} has the digest "
                f"sha256:{member.digest}: it is corrupt"
            )
        size = descriptor.get("size")
        if isinstance(size, int) and size != member.size:
            raise HutchError(
                f"{subject}: blob sha256:{hex_digest} has {member.size} bytes, not {size}"
            )
        return member

    def _image_spec(
        self, config_member: ArchiveMember, tags: list[str], subject: str
    ) -> ImageSpec:
        config = read_capped(
            config_member.path, self.limits.max_json_bytes, f"the config of {subject}"
        )
        return ImageSpec(config, config_member.digest, tags)

    def _attach_layers(
        self, image: ImageSpec, members: list[ArchiveMember], subject: str
    ) -> ImageSpec:
        config = parse_json(image.config, f"the config of {subject}")
        rootfs = config.get("rootfs") if isinstance(config, dict) else None
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list):
            raise HutchError(f"the config of {subject} has no rootfs.diff_ids")
        if len(diff_ids) != len(members):
            raise HutchError(
                f"{subject} lists {len(members)} layers but its config has {len(diff_ids)} diff_ids"
            )
        if len(members) > self.limits.max_layers:
            raise HutchError(
                f"{subject} has {len(members)} layers, more than the limit of "
                f"{self.limits.max_layers}"
            )
        for member, diff_id in zip(members, diff_ids, strict=True):
            image.layers.append(
                LayerSpec(
                    member, split_digest(str(diff_id), f"the config of {subject}")
                )
            )
        return image


def _check_named_digest(member: ArchiveMember, name: str) -> None:
    """Check a member whose name carries its digest: blobs/sha256/<hex> or <hex>.json."""
    stem = name.rsplit("/", 1)[-1].removesuffix(".json")
    named = name.startswith("blobs/sha256/") or name.endswith(".json")
    if named and is_hex_digest(stem) and stem != member.digest:
        raise HutchError(
            f"the archive member {quoted(name)} has the digest "
            f"sha256:{member.digest}: it is corrupt"
        )


def _oci_tags(descriptor: Any, subject: str) -> list[str]:
    if not isinstance(descriptor, dict):
        raise HutchError(f"{subject} is not a JSON object")
    annotations = descriptor.get("annotations") or {}
    name = annotations.get("io.containerd.image.name") or annotations.get(
        "org.opencontainers.image.ref.name"
    )
    if not isinstance(name, str) or not name:
        return []
    # A bare ref.name such as "latest" is only a tag, with no repository to put it in.
    if "/" not in name and ":" not in name:
        return []
    return [refs.normalize_reference(name)]


def _pick_platform(index: dict[str, Any], subject: str) -> Any:
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        raise HutchError(f"{subject} is an empty image index")
    if len(manifests) == 1:
        return manifests[0]
    for descriptor in manifests:
        platform = descriptor.get("platform") if isinstance(descriptor, dict) else None
        if (
            isinstance(platform, dict)
            and platform.get("os") == "linux"
            and platform.get("architecture") == host_architecture()
        ):
            return descriptor
    raise HutchError(f"{subject} has no image for linux/{host_architecture()}")


def merge_same_images(images: Iterable[ImageSpec]) -> list[ImageSpec]:
    merged: dict[str, ImageSpec] = {}
    for image in images:
        if image.config_digest in merged:
            merged[image.config_digest].tags.extend(
                tag for tag in image.tags if tag not in merged[image.config_digest].tags
            )
        else:
            merged[image.config_digest] = image
    return list(merged.values())
