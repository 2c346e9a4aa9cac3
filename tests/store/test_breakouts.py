"""Hostile layer tars and archives: each is rejected, naming the member, and changes nothing.

Whatever the input, nothing may appear outside the layer directory, the
canary beside the store must keep its bytes, and the store must list exactly
what it listed before.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hutch.errors import HutchError
from hutch.store import Limits, Store

from .helpers import CANARY_TEXT, make_tar, store_listing, tar_entry

# Incompressible bytes, so that cutting the gzip stream really cuts the data.
NOISE = b"".join(hashlib.sha256(str(n).encode()).digest() for n in range(4000))


def layer_cases(canary: Path) -> dict[str, tuple[bytes, str]]:
    """Return name -> (layer tar, text the error must contain)."""
    outside = str(canary.parent)
    return {
        "dotdot": (make_tar([tar_entry("../canary", data=b"pwned")]), "'../canary'"),
        "dotdot-inside": (
            make_tar([tar_entry("a/../../canary", data=b"pwned")]),
            "'a/../../canary'",
        ),
        "absolute": (
            make_tar([tar_entry(str(canary), data=b"pwned")]),
            repr(str(canary)),
        ),
        "symlink-then-write": (
            make_tar(
                [
                    tar_entry("escape", tarfile.SYMTYPE, linkname=outside),
                    tar_entry("escape/canary", data=b"pwned"),
                ]
            ),
            "'escape/canary'",
        ),
        "symlink-dotdot-then-write": (
            make_tar(
                [
                    tar_entry("up", tarfile.SYMTYPE, linkname="../../.."),
                    tar_entry("up/canary", data=b"pwned"),
                ]
            ),
            "'up/canary'",
        ),
        "symlink-then-mkdir": (
            make_tar(
                [
                    tar_entry("escape", tarfile.SYMTYPE, linkname=outside),
                    tar_entry("escape/newdir/", tarfile.DIRTYPE),
                ]
            ),
            "'escape/newdir'",
        ),
        "hardlink-outside-absolute": (
            make_tar([tar_entry("link", tarfile.LNKTYPE, linkname=str(canary))]),
            "'link'",
        ),
        "hardlink-outside-dotdot": (
            make_tar([tar_entry("link", tarfile.LNKTYPE, linkname="../canary")]),
            "'link'",
        ),
        "hardlink-not-extracted": (
            make_tar([tar_entry("link", tarfile.LNKTYPE, linkname="etc/passwd")]),
            "not a file extracted earlier",
        ),
        "hardlink-through-symlink": (
            make_tar(
                [
                    tar_entry("escape", tarfile.SYMTYPE, linkname=outside),
                    tar_entry("link", tarfile.LNKTYPE, linkname="escape/canary"),
                ]
            ),
            "'link'",
        ),
        "hardlink-then-write": (
            make_tar(
                [
                    tar_entry("escape", tarfile.SYMTYPE, linkname=str(canary)),
                    tar_entry("hard", tarfile.LNKTYPE, linkname="escape"),
                    tar_entry("hard/x", data=b"pwned"),
                ]
            ),
            "'hard/x'",
        ),
        "file-replaces-directory": (
            make_tar(
                [
                    tar_entry("d/", tarfile.DIRTYPE),
                    tar_entry("d/f", data=b"f"),
                    tar_entry("d", data=b"x"),
                ]
            ),
            "would replace the directory",
        ),
        "empty-symlink": (
            make_tar([tar_entry("empty", tarfile.SYMTYPE, linkname="")]),
            "'empty'",
        ),
        "whiteout-dotdot": (make_tar([tar_entry(".wh..", data=b"")]), "'.wh..'"),
        "whiteout-through-symlink": (
            make_tar(
                [
                    tar_entry("escape", tarfile.SYMTYPE, linkname=outside),
                    tar_entry("escape/.wh.canary", data=b""),
                ]
            ),
            "'escape/.wh.canary'",
        ),
        "opaque-through-symlink": (
            make_tar(
                [
                    tar_entry("escape", tarfile.SYMTYPE, linkname=outside),
                    tar_entry("escape/.wh..wh..opq", data=b""),
                ]
            ),
            "'escape/.wh..wh..opq'",
        ),
        "truncated": (
            make_tar([tar_entry("big", data=b"x" * 100_000)])[:50_000],
            "'big'",
        ),
        # Files of 1 MiB or more are copied in ranges between holes, so a blob that
        # ends early must not pass for a file with a hole at its end.
        "truncated-large": (
            make_tar([tar_entry("big", data=b"x" * (3 << 20))])[: 2 << 20],
            "'big'",
        ),
        "truncated-gzip": (
            gzip.compress(make_tar([tar_entry("big", data=NOISE)]))[:50_000],
            "truncated",
        ),
        "not-a-tar": (b"this is not a tar archive at all" * 40, "tar"),
        "long-component": (
            make_tar([tar_entry("a" * 300, data=b"")]),
            "longer than 255",
        ),
    }


@pytest.fixture
def guarded(tmp_path: Path, store: Store, canary: Path):
    """Yield a check that runs an action, expects HutchError, and finds nothing changed."""
    before = store_listing(store.layout.root)
    beside = sorted(path.name for path in tmp_path.iterdir())

    def check(action: Callable[[], object], expected: str) -> HutchError:
        with pytest.raises(HutchError) as caught:
            action()
        assert expected in str(caught.value)
        assert canary.read_bytes() == CANARY_TEXT
        assert store_listing(store.layout.root) == before
        assert sorted(path.name for path in tmp_path.iterdir()) == beside
        assert store.images() == []
        return caught.value

    return check


@pytest.mark.parametrize("case", sorted(layer_cases(Path("/x/canary"))))
def test_import_rejects_hostile_layer(
    store: Store, canary: Path, guarded, case: str
) -> None:
    data, expected = layer_cases(canary)[case]
    guarded(
        lambda: store.import_tar(io.BytesIO(data), ref="hostile", changes=[]), expected
    )


@pytest.mark.parametrize("case", sorted(layer_cases(Path("/x/canary"))))
def test_load_rejects_hostile_layer(
    store: Store, canary: Path, guarded, case: str
) -> None:
    layer, expected = layer_cases(canary)[case]
    guarded(lambda: store.load(io.BytesIO(docker_archive([layer]))), expected)


def docker_archive(
    layers: list[bytes],
    tags: list[str] | None = None,
    diff_ids: list[str] | None = None,
) -> bytes:
    """Build an old-layout docker-archive of one image from raw layer tars."""
    ids = diff_ids or [
        f"sha256:{hashlib.sha256(layer).hexdigest()}" for layer in layers
    ]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": ids},
        }
    ).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    entries = [tar_entry(f"{config_hex}.json", data=config)]
    names = []
    for number, layer in enumerate(layers):
        entries.append(tar_entry(f"layer{number}/layer.tar", data=layer))
        names.append(f"layer{number}/layer.tar")
    manifest = [
        {
            "Config": f"{config_hex}.json",
            "RepoTags": tags if tags is not None else ["hostile:latest"],
            "Layers": names,
        }
    ]
    entries.append(tar_entry("manifest.json", data=json.dumps(manifest).encode()))
    return make_tar(entries)


GOOD_LAYER = make_tar([tar_entry("ok.txt", data=b"fine")])


def test_load_rejects_corrupt_layer_digest(store: Store, guarded) -> None:
    archive = docker_archive([GOOD_LAYER], diff_ids=["sha256:" + "0" * 64])
    guarded(lambda: store.load(io.BytesIO(archive)), "the archive is corrupt")


def test_load_rejects_corrupt_config_digest(store: Store, guarded) -> None:
    archive = docker_archive([GOOD_LAYER])
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        entries = [(member, tar.extractfile(member).read()) for member in tar]
    config_member = next(
        member
        for member, _ in entries
        if member.name.endswith(".json") and member.name != "manifest.json"
    )
    tampered = [
        (m, d.replace(b'"os": "linux"', b'"os": "LINUX"') if m is config_member else d)
        for m, d in entries
    ]
    guarded(
        lambda: store.load(io.BytesIO(make_tar(tampered))), f"'{config_member.name}'"
    )


def test_load_rejects_corrupt_oci_blob(
    tmp_path_factory: pytest.TempPathFactory, store: Store, guarded
) -> None:
    source = Store.open(tmp_path_factory.mktemp("source") / "store")
    image = source.import_tar(io.BytesIO(GOOD_LAYER), ref="good", changes=[])
    out = io.BytesIO()
    source.save(["good"], out, fmt="oci-archive")
    layer_hex = image.diff_ids[0].removeprefix("sha256:")
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        entries = [
            (member, tar.extractfile(member).read() if member.isreg() else b"")
            for member in tar
        ]
    tampered = [
        (m, d.replace(b"fine", b"evil") if m.name.endswith(layer_hex) else d)
        for m, d in entries
    ]
    guarded(lambda: store.load(io.BytesIO(make_tar(tampered))), f"sha256:{layer_hex}")


def test_load_rejects_missing_blob(store: Store, guarded) -> None:
    archive = docker_archive([GOOD_LAYER])
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        entries = [
            (member, tar.extractfile(member).read())
            for member in tar
            if member.name != "layer0/layer.tar"
        ]
    guarded(
        lambda: store.load(io.BytesIO(make_tar(entries))), "missing 'layer0/layer.tar'"
    )


def test_load_rejects_bad_name(store: Store, guarded) -> None:
    archive = docker_archive([GOOD_LAYER], tags=["Bad/NAME:latest"])
    guarded(
        lambda: store.load(io.BytesIO(archive)), "invalid image name 'Bad/NAME:latest'"
    )


def test_load_rejects_archive_member_escape(store: Store, guarded) -> None:
    archive = make_tar([tar_entry("../manifest.json", data=b"[]")])
    guarded(lambda: store.load(io.BytesIO(archive)), "'../manifest.json'")


def test_load_rejects_link_out_of_archive(store: Store, guarded) -> None:
    archive = make_tar(
        [tar_entry("manifest.json", tarfile.SYMTYPE, linkname="../../etc/passwd")]
    )
    guarded(
        lambda: store.load(io.BytesIO(archive)),
        "'manifest.json' is a symlink to '../../etc/passwd', which is outside the archive",
    )


def test_load_rejects_truncated_archive(store: Store, guarded) -> None:
    archive = docker_archive([make_tar([tar_entry("big", data=b"y" * 200_000)])])
    guarded(lambda: store.load(io.BytesIO(archive[:100_000])), "truncated")


def test_load_is_all_or_nothing(store: Store, guarded) -> None:
    """A good image before a bad one in the same archive must not stay either."""
    good = docker_archive([GOOD_LAYER], tags=["good:latest"])
    bad = docker_archive(
        [GOOD_LAYER], tags=["bad:latest"], diff_ids=["sha256:" + "1" * 64]
    )
    with tarfile.open(fileobj=io.BytesIO(good)) as tar:
        good_entries = {m.name: tar.extractfile(m).read() for m in tar}
    with tarfile.open(fileobj=io.BytesIO(bad)) as tar:
        bad_entries = {m.name: tar.extractfile(m).read() for m in tar}
    manifest = json.loads(good_entries.pop("manifest.json")) + json.loads(
        bad_entries.pop("manifest.json")
    )
    entries = [
        tar_entry(name, data=data)
        for name, data in {**good_entries, **bad_entries}.items()
    ]
    entries.append(tar_entry("manifest.json", data=json.dumps(manifest).encode()))
    guarded(lambda: store.load(io.BytesIO(make_tar(entries))), "the archive is corrupt")


def test_limits_cap_bombs(tmp_path: Path, canary: Path) -> None:
    limits = Limits(
        max_entries=3, max_layer_bytes=1 << 20, max_extended_header_bytes=4096
    )
    store = Store.open(tmp_path / "limited", limits=limits)
    before = store_listing(store.layout.root)
    cases = {
        "entries": (
            make_tar([tar_entry(f"f{n}", data=b"") for n in range(5)]),
            "more than 3 entries",
        ),
        "gzip bomb": (
            gzip.compress(make_tar([tar_entry("zeros", data=bytes(4 << 20))])),
            "limit of 1048576 bytes",
        ),
        "pax header": (
            make_tar([tar_entry("p", data=b"", pax={"comment": "c" * 10_000})]),
            "extended header",
        ),
    }
    for name, (data, expected) in cases.items():
        with pytest.raises(HutchError, match=expected):
            store.import_tar(io.BytesIO(data), ref=None, changes=[])
        assert store_listing(store.layout.root) == before, name
    assert canary.read_bytes() == CANARY_TEXT


def test_devices_skipped_once_without_root(
    store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As non-root, device nodes are skipped with one warning and the import goes on."""
    from hutch.store import extract

    monkeypatch.setattr(extract.os, "geteuid", lambda: 1000)
    data = make_tar(
        [
            tar_entry("dev/", tarfile.DIRTYPE),
            tar_entry("dev/null", tarfile.CHRTYPE, mode=0o666),
            tar_entry("dev/sda", tarfile.BLKTYPE, mode=0o660),
            tar_entry("owned", data=b"x", uid=1000, gid=1000),
            tar_entry("owned2", data=b"y", uid=33, gid=33),
        ]
    )
    with caplog.at_level("WARNING", logger="hutch.store.extract"):
        image = store.import_tar(io.BytesIO(data), ref="devs", changes=[])
    root = image.layer_dirs[0]
    assert not (root / "dev" / "null").exists()
    assert not (root / "dev" / "sda").exists()
    assert (root / "owned").read_bytes() == b"x"
    messages = [record.getMessage() for record in caplog.records]
    assert sum("device nodes" in message for message in messages) == 1
    assert sum("owners are flattened" in message for message in messages) == 1


def archive_of(config: bytes, members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """Build a docker-archive whose one image has CONFIG and the layer l.tar.

    MEMBERS come after the config and before manifest.json, so a test decides how
    l.tar appears: once, twice, or as a link.
    """
    config_hex = hashlib.sha256(config).hexdigest()
    manifest = [{"Config": f"{config_hex}.json", "RepoTags": [], "Layers": ["l.tar"]}]
    return make_tar(
        [
            tar_entry(f"{config_hex}.json", data=config),
            *members,
            tar_entry("manifest.json", data=json.dumps(manifest).encode()),
        ]
    )


def config_for(layer: bytes) -> bytes:
    diff_id = f"sha256:{hashlib.sha256(layer).hexdigest()}"
    return json.dumps({"rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()


def test_load_rejects_deep_config(store: Store, guarded) -> None:
    archive = archive_of(b"[" * 100_000, [tar_entry("l.tar", data=GOOD_LAYER)])
    error = guarded(lambda: store.load(io.BytesIO(archive)), "more than 64 levels deep")
    assert str(error).startswith("the config of image 0 of manifest.json ")


def test_load_rejects_deep_manifest(store: Store, guarded) -> None:
    deep = b"[" * 5_000 + b"]" * 5_000
    archive = make_tar([tar_entry("manifest.json", data=deep)])
    guarded(lambda: store.load(io.BytesIO(archive)), "more than 64 levels deep")


def test_load_accepts_config_at_depth_limit(store: Store) -> None:
    config = json.loads(config_for(GOOD_LAYER))
    # Brackets inside strings, after escaped quotes too, are not nesting.
    config["config"] = {"Labels": {"brackets": '[{ \\" \\\\ ' * 100}}
    # The config object is level 1, so 63 lists inside it reach level 64.
    nested: object = "leaf"
    for _ in range(63):
        nested = [nested]
    config["nested"] = nested
    data = json.dumps(config).encode()
    archive = archive_of(data, [tar_entry("l.tar", data=GOOD_LAYER)])
    lines = store.load(io.BytesIO(archive))
    assert lines == [f"Loaded image ID: sha256:{hashlib.sha256(data).hexdigest()}"]


def test_load_rejects_duplicate_member(store: Store, guarded) -> None:
    archive = archive_of(
        config_for(GOOD_LAYER),
        [tar_entry("l.tar", data=GOOD_LAYER), tar_entry("l.tar", data=GOOD_LAYER)],
    )
    guarded(
        lambda: store.load(io.BytesIO(archive)),
        "the archive has more than one member named 'l.tar'",
    )


def test_load_rejects_duplicate_link(store: Store, guarded) -> None:
    archive = archive_of(
        config_for(GOOD_LAYER),
        [
            tar_entry("l.tar", data=GOOD_LAYER),
            tar_entry("./l.tar", tarfile.SYMTYPE, linkname="other"),
        ],
    )
    guarded(
        lambda: store.load(io.BytesIO(archive)),
        "the archive has more than one member named './l.tar'",
    )


@pytest.mark.parametrize(
    ("kind", "linkname", "expected"),
    [
        (
            tarfile.SYMTYPE,
            "/etc/shadow",
            "is a symlink to '/etc/shadow', which is outside",
        ),
        (
            tarfile.LNKTYPE,
            "/etc/shadow",
            "is a hard link to '/etc/shadow', which is outside",
        ),
        (tarfile.SYMTYPE, "../shadow", "is a symlink to '../shadow', which is outside"),
        (tarfile.LNKTYPE, "a/../b", "is a hard link to 'a/../b', which is not a valid"),
        (tarfile.SYMTYPE, ".", "is a symlink to '.', which is the archive's top"),
    ],
)
def test_load_rejects_link_out(
    store: Store, guarded, kind: bytes, linkname: str, expected: str
) -> None:
    archive = archive_of(
        config_for(GOOD_LAYER), [tar_entry("l.tar", kind, linkname=linkname)]
    )
    error = guarded(lambda: store.load(io.BytesIO(archive)), expected)
    assert str(error).startswith("the archive member 'l.tar' ")
    assert "unsafe name" not in str(error)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_load_follows_link_to_member(store: Store, kind: bytes) -> None:
    """Docker's legacy save links a layer.tar shared by two images to its first copy."""
    archive = archive_of(
        config_for(GOOD_LAYER),
        [
            tar_entry("first/layer.tar", data=GOOD_LAYER),
            tar_entry("l.tar", kind, linkname="first/layer.tar"),
        ],
    )
    (line,) = store.load(io.BytesIO(archive))
    image = store.image(line.rpartition(":")[2])
    assert (image.layer_dirs[0] / "ok.txt").read_bytes() == b"fine"


LONG_NAMES = {
    "deep": "d/" * 10_000 + "x",
    "long-component": "c" * 5_000,
}


@pytest.mark.parametrize("case", sorted(LONG_NAMES))
def test_load_shortens_long_member_name(store: Store, guarded, case: str) -> None:
    name = LONG_NAMES[case]
    archive = make_tar([tar_entry(name, data=b"")])
    error = guarded(lambda: store.load(io.BytesIO(archive)), "has an unsafe name")
    assert len(str(error)) < 400
    assert repr(name[:100] + "..." + name[-60:]) in str(error)


@pytest.mark.parametrize("case", sorted(LONG_NAMES))
def test_load_shortens_long_link_target(store: Store, guarded, case: str) -> None:
    target = LONG_NAMES[case]
    archive = archive_of(
        config_for(GOOD_LAYER), [tar_entry("l.tar", tarfile.SYMTYPE, linkname=target)]
    )
    error = guarded(lambda: store.load(io.BytesIO(archive)), "is a symlink to")
    assert len(str(error)) < 400
    assert repr(target[:100] + "..." + target[-60:]) in str(error)


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        (("m" * 200 + "/") * 10 + "x", "the archive is missing 'mmm"),
        ("m" * 50_000, "is not a valid member name: name is longer than 4096 bytes"),
    ],
    ids=["valid", "too-long"],
)
def test_load_shortens_missing_member_name(
    store: Store, guarded, missing: str, expected: str
) -> None:
    config = config_for(GOOD_LAYER)
    config_hex = hashlib.sha256(config).hexdigest()
    manifest = [{"Config": f"{config_hex}.json", "Layers": [missing]}]
    archive = make_tar(
        [
            tar_entry(f"{config_hex}.json", data=config),
            tar_entry("manifest.json", data=json.dumps(manifest).encode()),
        ]
    )
    error = guarded(lambda: store.load(io.BytesIO(archive)), expected)
    assert str(error).startswith("a layer of image 0 of manifest.json ") or str(
        error
    ).startswith("the archive is missing")
    assert len(str(error)) < 400


def test_import_shortens_long_member_name(store: Store, guarded) -> None:
    # Deep but valid names, under a regular file so the last one cannot be created.
    name = "f/" + "d/" * 60 + "x" * 3_000
    layer = make_tar([tar_entry("f", data=b""), tar_entry(name, data=b"")])
    error = guarded(
        lambda: store.import_tar(io.BytesIO(layer), ref=None, changes=[]),
        "member 'f/d/d/",
    )
    assert len(str(error)) < 400
