"""Every kind of file through import, save, load, run and export of the CLI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hutchtest import Hutch
from store.test_file_kinds import BASE_MTIME, assert_same_tars, build_tree, gnu_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="devices and owners need root")


def test_kinds_survive_a_container_run(hutch: Hutch, tmp_path: Path):
    build_tree(tmp_path / "tree")
    tree = tmp_path / "tree"
    (tree / "bin").mkdir()
    shutil.copy2("/bin/busybox", tree / "bin" / "busybox")
    # The mount points that hutch-spawn would otherwise create in the upper dir.
    for name in ("dev", "proc", "sys"):
        (tree / name).mkdir()
    for path in (tree / "bin" / "busybox", tree / "bin", tree / "dev", tree / "proc", tree / "sys"):
        os.utime(path, (BASE_MTIME, BASE_MTIME), follow_symlinks=False)
    source = gnu_tar(tmp_path / "tree", tmp_path / "input.tar")
    hutch.out("import", str(source), "kinds")
    archive = tmp_path / "saved.tar"
    hutch.out("save", "-o", str(archive), "kinds")
    hutch.out("rmi", "kinds")
    hutch.out("load", "-i", str(archive))
    result = hutch.run("run", "--name", "ran", "kinds", "/bin/busybox", "ls", "/dev")
    assert result.returncode == 0, result.stderr
    exported = tmp_path / "exported.tar"
    hutch.out("export", "-o", str(exported), "ran")
    assert_same_tars(source, exported)
