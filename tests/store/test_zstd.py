"""zstd-compressed import tars and OCI layers, decompressed by the zstd command."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from hutch.errors import HutchError
from hutch.store import Store

from .helpers import make_tar, tar_entry, tar_members

pytestmark = pytest.mark.skipif(
    shutil.which("zstd") is None,
    reason="the zstd command is not installed (Debian package zstd)",
)
ZSTD_LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+zstd"


def zstd(data: bytes) -> bytes:
    return subprocess.run(
        ["zstd", "--quiet", "--stdout", "-3"],
        input=data,
        capture_output=True,
        check=True,
    ).stdout


def layer_tar() -> bytes:
    return make_tar(
        [
            tar_entry("etc/", tarfile.DIRTYPE),
            tar_entry("etc/hostname", data=b"zstd-layer\n"),
            tar_entry("big", data=bytes(range(256)) * 8192),
        ]
    )


def oci_archive(layer: bytes, compressed: bytes, name: str) -> bytes:
    """Return an oci-archive of one image whose only layer is COMPRESSED."""
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {
                "type": "layers",
                "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"],
            },
        }
    ).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    layer_hex = hashlib.sha256(compressed).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{config_hex}",
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": ZSTD_LAYER_TYPE,
                    "digest": f"sha256:{layer_hex}",
                    "size": len(compressed),
                }
            ],
        }
    ).encode()
    manifest_hex = hashlib.sha256(manifest).hexdigest()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": f"sha256:{manifest_hex}",
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": name},
                }
            ],
        }
    ).encode()
    return make_tar(
        [
            tar_entry("blobs/", tarfile.DIRTYPE),
            tar_entry("blobs/sha256/", tarfile.DIRTYPE),
            tar_entry(f"blobs/sha256/{config_hex}", data=config),
            tar_entry(f"blobs/sha256/{layer_hex}", data=compressed),
            tar_entry(f"blobs/sha256/{manifest_hex}", data=manifest),
            tar_entry("index.json", data=index),
            tar_entry("oci-layout", data=b'{"imageLayoutVersion": "1.0.0"}'),
        ]
    )


def test_import_zstd_tar(store: Store) -> None:
    layer = layer_tar()
    image = store.import_tar(io.BytesIO(zstd(layer)), ref="zstd", changes=[])
    # The diff id is the digest of the uncompressed tar, as for gzip.
    assert image.diff_ids == [f"sha256:{hashlib.sha256(layer).hexdigest()}"]
    assert (image.layer_dirs[0] / "etc" / "hostname").read_bytes() == b"zstd-layer\n"
    assert store.layout.blob(image.diff_ids[0][7:]).read_bytes() == layer


def test_import_zstd_file(store: Store, tmp_path: Path) -> None:
    layer = layer_tar()
    path = tmp_path / "layer.tar.zst"
    path.write_bytes(zstd(layer))
    with open(path, "rb") as source:
        image = store.import_tar(source, ref="zstd", changes=[])
    assert image.diff_ids == [f"sha256:{hashlib.sha256(layer).hexdigest()}"]


def test_load_oci_archive_zstd_layer(store: Store) -> None:
    layer = layer_tar()
    archive = oci_archive(layer, zstd(layer), "localhost/zstd:1")

    assert store.load(io.BytesIO(archive)) == ["Loaded image: localhost/zstd:1"]

    image = store.image("localhost/zstd:1")
    assert (image.layer_dirs[0] / "big").read_bytes() == bytes(range(256)) * 8192
    # The store keeps the uncompressed tar, so save writes a plain layer.
    assert store.layout.blob(image.diff_ids[0][7:]).read_bytes() == layer
    out = io.BytesIO()
    store.export(image, None, out)
    assert tar_members(out.getvalue())["etc/hostname"][2] == b"zstd-layer\n"


def test_load_zstd_layer_twice(store: Store) -> None:
    """A second load finds the layer stored and only checks the decompressed digest."""
    layer = layer_tar()
    archive = oci_archive(layer, zstd(layer), "localhost/zstd:1")
    store.load(io.BytesIO(archive))
    assert store.load(io.BytesIO(archive)) == ["Loaded image: localhost/zstd:1"]


def test_corrupt_zstd_rejected(store: Store) -> None:
    compressed = bytearray(zstd(layer_tar()))
    compressed[len(compressed) // 2] ^= 0xFF
    with pytest.raises(HutchError, match="zstd"):
        store.import_tar(io.BytesIO(bytes(compressed)), ref="bad", changes=[])
    assert store.images() == []


def test_truncated_zstd_rejected(store: Store) -> None:
    compressed = zstd(layer_tar())
    with pytest.raises(HutchError, match="corrupt or truncated"):
        store.import_tar(io.BytesIO(compressed[:-20]), ref="bad", changes=[])
    assert store.images() == []


def test_zstd_layer_with_wrong_diff_id(store: Store) -> None:
    layer = layer_tar()
    other = make_tar([tar_entry("other", data=b"not the layer the config names")])
    archive = oci_archive(layer, zstd(other), "localhost/zstd:1")
    with pytest.raises(HutchError, match="not the one its config lists"):
        store.load(io.BytesIO(archive))
    assert store.images() == []
