"""save and load: round trips, deterministic bytes, and Podman/skopeo interoperability."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest
from hutch.errors import HutchError
from hutch.store import Store
from hutch.store.config import rfc3339_to_epoch

from .helpers import make_tar, tar_entry, tar_members

# crun cannot run on this machine's hybrid cgroup layout, and rlimits above the
# hard limits fail with EPERM, so podman needs runc and explicit ulimits here.
PODMAN_RUN = (
    "run",
    "--runtime",
    "runc",
    "--network",
    "none",
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=20000:20000",
)


@pytest.fixture
def busybox_image(store: Store, busybox_tar: Path):
    with open(busybox_tar, "rb") as source:
        return store.import_tar(
            source, ref="localhost/bb:1", changes=['CMD ["/bin/sh"]', "ENV A=1"]
        )


def save_bytes(store: Store, refs: list[str], fmt: str = "docker-archive") -> bytes:
    out = io.BytesIO()
    store.save(refs, out, fmt=fmt)
    return out.getvalue()


@pytest.fixture
def podman():
    """Run podman on a throwaway store, so that the host's images are untouched."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    # podman rejects a runroot longer than 50 characters, so pytest's tmp_path is too long.
    top = Path(tempfile.mkdtemp(prefix="hutch-podman-"))
    base = [
        "podman",
        "--root",
        str(top / "root"),
        "--runroot",
        str(top / "run"),
        "--storage-driver",
        "vfs",
    ]

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=300
        )
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed: {result.stderr}")
        return result

    yield run
    run("rm", "--all", "--force", check=False)
    run("rmi", "--all", "--force", check=False)
    shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_load_round_trip(
    tmp_path: Path, store: Store, busybox_image, fmt: str
) -> None:
    data = save_bytes(store, ["localhost/bb:1"], fmt)
    other = Store.open(tmp_path / "other")
    assert other.load(io.BytesIO(data)) == ["Loaded image: localhost/bb:1"]
    loaded = other.image("localhost/bb:1")
    assert loaded.id == busybox_image.id
    assert loaded.config == busybox_image.config
    assert loaded.diff_ids == busybox_image.diff_ids
    assert os.path.samefile(
        loaded.layer_dirs[0].parent.parent.parent, tmp_path / "other"
    )
    assert (loaded.layer_dirs[0] / "bin" / "busybox").read_bytes() == Path(
        "/bin/busybox"
    ).read_bytes()
    assert other.load(io.BytesIO(data)) == ["Loaded image: localhost/bb:1"]
    assert len(other.images()) == 1


def test_save_docker_archive_layout(store: Store, busybox_image) -> None:
    data = save_bytes(store, ["localhost/bb:1"])
    diff_hex = busybox_image.diff_ids[0].removeprefix("sha256:")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        names = [member.name.rstrip("/") for member in members]
        manifest = json.load(tar.extractfile("manifest.json"))
        repositories = json.load(tar.extractfile("repositories"))
        layer = tar.extractfile(f"{diff_hex}/layer.tar").read()
    assert names == sorted(names)
    assert all(member.uid == 0 and member.gid == 0 for member in members)
    assert {member.mtime for member in members} == {
        rfc3339_to_epoch(busybox_image.created)
    }
    assert manifest == [
        {
            "Config": f"{busybox_image.id}.json",
            "RepoTags": ["localhost/bb:1"],
            "Layers": [f"{diff_hex}/layer.tar"],
        }
    ]
    assert repositories == {"localhost/bb": {"1": diff_hex}}
    assert hashlib.sha256(layer).hexdigest() == diff_hex


def test_save_is_deterministic(store: Store, busybox_image) -> None:
    for fmt in ("docker-archive", "oci-archive"):
        assert save_bytes(store, ["localhost/bb:1"], fmt) == save_bytes(
            store, [busybox_image.id[:12], "localhost/bb:1"], fmt
        )


def test_save_by_id_has_no_tags(tmp_path: Path, store: Store, busybox_image) -> None:
    data = save_bytes(store, [busybox_image.id])
    other = Store.open(tmp_path / "other")
    assert other.load(io.BytesIO(data)) == [
        f"Loaded image ID: sha256:{busybox_image.id}"
    ]


def test_save_load_through_pipes(tmp_path: Path, store: Store, busybox_image) -> None:
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def write_save() -> None:
        with os.fdopen(write_fd, "wb") as pipe:
            try:
                store.save(["localhost/bb:1"], pipe)
            except BaseException as error:  # reported by the assert below
                errors.append(error)

    writer = threading.Thread(target=write_save)
    writer.start()
    other = Store.open(tmp_path / "other")
    with os.fdopen(read_fd, "rb") as pipe:
        lines = other.load(pipe)
    writer.join()
    assert errors == []
    assert lines == ["Loaded image: localhost/bb:1"]


def test_load_gzip_archive(tmp_path: Path, store: Store, busybox_image) -> None:
    data = gzip.compress(save_bytes(store, ["localhost/bb:1"]))
    other = Store.open(tmp_path / "other")
    assert other.load(io.BytesIO(data)) == ["Loaded image: localhost/bb:1"]


def test_load_docker25_layout(tmp_path: Path, store: Store) -> None:
    """Docker 25+ writes an OCI layout with manifest.json beside it, naming blobs.

    The layer here is gzip-compressed, so compressed blobs are covered too.
    """
    layer = make_tar([tar_entry("hello.txt", data=b"hello")])
    layer_gz = gzip.compress(layer, mtime=0)
    diff_id = hashlib.sha256(layer).hexdigest()

    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        }
    ).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    layer_hex = hashlib.sha256(layer_gz).hexdigest()

    oci_manifest = json.dumps(
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
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": f"sha256:{layer_hex}",
                    "size": len(layer_gz),
                }
            ],
        }
    ).encode()
    manifest_hex = hashlib.sha256(oci_manifest).hexdigest()

    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": f"sha256:{manifest_hex}",
                    "size": len(oci_manifest),
                }
            ],
        }
    ).encode()

    docker_manifest = json.dumps(
        [
            {
                "Config": f"blobs/sha256/{config_hex}",
                "RepoTags": ["docker25:latest"],
                "Layers": [f"blobs/sha256/{layer_hex}"],
            }
        ]
    ).encode()

    archive = make_tar(
        [
            tar_entry("blobs/", tarfile.DIRTYPE),
            tar_entry("blobs/sha256/", tarfile.DIRTYPE),
            tar_entry(f"blobs/sha256/{config_hex}", data=config),
            tar_entry(f"blobs/sha256/{layer_hex}", data=layer_gz),
            tar_entry(f"blobs/sha256/{manifest_hex}", data=oci_manifest),
            tar_entry("index.json", data=index),
            tar_entry("manifest.json", data=docker_manifest),
            tar_entry("oci-layout", data=b'{"imageLayoutVersion": "1.0.0"}'),
        ]
    )

    assert store.load(io.BytesIO(archive)) == ["Loaded image: docker25:latest"]
    image = store.image("docker25")
    assert image.id == config_hex
    assert (image.layer_dirs[0] / "hello.txt").read_bytes() == b"hello"
    # The stored layer blob is the uncompressed tar, named by its diff id.
    assert store.layout.blob(diff_id).read_bytes() == layer


@pytest.mark.peer
@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_podman_loads_saved_archive(
    tmp_path: Path, store: Store, busybox_image, podman, fmt: str
) -> None:
    archive = tmp_path / f"saved-{fmt}.tar"
    with open(archive, "wb") as out:
        store.save(["localhost/bb:1"], out, fmt=fmt)
    podman("load", "-i", str(archive))
    inspected = json.loads(podman("image", "inspect", "localhost/bb:1").stdout)[0]
    assert inspected["Id"] == busybox_image.id
    assert inspected["Config"]["Cmd"] == ["/bin/sh"]
    assert "A=1" in inspected["Config"]["Env"]
    assert inspected["RootFS"]["Layers"] == busybox_image.diff_ids
    run = podman(
        *PODMAN_RUN,
        "--rm",
        "localhost/bb:1",
        "cat",
        "/etc/passwd",
    )
    assert run.stdout == "root:x:0:0:root:/root:/bin/sh\n"


@pytest.mark.peer
@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_load_podman_saved_archive(
    tmp_path: Path, store: Store, busybox_tar: Path, podman, fmt: str
) -> None:
    podman("import", str(busybox_tar), "localhost/pbase:latest")
    podman(
        *PODMAN_RUN,
        "--name",
        "maker",
        "localhost/pbase:latest",
        "sh",
        "-c",
        "rm /etc/group && mkdir -p /srv && echo made > /srv/made",
    )
    podman("commit", "maker", "localhost/pmade:latest")
    archive = tmp_path / f"podman-{fmt}.tar"
    podman("save", "--format", fmt, "-o", str(archive), "localhost/pmade:latest")

    with open(archive, "rb") as source:
        assert store.load(source) == ["Loaded image: localhost/pmade:latest"]
    image = store.image("localhost/pmade")
    assert len(image.layer_dirs) == 2
    assert (image.layer_dirs[0] / "etc" / "group").read_text() == "root:x:0:\n"
    assert (image.layer_dirs[1] / "srv" / "made").read_text() == "made\n"
    whiteout = os.lstat(image.layer_dirs[1] / "etc" / "group")
    assert stat.S_ISCHR(whiteout.st_mode)
    assert whiteout.st_rdev == 0
    out = io.BytesIO()
    store.export(image, None, out)
    members = tar_members(out.getvalue())
    assert "etc/group" not in members
    assert members["srv/made"][2] == b"made\n"
    assert "etc/passwd" in members


@pytest.mark.peer
@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_skopeo_inspects_saved_archive(
    tmp_path: Path, store: Store, busybox_image, fmt: str
) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    archive = tmp_path / "saved.tar"
    with open(archive, "wb") as out:
        store.save(["localhost/bb:1"], out, fmt=fmt)
    result = subprocess.run(
        ["skopeo", "inspect", f"{fmt}:{archive}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    inspected = json.loads(result.stdout)
    assert inspected["Layers"] == busybox_image.diff_ids
    assert inspected["Env"] == ["A=1"]
    config = subprocess.run(
        ["skopeo", "inspect", "--config", f"{fmt}:{archive}"],
        capture_output=True,
        timeout=120,
    )
    assert config.returncode == 0, config.stderr
    assert json.loads(config.stdout)["rootfs"] == busybox_image.config["rootfs"]


def test_save_unknown_format(store: Store, busybox_image) -> None:
    with pytest.raises(HutchError, match="unknown archive format"):
        save_bytes(store, ["localhost/bb:1"], "tarball")


@pytest.mark.peer
def test_load_skopeo_oci_archive(tmp_path: Path, store: Store, busybox_image) -> None:
    """skopeo writes gzip layers and names the image in org.opencontainers.image.ref.name."""
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    saved = tmp_path / "saved.tar"
    with open(saved, "wb") as out:
        store.save(["localhost/bb:1"], out)
    copied = tmp_path / "copied.tar"
    result = subprocess.run(
        [
            "skopeo",
            "copy",
            f"docker-archive:{saved}",
            f"oci-archive:{copied}:localhost/sk:2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    other = Store.open(tmp_path / "other")
    with open(copied, "rb") as source:
        assert other.load(source) == ["Loaded image: localhost/sk:2"]
    loaded = other.image("localhost/sk:2")
    assert loaded.diff_ids == busybox_image.diff_ids
    assert (loaded.layer_dirs[0] / "etc" / "passwd").read_text().startswith("root:")


def test_load_file_with_stored_layer(
    tmp_path: Path, store: Store, busybox_image
) -> None:
    """A second load from a file hashes the stored layer's member and copies nothing."""
    archive = tmp_path / "saved.tar"
    archive.write_bytes(save_bytes(store, ["localhost/bb:1"]))
    other = Store.open(tmp_path / "other")
    with open(archive, "rb") as source:
        assert other.load(source) == ["Loaded image: localhost/bb:1"]
    layer_dir = other.image("localhost/bb:1").layer_dirs[0]
    inode = os.stat(layer_dir / "bin" / "busybox").st_ino

    other.tag("localhost/bb:1", "localhost/kept:1")
    other.remove_image("localhost/bb:1", in_use=set())
    with open(archive, "rb") as source:
        assert other.load(source) == ["Loaded image: localhost/bb:1"]

    image = other.image("localhost/bb:1")
    assert image.layer_dirs[0] == layer_dir
    assert os.stat(layer_dir / "bin" / "busybox").st_ino == inode
    assert image.diff_ids == busybox_image.diff_ids
    assert sorted(image.repo_tags) == ["localhost/bb:1", "localhost/kept:1"]


def test_load_file_corrupt_stored_layer_digest(
    tmp_path: Path, store: Store, busybox_image
) -> None:
    """A changed layer member does not match the stored layer, and is rejected."""
    data = bytearray(save_bytes(store, ["localhost/bb:1"]))
    diff_id = busybox_image.diff_ids[0].removeprefix("sha256:")
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tar:
        offset = tar.getmember(f"{diff_id}/layer.tar").offset_data
    data[offset + 600_000] ^= 0x01
    archive = tmp_path / "saved.tar"
    archive.write_bytes(bytes(data))
    with open(archive, "rb") as source:
        with pytest.raises(HutchError, match="the archive is corrupt"):
            store.load(source)
    # The stored layer is untouched.
    blob = store.layout.blob(diff_id)
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == diff_id
