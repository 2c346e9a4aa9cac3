"""The image store: images, tags, import, commit, export, save and load.

Every operation that adds content builds it in a scratch directory under
tmp/, checks every digest there, and only then publishes it: blobs and layer
directories are renamed into place, and images.json is replaced last, under
the store lock. A failure before that point leaves the store untouched, and a
failure while publishing removes what was already moved.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from hutch.errors import HutchError
from hutch.store import config as image_config
from hutch.store import refs as names
from hutch.store.layout import (
    CHUNK_SIZE,
    DEFAULT_LIMITS,
    HEX_DIGITS,
    Layout,
    Limits,
    default_root,
    is_hex_digest,
    read_capped,
    remove_tree,
    split_digest,
)

# Opening the store and looking up an image need none of the modules that read
# and write tars and compressed streams (tarfile, gzip, lzma, bz2, zlib and
# hutch's own), so the methods that handle content import them when called.
if TYPE_CHECKING:
    from hutch.store import archive

logger = logging.getLogger(__name__)

MIN_ID_PREFIX = 4


@dataclass
class Image:
    """A stored image. diff_ids are "sha256:<hex>" and layer_dirs are diff dirs, bottom first."""

    id: str  # sha256 hex of the config blob
    repo_tags: list[str]
    config: dict[str, Any]
    diff_ids: list[str]
    layer_dirs: list[Path]
    created: str  # RFC 3339
    size: int  # bytes of the uncompressed layer tars

    @property
    def digest(self) -> str:
        return f"sha256:{self.id}"


def _import_content_modules() -> None:
    """Import every module that reads archives, layers or container trees.

    Each method that handles content calls this before it reads any, so no module
    is first imported while an untrusted tree is open.
    """
    from hutch.store import archive, layers  # noqa: F401


class _Staging:
    """Blobs and layer directories prepared in a scratch directory, waiting to be published."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.blobs: dict[str, Path] = {}
        self.layers: dict[str, Path] = {}
        self.manifests: dict[str, str] = {}  # image id -> manifest blob hex
        self.required_layers: set[str] = set()  # layers already in the store, reused
        self.warned: set[str] = set()  # warnings logged so far, shared by all layers
        self._counter = itertools.count()

    def new_name(self, kind: str) -> str:
        return f"{kind}-{next(self._counter)}"

    def add_bytes(self, data: bytes) -> str:
        from hutch.store.blobs import new_temp_file

        hex_digest = hashlib.sha256(data).hexdigest()
        path = self.scratch / self.new_name("blob")
        with new_temp_file(self.scratch, path.name) as file:
            file.write(data)
        self.blobs[hex_digest] = path
        return hex_digest


class Store:
    """An image store rooted at one directory, whose files layout.py describes."""

    def __init__(self, layout: Layout, limits: Limits) -> None:
        self.layout = layout
        self.limits = limits

    @classmethod
    def open(cls, root: Path, *, limits: Limits = DEFAULT_LIMITS) -> Store:
        """Create or validate the store at ROOT (0700, owned by the caller, no symlink)."""
        layout = Layout(Path(os.path.abspath(root)))
        layout.prepare()
        store = cls(layout, limits)
        store._remove_unreferenced()
        return store

    @staticmethod
    def default_root() -> Path:
        return default_root()

    # -- queries ---------------------------------------------------------------

    def images(self) -> list[Image]:
        """Return every image, newest first."""
        records = self.layout.read_records()["images"]
        images = [
            self._load_image(image_id, record) for image_id, record in records.items()
        ]
        return sorted(images, key=lambda image: (image.created, image.id), reverse=True)

    def image(self, ref: str) -> Image:
        """Return the image that REF names: NAME[:TAG], an id, sha256:<id> or an id prefix."""
        records = self.layout.read_records()["images"]
        image_id = _resolve(records, ref)
        return self._load_image(image_id, records[image_id])

    def _load_image(self, image_id: str, record: dict[str, Any]) -> Image:
        subject = f"the config of image {image_id[:12]}"
        try:
            data = read_capped(
                self.layout.blob(image_id), self.limits.max_json_bytes, subject
            )
        except FileNotFoundError:
            raise HutchError(
                f"{subject} is missing from the store: remove the image with rmi --force"
            ) from None
        parsed = json.loads(data)
        if not isinstance(parsed.get("config"), dict):
            parsed["config"] = {}  # callers read config["config"] without checking
        diff_ids = [str(item) for item in parsed.get("rootfs", {}).get("diff_ids", [])]
        hexes = [split_digest(item, subject) for item in diff_ids]
        size = sum(_layer_size(self.layout.layer(hex_digest)) for hex_digest in hexes)
        return Image(
            id=image_id,
            repo_tags=list(record.get("tags", [])),
            config=parsed,
            diff_ids=diff_ids,
            layer_dirs=[self.layout.diff(hex_digest) for hex_digest in hexes],
            created=str(parsed.get("created", "")),
            size=size,
        )

    # -- names -----------------------------------------------------------------

    def tag(self, ref: str, new_ref: str) -> None:
        """Give the image REF the name NEW_REF, taking it from any image that had it."""
        name = names.normalize_reference(new_ref)
        with self.layout.locked():
            records = self.layout.read_records()
            image_id = _resolve(records["images"], ref)
            _assign_tags(records["images"], image_id, [name])
            self.layout.write_records(records)

    def remove_image(
        self, ref: str, *, in_use: set[str], force: bool = False
    ) -> list[str]:
        """Untag or delete the image REF and the layers no other image uses.

        REF given as a name removes that name, and deletes the image when it was its last
        one. REF given as an id deletes the image; with several names that needs FORCE.
        An image whose id is in IN_USE is never deleted without FORCE. With FORCE it loses
        all its names but stays, with its layers, as Docker does, so the containers on it
        keep working.
        """
        in_use_ids = {item.removeprefix("sha256:") for item in in_use}
        with self.layout.locked():
            records = self.layout.read_records()
            images = records["images"]
            image_id = _resolve(images, ref)
            tags: list[str] = images[image_id].get("tags", [])
            named = _matching_tag(tags, ref)
            lines: list[str] = []
            if named is not None and len(tags) > 1:
                tags.remove(named)
                self.layout.write_records(records)
                return [f"Untagged: {named}"]
            if named is None and len(tags) > 1 and not force:
                raise HutchError(
                    f"cannot remove image {image_id[:12]}: it has the names {', '.join(tags)}, so "
                    "remove them one by one or use --force"
                )
            if image_id in in_use_ids:
                if not force:
                    raise HutchError(
                        f"cannot remove image {ref}: a container uses image {image_id[:12]}, so "
                        "remove the container first or use --force"
                    )
                lines = [f"Untagged: {tag}" for tag in tags]
                images[image_id]["tags"] = []
                self.layout.write_records(records)
                return lines
            lines = [f"Untagged: {tag}" for tag in tags]
            record = images.pop(image_id)
            self.layout.write_records(records)
            lines.append(f"Deleted: sha256:{image_id}")
            self._delete_unused(image_id, record, images)
            return lines

    def _delete_unused(
        self, image_id: str, record: dict[str, Any], remaining: dict[str, Any]
    ) -> None:
        in_use: set[str] = set()
        for other_id in remaining:
            in_use.update(self._layer_hexes(other_id))
            in_use.add(other_id)
            in_use.add(remaining[other_id].get("manifest", ""))
        layers = self._layer_hexes(image_id)
        for blob in (image_id, record.get("manifest", "")):
            if blob and blob not in in_use:
                self.layout.blob(blob).unlink(missing_ok=True)
        for hex_digest in layers:
            if hex_digest not in in_use:
                remove_tree(self.layout.layer(hex_digest))
                self.layout.blob(hex_digest).unlink(missing_ok=True)

    def _layer_hexes(self, image_id: str) -> list[str]:
        try:
            data = read_capped(
                self.layout.blob(image_id),
                self.limits.max_json_bytes,
                "an image config",
            )
        except FileNotFoundError:
            return []
        diff_ids = json.loads(data).get("rootfs", {}).get("diff_ids", [])
        return [item.removeprefix("sha256:") for item in diff_ids]

    # -- import and commit -----------------------------------------------------

    def import_tar(
        self,
        src: BinaryIO,
        *,
        ref: str | None,
        changes: list[str],
        message: str | None = None,
    ) -> Image:
        """Make a one-layer image from the root filesystem tar read from SRC.

        The tar may be plain, gzip, xz, bzip2 or zstd, detected from its first bytes.
        """
        _import_content_modules()
        name = names.normalize_reference(ref) if ref else None
        image_config.apply_changes(
            {}, changes
        )  # reject bad lines before reading the tar
        with self.layout.scratch("import") as scratch:
            staging = _Staging(scratch)
            present = self._find_stored_layer(src)
            if present is not None:
                diff_id, size = present
                staging.required_layers.add(diff_id)
            else:
                blob, diff_id, size = self._write_scratch_blob(
                    staging, src, "the import tar"
                )
                self._unpack_layer(staging, blob, diff_id, size, "the import tar")
            created = image_config.now_rfc3339()
            config = image_config.new_config(
                f"sha256:{diff_id}", created, message or ""
            )
            config = image_config.apply_changes(config, changes)
            image_id = self._stage_image(staging, config, [(diff_id, size)])
            self._publish(
                staging,
                lambda images: _add_image(
                    images, image_id, staging, [name] if name else []
                ),
            )
        return self.image(image_id)

    def commit(
        self,
        base: Image,
        upper: Path,
        *,
        ref: str | None,
        changes: list[str],
        config: dict[str, Any] | None = None,
        author: str = "",
        message: str = "",
    ) -> Image:
        """Make a new image of BASE's layers plus one layer of the changes in UPPER.

        UPPER is an overlayfs upper directory. Its whiteouts and opaque directories
        become ".wh." members of the new layer tar.
        NOTE: UPPER is read as it is, so the caller must stop or freeze a running
        container first to get a consistent layer.
        """
        _import_content_modules()
        from hutch.store.blobs import HashingWriter, new_temp_file
        from hutch.store.layers import write_diff_tar

        name = names.normalize_reference(ref) if ref else None
        image_config.apply_changes({}, changes)
        if len(base.diff_ids) + 1 > self.limits.max_layers:
            raise HutchError(
                f"cannot commit on image {base.id[:12]}: it already has {len(base.diff_ids)} layers"
            )
        with self.layout.scratch("commit") as scratch:
            staging = _Staging(scratch)
            staging.required_layers.update(
                item.removeprefix("sha256:") for item in base.diff_ids
            )
            blob_name = staging.new_name("blob")
            with new_temp_file(scratch, blob_name) as blob_file:
                writer = HashingWriter(blob_file)
                write_diff_tar(upper, writer)  # type: ignore[arg-type]
            diff_id, size = writer.hash.hexdigest(), writer.size
            self._unpack_layer(
                staging, scratch / blob_name, diff_id, size, "the committed layer"
            )
            created = image_config.now_rfc3339()
            new_config = _commit_config(
                base.config, config, created, author, message, diff_id
            )
            new_config = image_config.apply_changes(new_config, changes)
            layers = [
                (item.removeprefix("sha256:"), _layer_size(path.parent))
                for item, path in zip(base.diff_ids, base.layer_dirs, strict=True)
            ]
            image_id = self._stage_image(
                staging, new_config, [*layers, (diff_id, size)]
            )
            self._publish(
                staging,
                lambda images: _add_image(
                    images, image_id, staging, [name] if name else []
                ),
            )
        return self.image(image_id)

    def export(self, image: Image, upper: Path | None, out: BinaryIO) -> None:
        """Write the merged filesystem of IMAGE's layers and UPPER to OUT as one tar."""
        _import_content_modules()
        from hutch.store.layers import write_merged_tar

        write_merged_tar(image.layer_dirs, upper, out)

    # -- save and load ---------------------------------------------------------

    def save(
        self,
        refs: list[str],
        out: BinaryIO,
        *,
        fmt: str = "docker-archive",
    ) -> None:
        """Write the images REFS name to OUT as one docker-archive or oci-archive.

        An image named by NAME[:TAG] carries that name in the archive. One named by id
        carries none, as with docker save.
        """
        _import_content_modules()
        from hutch.store import archive

        if fmt not in archive.FORMATS:
            raise HutchError(
                f"unknown archive format {fmt!r}: use one of {', '.join(archive.FORMATS)}"
            )
        if not refs:
            raise HutchError("save needs at least one image")
        records = self.layout.read_records()["images"]
        chosen: dict[str, list[str]] = {}
        for ref in refs:
            image_id = _resolve(records, ref)
            tags = chosen.setdefault(image_id, [])
            tag = _matching_tag(records[image_id].get("tags", []), ref)
            if tag is not None and tag not in tags:
                tags.append(tag)
        saved = []
        for image_id, tags in chosen.items():
            image = self._load_image(image_id, records[image_id])
            manifest_hex = records[image_id]["manifest"]
            saved.append(
                archive.SavedImage(
                    id=image_id,
                    tags=tags,
                    config_path=self.layout.blob(image_id),
                    manifest_path=self.layout.blob(manifest_hex),
                    manifest_digest=manifest_hex,
                    layers=[
                        (
                            item.removeprefix("sha256:"),
                            self.layout.blob(item.removeprefix("sha256:")),
                        )
                        for item in image.diff_ids
                    ],
                    mtime=image_config.rfc3339_to_epoch(image.created),
                )
            )
        archive.write_archive(saved, out, fmt)

    def load(self, src: BinaryIO) -> list[str]:
        """Add the images of a docker-archive or oci-archive read from SRC.

        Return the report lines: "Loaded image: NAME", or "Loaded image ID: sha256:…"
        for an image without names.
        """
        _import_content_modules()
        from hutch.store import archive
        from hutch.store.blobs import (
            close_stream,
            compression_of,
            open_decompressed,
            regular_file_position,
        )

        with self.layout.scratch("load") as scratch:
            members = scratch / "members"
            members.mkdir(mode=0o700)
            reader = archive.ArchiveReader(
                members, self.limits, self._stored_layer_blob
            )
            located = regular_file_position(src)
            if located is not None and not compression_of(
                os.pread(located[0], 6, located[1])
            ):
                reader.read(src, located)
            else:
                stream = open_decompressed(src, "the archive")
                try:
                    reader.read(stream)
                finally:
                    close_stream(stream)
            specs = archive.merge_same_images(reader.images())
            staging = _Staging(scratch)
            loaded: list[tuple[str, list[str]]] = []
            for number, spec in enumerate(specs):
                loaded.append(
                    (self._stage_loaded_image(staging, spec, number), spec.tags)
                )

            def update(images: dict[str, Any]) -> None:
                for image_id, tags in loaded:
                    _add_image(images, image_id, staging, tags)

            self._publish(staging, update)
        lines: list[str] = []
        for image_id, tags in loaded:
            lines.extend(f"Loaded image: {tag}" for tag in tags)
            if not tags:
                lines.append(f"Loaded image ID: sha256:{image_id}")
        return lines

    def _stage_loaded_image(
        self, staging: _Staging, spec: archive.ImageSpec, number: int
    ) -> str:
        subject = f"image {number} of the archive"
        config = json.loads(spec.config)
        if not isinstance(config, dict):
            raise HutchError(f"the config of {subject} is not a JSON object")
        layers = []
        for position, layer in enumerate(spec.layers):
            layer_subject = (
                f"layer {position} (sha256:{layer.expected_diff_id[:12]}) of {subject}"
            )
            diff_id, size = self._stage_loaded_layer(staging, layer, layer_subject)
            if diff_id != layer.expected_diff_id:
                raise HutchError(
                    f"{layer_subject} has the content digest sha256:{diff_id}, "
                    "not the one its config lists: the archive is corrupt"
                )
            layers.append((diff_id, size))
        staging.add_bytes(spec.config)
        manifest = image_config.build_manifest(
            f"sha256:{spec.config_digest}",
            len(spec.config),
            [(f"sha256:{d}", s) for d, s in layers],
        )
        staging.manifests[spec.config_digest] = staging.add_bytes(
            image_config.canonical_json(manifest)
        )
        return spec.config_digest

    def _stage_loaded_layer(
        self, staging: _Staging, layer: archive.LayerSpec, subject: str
    ) -> tuple[str, int]:
        from hutch.store.blobs import (
            HashingReader,
            PeekableReader,
            close_stream,
            detect_compression,
            open_decompressed,
        )

        member = layer.member
        with open(member.path, "rb", buffering=CHUNK_SIZE) as raw:
            compressed = bool(detect_compression(PeekableReader(raw)))
        expected = layer.expected_diff_id
        if not compressed:
            # The member was hashed while it was read, and a layer tar's digest is its
            # diff id, so the bytes need no second pass.
            if member.digest == expected:
                self._unpack_layer(
                    staging, member.path, member.digest, member.size, subject
                )
            return member.digest, member.size
        with open(member.path, "rb", buffering=CHUNK_SIZE) as raw:
            stream = open_decompressed(raw, subject)
            try:
                if expected in staging.layers or self._has_layer(expected):
                    # Already present: only check that the archive's bytes are that layer.
                    staging.required_layers.add(expected)
                    reader = HashingReader(
                        stream, subject=subject, limit=self.limits.max_layer_bytes
                    )
                    reader.drain()
                    return reader.hexdigest(), reader.size
                blob, diff_id, size = self._write_blob(staging, stream, subject)
            finally:
                close_stream(stream)
        if diff_id == expected:
            self._unpack_layer(staging, blob, diff_id, size, subject)
        return diff_id, size

    # -- staging and publishing ------------------------------------------------

    def _remove_unreferenced(self) -> None:
        """Remove blobs and layers that no image references, left by a killed publish.

        Content is published and deleted only under the store lock, so while this
        process holds the lock, anything images.json does not reach is garbage.
        """
        with self.layout.locked(wait=False) as acquired:
            if not acquired:
                return  # another process is publishing, and will leave things whole
            referenced: set[str] = set()
            try:
                for image_id, record in self.layout.read_records()["images"].items():
                    if not self.layout.blob(image_id).is_file():
                        return  # a damaged record: keep everything for inspection
                    referenced.update((image_id, str(record.get("manifest", ""))))
                    referenced.update(self._layer_hexes(image_id))
            except (HutchError, ValueError, AttributeError):
                return
            for directory in (self.layout.blobs, self.layout.layers):
                for entry in os.scandir(directory):
                    if entry.name not in referenced:
                        logger.info("removing unreferenced %s", entry.path)
                        remove_tree(Path(entry.path))

    def _has_layer(self, hex_digest: str) -> bool:
        return (
            self.layout.diff(hex_digest).is_dir()
            and self.layout.blob(hex_digest).is_file()
        )

    def _find_stored_layer(self, source: BinaryIO) -> tuple[str, int] | None:
        """Return (diff id hex, size) when SOURCE is an uncompressed file of a stored layer.

        Only a regular file can be hashed without copying it. The stored layer is
        used, so a change to the file after it was hashed cannot matter.
        """
        from hutch.store.blobs import (
            compression_of,
            hash_file_range,
            regular_file_position,
        )

        located = regular_file_position(source)
        if located is None:
            return None
        fd, offset = located
        size = os.fstat(fd).st_size - offset
        if not CHUNK_SIZE <= size <= self.limits.max_layer_bytes:
            return None  # small, or too large: the copy reports the limit
        if compression_of(os.pread(fd, 6, offset)):
            return None
        diff_id = hash_file_range(fd, offset, size)
        if not diff_id or not self._has_layer(diff_id):
            return None
        return diff_id, size

    def _stored_layer_blob(self, hex_digest: str) -> Path | None:
        return self.layout.blob(hex_digest) if self._has_layer(hex_digest) else None

    def _write_scratch_blob(
        self, staging: _Staging, source: BinaryIO, subject: str
    ) -> tuple[Path, str, int]:
        """Decompress SOURCE into a new scratch blob; return (path, sha256 hex, size)."""
        from hutch.store.blobs import close_stream, open_decompressed

        stream = open_decompressed(source, subject)
        try:
            return self._write_blob(staging, stream, subject)
        finally:
            close_stream(stream)

    def _write_blob(
        self, staging: _Staging, stream: BinaryIO, subject: str
    ) -> tuple[Path, str, int]:
        from hutch.store.blobs import write_blob

        path = staging.scratch / staging.new_name("blob")
        hex_digest, size = write_blob(
            stream, path, limit=self.limits.max_layer_bytes, subject=subject
        )
        return path, hex_digest, size

    def _unpack_layer(
        self, staging: _Staging, blob: Path, diff_id: str, size: int, subject: str
    ) -> None:
        """Stage the layer tar BLOB, whose digest is DIFF_ID, and extract it when it is new.

        A layer already in the store or staged is not extracted again: the same digest
        means the same tar.
        """
        from hutch.store.extract import extract_layer

        if diff_id in staging.layers:
            return
        if self._has_layer(diff_id):
            staging.required_layers.add(diff_id)
            return
        layer_dir = staging.scratch / staging.new_name("layer")
        layer_dir.mkdir(mode=0o700)
        (layer_dir / "diff").mkdir(mode=0o700)
        extract_layer(blob, layer_dir / "diff", self.limits, subject, staging.warned)
        (layer_dir / "size").write_text(f"{size}\n")
        staging.layers[diff_id] = layer_dir
        staging.blobs[diff_id] = blob

    def _stage_image(
        self, staging: _Staging, config: dict[str, Any], layers: list[tuple[str, int]]
    ) -> str:
        config_bytes = image_config.canonical_json(config)
        image_id = staging.add_bytes(config_bytes)
        manifest = image_config.build_manifest(
            f"sha256:{image_id}",
            len(config_bytes),
            [(f"sha256:{digest}", size) for digest, size in layers],
        )
        staging.manifests[image_id] = staging.add_bytes(
            image_config.canonical_json(manifest)
        )
        return image_id

    def _publish(
        self, staging: _Staging, update: Callable[[dict[str, Any]], None]
    ) -> None:
        """Move staged blobs and layers into the store, then rewrite images.json."""
        moved: list[Path] = []
        with self.layout.locked():
            try:
                for hex_digest, path in staging.blobs.items():
                    target = self.layout.blob(hex_digest)
                    if not target.exists():
                        os.rename(path, target)
                        moved.append(target)
                for hex_digest, path in staging.layers.items():
                    target = self.layout.layer(hex_digest)
                    if not target.exists():
                        os.rename(path, target)
                        moved.append(target)
                for hex_digest in staging.required_layers:
                    if (
                        not self._has_layer(hex_digest)
                        and hex_digest not in staging.layers
                    ):
                        raise HutchError(
                            f"layer sha256:{hex_digest[:12]} was removed from the store "
                            "while this operation ran: run it again"
                        )
                records = self.layout.read_records()
                update(records["images"])
                self.layout.write_records(records)
            except BaseException:
                for path in reversed(moved):
                    remove_tree(path)
                raise


# -- records --------------------------------------------------------------------


def _resolve(images: dict[str, Any], ref: str) -> str:
    """Return the id of the image REF names, or raise "image not found: REF"."""
    if ref.startswith("sha256:"):
        return _resolve_id(images, ref[len("sha256:") :], ref)
    if is_hex_digest(ref) and ref in images:
        return ref
    try:
        reference = names.parse_reference(ref)
    except HutchError:
        reference = None
    if reference is not None:
        candidates = [str(reference)]
        if not reference.has_domain:
            candidates.append(f"localhost/{reference}")
        for candidate in candidates:
            for image_id, record in images.items():
                if candidate in record.get("tags", []):
                    return image_id
    if len(ref) >= MIN_ID_PREFIX and set(ref) <= HEX_DIGITS:
        return _resolve_id(images, ref, ref)
    if reference is None:
        names.parse_reference(ref)  # raises HutchError describing the invalid name
    raise HutchError(f"image not found: {ref}")


def _resolve_id(images: dict[str, Any], prefix: str, ref: str) -> str:
    if len(prefix) < MIN_ID_PREFIX or not set(prefix) <= HEX_DIGITS:
        raise HutchError(f"image not found: {ref}")
    matches = [image_id for image_id in images if image_id.startswith(prefix)]
    if not matches:
        raise HutchError(f"image not found: {ref}")
    if len(matches) > 1:
        raise HutchError(
            f"image id prefix {ref} is ambiguous: it matches {len(matches)} images, "
            "so give more digits"
        )
    return matches[0]


def _matching_tag(tags: list[str], ref: str) -> str | None:
    """Return the tag among TAGS that REF names, or None when REF is an id."""
    try:
        reference = names.parse_reference(ref)
    except HutchError:
        return None
    for candidate in (str(reference), f"localhost/{reference}"):
        if candidate in tags:
            return candidate
    return None


def _assign_tags(images: dict[str, Any], image_id: str, tags: list[str]) -> None:
    for record in images.values():
        record["tags"] = [tag for tag in record.get("tags", []) if tag not in tags]
    own = images[image_id].setdefault("tags", [])
    own.extend(tag for tag in tags if tag not in own)


def _add_image(
    images: dict[str, Any], image_id: str, staging: _Staging, tags: list[str]
) -> None:
    record = images.setdefault(image_id, {"tags": []})
    record["manifest"] = staging.manifests[image_id]
    _assign_tags(images, image_id, tags)


def _commit_config(
    base: dict[str, Any],
    container: dict[str, Any] | None,
    created: str,
    author: str,
    message: str,
    diff_id: str,
) -> dict[str, Any]:
    config = copy.deepcopy(base)
    for legacy in ("id", "parent", "container", "container_config", "docker_version"):
        config.pop(legacy, None)
    runtime = config.setdefault("config", {})
    runtime.update(copy.deepcopy(container or {}))
    config["created"] = created
    if author:
        config["author"] = author
    else:
        config.pop("author", None)
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), f"sha256:{diff_id}"]
    entry = {"created": created, "created_by": "hutch commit"}
    if author:
        entry["author"] = author
    if message:
        entry["comment"] = message
    config["history"] = [*config.get("history", []), entry]
    return config


def _layer_size(layer_dir: Path) -> int:
    try:
        return int((layer_dir / "size").read_text().strip())
    except (FileNotFoundError, ValueError):
        return 0
