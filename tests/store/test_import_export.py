"""import -> images -> export, tags and rmi, on a real busybox root filesystem."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from hutch.errors import HutchError
from hutch.store import Store

from .helpers import make_tar, tar_entry, tar_members


def import_bytes(
    store: Store,
    data: bytes,
    ref: str | None = "test",
    changes: list[str] | None = None,
):
    return store.import_tar(io.BytesIO(data), ref=ref, changes=changes or [])


def export_bytes(store: Store, image, upper: Path | None = None) -> bytes:
    out = io.BytesIO()
    store.export(image, upper, out)
    return out.getvalue()


def test_import_export_round_trip(store: Store, busybox_tar: Path) -> None:
    with open(busybox_tar, "rb") as source:
        image = store.import_tar(source, ref="busybox", changes=[])
    assert [item.id for item in store.images()] == [image.id]
    assert image.repo_tags == ["busybox:latest"]
    assert image.size == busybox_tar.stat().st_size
    assert image.diff_ids == [image.config["rootfs"]["diff_ids"][0]]
    assert image.layer_dirs[0].is_dir()
    assert (image.layer_dirs[0] / "bin" / "busybox").is_file()

    original = tar_members(busybox_tar.read_bytes())
    exported = tar_members(export_bytes(store, image))
    assert sorted(exported) == sorted(original)
    for name, (kind, mode, content, linkname) in original.items():
        assert exported[name] == (kind, mode, content, linkname), name


def test_import_keeps_file_kinds(store: Store) -> None:
    data = make_tar(
        [
            tar_entry("./", tarfile.DIRTYPE, mode=0o755),
            tar_entry("./bin/", tarfile.DIRTYPE, mode=0o755),
            tar_entry("./bin/su", data=b"setuid", mode=0o4755),
            tar_entry("./bin/link", tarfile.LNKTYPE, linkname="bin/su"),
            tar_entry("./abs", tarfile.SYMTYPE, linkname="/etc/passwd"),
            tar_entry("./dangling", tarfile.SYMTYPE, linkname="no/such/file"),
            tar_entry("./fifo", tarfile.FIFOTYPE, mode=0o600),
            tar_entry("./ro/", tarfile.DIRTYPE, mode=0o555),
            tar_entry("./ro/file", data=b"inside a read-only dir", mode=0o400),
            tar_entry("./" + "d" * 120 + "/" + "f" * 200, data=b"long name"),
            tar_entry("./xattr", data=b"x", pax={"SCHILY.xattr.user.note": "kept"}),
        ]
    )

    image = import_bytes(store, data)

    root = image.layer_dirs[0]
    assert stat.S_IMODE(os.lstat(root / "bin" / "su").st_mode) == 0o4755
    assert (
        os.lstat(root / "bin" / "su").st_ino == os.lstat(root / "bin" / "link").st_ino
    )
    assert os.readlink(root / "abs") == "/etc/passwd"
    assert os.readlink(root / "dangling") == "no/such/file"
    assert stat.S_ISFIFO(os.lstat(root / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(root / "ro").st_mode) == 0o555
    assert (root / "ro" / "file").read_bytes() == b"inside a read-only dir"
    assert os.lstat(root / "bin" / "su").st_mtime == 1_600_000_000
    assert (root / ("d" * 120) / ("f" * 200)).read_bytes() == b"long name"
    assert os.getxattr(root / "xattr", "user.note") == b"kept"

    exported = tar_members(export_bytes(store, image))
    assert exported["ro/file"][2] == b"inside a read-only dir"
    # Export emits names in sorted order, so the first name of the pair carries the data.
    assert exported["bin/link"][2] == b"setuid"
    assert exported["bin/su"][0] == tarfile.LNKTYPE.decode()
    assert exported["bin/su"][3] == "bin/link"


def test_import_gzip_detected_by_bytes(store: Store, busybox_tar: Path) -> None:
    compressed = gzip.compress(busybox_tar.read_bytes())
    image = import_bytes(store, compressed)
    # The diff id is the digest of the uncompressed tar, as in Docker.
    plain = import_bytes(store, busybox_tar.read_bytes(), ref="plain")
    assert image.diff_ids == plain.diff_ids


def test_import_changes(store: Store, busybox_tar: Path) -> None:
    changes = [
        'CMD ["/bin/sh"]',
        "ENTRYPOINT echo hi",
        "ENV A=1",
        "WORKDIR /tmp",
        "USER nobody",
        "LABEL k=v",
        "EXPOSE 8080",
        "STOPSIGNAL SIGTERM",
    ]
    image = store.import_tar(
        open(busybox_tar, "rb"), ref="changed", changes=changes, message="from test"
    )
    config = image.config["config"]
    assert config["Cmd"] == ["/bin/sh"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "echo hi"]
    assert config["Env"] == ["A=1"]
    assert config["WorkingDir"] == "/tmp"
    assert config["User"] == "nobody"
    assert config["Labels"] == {"k": "v"}
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    assert config["StopSignal"] == "SIGTERM"
    assert image.config["history"][-1]["comment"] == "from test"
    assert store.image("changed").config == image.config


def test_import_bad_change_stores_nothing(store: Store, busybox_tar: Path) -> None:
    with pytest.raises(HutchError, match="invalid change"):
        store.import_tar(open(busybox_tar, "rb"), ref="x", changes=["RUN rm -rf /"])
    assert store.images() == []


def test_image_lookup(store: Store, busybox_tar: Path) -> None:
    image = store.import_tar(
        open(busybox_tar, "rb"), ref="localhost/lookup:v1", changes=[]
    )
    assert store.image("localhost/lookup:v1").id == image.id
    assert store.image("lookup:v1").id == image.id
    assert store.image(image.id).id == image.id
    assert store.image(f"sha256:{image.id}").id == image.id
    assert store.image(image.id[:4]).id == image.id
    for missing in ("lookup", "other:v1", "0000000", "sha256:0000"):
        with pytest.raises(HutchError, match=f"image not found: {missing}"):
            store.image(missing)
    with pytest.raises(HutchError, match="invalid image name"):
        store.image("Bad:Name!")


def test_tag_and_rmi(store: Store, busybox_tar: Path) -> None:
    image = store.import_tar(open(busybox_tar, "rb"), ref="first", changes=[])
    store.tag("first", "second:v2")
    assert store.image("second:v2").id == image.id
    assert sorted(store.image(image.id).repo_tags) == ["first:latest", "second:v2"]
    with pytest.raises(HutchError, match="invalid image name"):
        store.tag("first", "UPPER")

    with pytest.raises(HutchError, match="remove them one by one or use --force"):
        store.remove_image(image.id, in_use=set())
    assert store.remove_image("first", in_use=set()) == ["Untagged: first:latest"]
    assert store.image(image.id).repo_tags == ["second:v2"]

    with pytest.raises(HutchError, match="a container uses image"):
        store.remove_image("second:v2", in_use={image.id})
    assert store.image("second:v2").id == image.id

    layer_dir = image.layer_dirs[0].parent
    assert store.remove_image("second:v2", in_use=set()) == [
        "Untagged: second:v2",
        f"Deleted: sha256:{image.id}",
    ]
    assert store.images() == []
    assert not layer_dir.exists()
    assert sorted(p.name for p in store.layout.blobs.iterdir()) == []


def test_rmi_keeps_shared_layers(store: Store, busybox_tar: Path) -> None:
    first = store.import_tar(open(busybox_tar, "rb"), ref="one", changes=[])
    second = store.import_tar(open(busybox_tar, "rb"), ref="two", changes=["CMD sh"])
    assert first.diff_ids == second.diff_ids
    store.remove_image("one", in_use=set())
    assert second.layer_dirs[0].is_dir()
    assert store.image("two").layer_dirs[0].is_dir()


def test_rmi_force_in_use_only_untags(store: Store, busybox_tar: Path) -> None:
    image = store.import_tar(open(busybox_tar, "rb"), ref="used", changes=[])
    lines = store.remove_image("used", in_use={f"sha256:{image.id}"}, force=True)
    assert lines == ["Untagged: used:latest"]
    assert store.image(image.id).repo_tags == []
    assert image.layer_dirs[0].is_dir()


def test_tag_moves_between_images(store: Store, busybox_tar: Path) -> None:
    old = store.import_tar(open(busybox_tar, "rb"), ref="app", changes=[])
    new = store.import_tar(open(busybox_tar, "rb"), ref="app", changes=["CMD true"])
    assert store.image("app").id == new.id
    assert store.image(old.id).repo_tags == []


def test_store_root_checks(tmp_path: Path) -> None:
    root = tmp_path / "private"
    Store.open(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    root.chmod(0o770)
    with pytest.raises(HutchError, match="chmod 700"):
        Store.open(root)
    root.chmod(0o700)
    link = tmp_path / "link"
    link.symlink_to(root)
    with pytest.raises(HutchError, match="symlink"):
        Store.open(link)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(HutchError, match="other users can write to"):
        Store.open(open_dir / "store")


def test_store_open_clears_stale_scratch(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    stale = store.layout.tmp / "load-dead"
    (stale / "deep").mkdir(parents=True)
    (stale / ".lock").write_text("")
    Store.open(tmp_path / "store")
    assert not stale.exists()


def test_default_root(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() == 0:
        assert Store.default_root() == Path("/var/lib/hutch")
    else:
        monkeypatch.setenv("XDG_DATA_HOME", "/somewhere")
        assert Store.default_root() == Path("/somewhere/hutch")
