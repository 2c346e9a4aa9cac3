"""An import, commit and export run by a real non-root user."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import textwrap
from pathlib import Path

import pytest

from .helpers import FRONTEND, make_tar, tar_entry

SNIPPET = textwrap.dedent(
    """
    import io, json, logging, os, stat, sys
    from pathlib import Path
    from hutch.store import Store

    warnings = []
    class Collect(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())
    logging.getLogger("hutch").addHandler(Collect())

    root = Store.default_root()
    store = Store.open(root)
    with open(sys.argv[1], "rb") as source:
        image = store.import_tar(source, ref="rootless", changes=["CMD sh"])
    layer = image.layer_dirs[0]
    su = os.lstat(layer / "bin" / "su")
    whiteout = os.lstat(layer / "gone")
    upper = Path(sys.argv[2])
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "new").write_text("new")
    os.mknod(upper / "etc" / "passwd", stat.S_IFCHR, 0)
    committed = store.commit(image, upper, ref="rootless:2", changes=[])
    out = io.BytesIO()
    store.export(committed, None, out)
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        owners = {m.name.rstrip("/"): (m.uid, m.gid) for m in tar}
    removed = store.remove_image("rootless:2", in_use=set())
    unreadable = Path(sys.argv[2] + "-unreadable")
    unreadable.mkdir()
    (unreadable / "secret").write_text("x")
    (unreadable / "secret").chmod(0)
    try:
        store.commit(image, unreadable, ref=None, changes=[])
        read_error = ""
    except Exception as error:
        read_error = f"{type(error).__name__}: {error}"
    print(json.dumps({
        "root": str(root),
        "root_mode": stat.S_IMODE(os.stat(root).st_mode),
        "su_mode": stat.S_IMODE(su.st_mode),
        "su_owner": [su.st_uid, su.st_gid],
        "whiteout_is_char00": stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0,
        "device_skipped": not os.path.lexists(layer / "dev" / "null"),
        "warnings": warnings,
        "owners": owners,
        "removed": removed,
        "read_error": read_error,
        "images_after": len(store.images()),
    }))
    """
)


@pytest.mark.rootless
def test_rootless_import_commit_export(unprivileged_user, tmp_path: Path) -> None:
    work = Path(unprivileged_user.home) / "work"
    work.mkdir()
    layer = make_tar(
        [
            tar_entry("bin/", tarfile.DIRTYPE),
            tar_entry("bin/su", data=b"su", mode=0o4755),
            tar_entry("etc/", tarfile.DIRTYPE),
            tar_entry("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
            tar_entry("home/user/", tarfile.DIRTYPE, uid=1000, gid=1000),
            tar_entry("dev/", tarfile.DIRTYPE),
            tar_entry("dev/null", tarfile.CHRTYPE, mode=0o666),
            tar_entry("dev/zero", tarfile.CHRTYPE, mode=0o666),
            tar_entry(".wh.gone", data=b""),
        ]
    )
    tar_path = work / "layer.tar"
    tar_path.write_bytes(layer)
    upper = work / "upper"
    for path in (work, tar_path):
        os.chown(path, unprivileged_user.uid, unprivileged_user.gid)

    result = unprivileged_user.run(
        [
            "env",
            f"PYTHONPATH={FRONTEND}",
            "python3",
            "-c",
            SNIPPET,
            str(tar_path),
            str(upper),
        ],
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["root"] == f"{unprivileged_user.home}/.local/share/hutch"
    assert report["root_mode"] == 0o700
    assert report["su_mode"] == 0o4755
    assert report["su_owner"] == [unprivileged_user.uid, unprivileged_user.gid]
    assert report["whiteout_is_char00"] is True
    assert report["device_skipped"] is True
    assert sum("device nodes" in message for message in report["warnings"]) == 1
    assert sum("owners are flattened" in message for message in report["warnings"]) == 1
    # Files of the user are root's inside the container, and so in the exported tar.
    assert report["owners"]["bin/su"] == [0, 0]
    assert "etc/passwd" not in report["owners"]
    assert report["owners"]["etc/new"] == [0, 0]
    assert report["removed"][-1].startswith("Deleted: sha256:")
    assert report["read_error"].startswith("HutchError: cannot read 'secret' in ")
    assert report["images_after"] == 1
    shutil.rmtree(work, ignore_errors=True)
