"""hutch-cgroup installed setuid root, run by real non-root users under /etc/hutch/policy."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from c_support import CGROUP_ROOT, HERE, cgroup_bin, chown_tree, make_busybox_tree
from support import REPO, User

POLICY_DIR = Path("/etc/hutch")
POLICY = POLICY_DIR / "policy"
GENEROUS = "memory=1g pids=512 cpus=2 containers=10"


@dataclass
class SetuidInstall:
    cgroup: Path
    spawn: Path
    example_written: bool


class PolicyState:
    """The state of /etc/hutch before a test, put back afterwards."""

    def __init__(self) -> None:
        self.dir_existed = POLICY_DIR.is_dir()
        self.dir_stat = POLICY_DIR.stat() if self.dir_existed else None
        self.content = POLICY.read_bytes() if POLICY.is_file() else None
        self.file_stat = POLICY.stat() if self.content is not None else None

    def restore(self) -> None:
        if POLICY.is_symlink() or POLICY.exists():
            POLICY.unlink()
        if self.content is not None:
            POLICY.write_bytes(self.content)
            os.chown(POLICY, self.file_stat.st_uid, self.file_stat.st_gid)
            POLICY.chmod(stat.S_IMODE(self.file_stat.st_mode))
        if self.dir_existed:
            os.chown(POLICY_DIR, self.dir_stat.st_uid, self.dir_stat.st_gid)
            POLICY_DIR.chmod(stat.S_IMODE(self.dir_stat.st_mode))
        elif POLICY_DIR.exists():
            shutil.rmtree(POLICY_DIR)


@pytest.fixture(scope="module")
def setuid_install():
    """`make install-setuid` into a root-owned 0755 prefix; /etc/hutch restored afterwards."""
    if os.geteuid() != 0:
        pytest.skip("installing a setuid program needs root")
    state = PolicyState()
    prefix = Path(tempfile.mkdtemp(prefix="hutch-setuid-"))
    prefix.chmod(0o755)
    try:
        if os.statvfs(prefix).f_flag & os.ST_NOSUID:
            pytest.skip(f"{prefix} is mounted nosuid")
        subprocess.run(
            ["make", "-s", "-C", str(REPO / "c-helper"), "install-setuid", f"PREFIX={prefix}",
             f"INSTALL_BUILD={prefix}/build"],
            check=True, capture_output=True,
        )  # fmt: skip
        libexec = prefix / "libexec" / "hutch"
        yield SetuidInstall(libexec / "hutch-cgroup", libexec / "hutch-spawn",
                            state.content is None)  # fmt: skip
    finally:
        state.restore()
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture
def write_policy(setuid_install):
    """Write /etc/hutch/policy (root, 0644 unless MODE is given); the earlier state returns afterwards."""
    state = PolicyState()

    def write(text: str, mode: int = 0o644) -> None:
        POLICY_DIR.mkdir(mode=0o755, exist_ok=True)
        POLICY_DIR.chmod(0o755)
        os.chown(POLICY_DIR, 0, 0)
        if POLICY.is_symlink():
            POLICY.unlink()
        POLICY.write_text(text)
        os.chown(POLICY, 0, 0)
        POLICY.chmod(mode)

    yield write
    state.restore()


@pytest.fixture
def second_user():
    """One more non-root user, removed with its processes afterwards."""
    name = "hutchs" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    user = User(name)
    try:
        yield user
    finally:
        subprocess.run(["pkill", "-KILL", "-u", str(user.uid)], check=False)
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


@pytest.fixture
def user_rootfs(unprivileged_user, shared_tmp):
    rootfs = make_busybox_tree(shared_tmp / "rootfs")
    chown_tree(rootfs, unprivileged_user.uid, unprivileged_user.gid)
    return rootfs


@pytest.fixture(scope="module")
def memhog(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the memory probe")
    out = tmp_path_factory.mktemp("probe") / "memhog"
    subprocess.run(["gcc", "-static", "-O1", "-o", str(out), str(HERE / "memhog.c")], check=True)
    out.chmod(0o755)
    return out


def spawn_args(rootfs: Path, *program: str) -> list[str]:
    return ["--", "--rootfs", str(rootfs), "--unshare-pid", "--unshare-net", "--", *program]


def run_as(user: User, install: SetuidInstall, *argv: str, **kwargs):
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 60)
    return user.run([str(install.cgroup), *argv], **kwargs)


def user_dirs(uid: int, cgroup_id: str) -> list[Path]:
    return list(CGROUP_ROOT.glob(f"*/hutch/{uid}/{cgroup_id}"))


def assert_refused(result, message: str) -> None:
    assert result.returncode == 125, (result.stdout, result.stderr)
    assert result.stderr.startswith("hutch-cgroup: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


@pytest.fixture
def real_v1():
    result = subprocess.run([str(cgroup_bin()), "--probe"],
                            capture_output=True, text=True)  # fmt: skip
    if result.stdout.split("\n", 1)[0] not in ("layout v1", "layout hybrid"):
        pytest.skip("the machine has no cgroup v1 controllers")


# --- installation ---


def test_install_setuid_sets_mode(setuid_install):
    info = setuid_install.cgroup.stat()
    assert stat.S_IMODE(info.st_mode) == 0o4755
    assert (info.st_uid, info.st_gid) == (0, 0)
    assert stat.S_IMODE(setuid_install.spawn.stat().st_mode) == 0o755


def test_install_setuid_example_grants_nothing(setuid_install):
    if not setuid_install.example_written:
        pytest.skip("/etc/hutch/policy existed before the tests, so no example was written")
    # The fixture has not restored /etc yet: the example is still there.
    lines = POLICY.read_text().splitlines()
    assert lines
    assert all(line == "" or line.startswith("#") for line in lines)
    assert stat.S_IMODE(POLICY.stat().st_mode) == 0o644


def test_install_setuid_keeps_existing_policy(setuid_install, write_policy, tmp_path):
    write_policy("# kept\n")
    subprocess.run(
        ["make", "-s", "-C", str(REPO / "c-helper"), "install-setuid", f"PREFIX={tmp_path}",
         f"INSTALL_BUILD={tmp_path}/build"],
        check=True, capture_output=True,
    )  # fmt: skip
    assert POLICY.read_text() == "# kept\n"


# --- what the policy allows ---


def test_memory_limit_kills_allocation(setuid_install, write_policy, unprivileged_user,
                                       user_rootfs, cgroup_ids, memhog, real_v1):  # fmt: skip
    user = unprivileged_user
    write_policy(f"user {user.name} {GENEROUS}\n")
    shutil.copy2(memhog, user_rootfs / "bin" / "memhog")
    cgroup_id = cgroup_ids(user.uid)
    result = run_as(user, setuid_install, "--id", cgroup_id, "--memory", "32m",
                    "--memory-swap", "32m", *spawn_args(user_rootfs, "/bin/memhog", "100"))
    assert result.returncode == 137, result.stderr
    assert "allocated" not in result.stdout
    query = run_as(user, setuid_install, "--query", cgroup_id)
    assert query.returncode == 0, query.stderr
    figures = dict(line.split(" ", 1) for line in query.stdout.splitlines())
    assert int(figures["oom_kill"]) >= 1
    assert figures["memory_limit"] == str(32 << 20)


def test_ceilings_fill_missing_limits(setuid_install, write_policy, unprivileged_user,
                                      user_rootfs, cgroup_ids, real_v1):  # fmt: skip
    user = unprivileged_user
    write_policy(f"user {user.uid} memory=256m pids=100 cpus=1.5 containers=3\n")
    cgroup_id = cgroup_ids(user.uid)
    result = run_as(user, setuid_install, "--id", cgroup_id,
                    *spawn_args(user_rootfs, "/bin/cat", "/proc/self/uid_map", "/proc/self/cgroup"))
    assert result.returncode == 0, result.stderr
    # hutch-spawn refuses differing ids, and the map shows the caller's own uid.
    assert result.stdout.splitlines()[0].split() == ["0", str(user.uid), "1"]
    assert f"memory:/hutch/{user.uid}/{cgroup_id}" in result.stdout
    base = f"hutch/{user.uid}/{cgroup_id}"
    assert (CGROUP_ROOT / "memory" / base / "memory.limit_in_bytes").read_text() == f"{256 << 20}\n"
    assert (CGROUP_ROOT / "pids" / base / "pids.max").read_text() == "100\n"
    assert (CGROUP_ROOT / "cpu" / base / "cpu.cfs_quota_us").read_text() == "150000\n"
    assert (CGROUP_ROOT / "cpu" / base / "cpu.cfs_period_us").read_text() == "100000\n"


def test_group_line_matches(setuid_install, write_policy, unprivileged_user, user_rootfs,
                            cgroup_ids, real_v1):  # fmt: skip
    user = unprivileged_user
    group = subprocess.run(["id", "-gn", user.name], capture_output=True, text=True).stdout.strip()
    write_policy(f"# staff\ngroup {group} memory=128m pids=64 cpus=max containers=max\n")
    cgroup_id = cgroup_ids(user.uid)
    result = run_as(user, setuid_install, "--id", cgroup_id, *spawn_args(user_rootfs, "/bin/true"))
    assert result.returncode == 0, result.stderr
    memory = CGROUP_ROOT / "memory" / "hutch" / str(user.uid) / cgroup_id
    assert (memory / "memory.limit_in_bytes").read_text() == f"{128 << 20}\n"


def test_cgroup_files_belong_to_root(setuid_install, write_policy, unprivileged_user,
                                     user_rootfs, cgroup_ids, real_v1):  # fmt: skip
    user = unprivileged_user
    write_policy(f"user {user.name} {GENEROUS}\n")
    cgroup_id = cgroup_ids(user.uid)
    result = run_as(user, setuid_install, "--id", cgroup_id, "--memory", "64m",
                    *spawn_args(user_rootfs, "/bin/true"))
    assert result.returncode == 0, result.stderr
    memory = CGROUP_ROOT / "memory" / "hutch" / str(user.uid) / cgroup_id
    for name in ("memory.limit_in_bytes", "cgroup.procs"):
        assert (memory / name).stat().st_uid == 0
        attempt = user.run(["sh", "-c", f"echo 1073741824 > {memory / name}"], text=True)
        assert attempt.returncode != 0
        assert "Permission denied" in attempt.stderr
    assert (memory / "memory.limit_in_bytes").read_text() == f"{64 << 20}\n"
    assert memory.stat().st_uid == 0


def test_probe_follows_policy(setuid_install, write_policy, unprivileged_user):
    user = unprivileged_user
    write_policy("user 0 memory=max pids=max cpus=max containers=max\n")
    refused = run_as(user, setuid_install, "--probe")
    assert refused.returncode == 0, refused.stderr
    assert "controller memory readonly" in refused.stdout
    write_policy(f"user {user.name} {GENEROUS}\n")
    allowed = run_as(user, setuid_install, "--probe")
    assert allowed.returncode == 0, allowed.stderr
    for name in ("memory", "pids", "cpu", "freezer"):
        assert f"controller {name} writable" in allowed.stdout


def test_other_user_cannot_reach_cgroup(setuid_install, write_policy, unprivileged_user,
                                        second_user, user_rootfs, cgroup_ids, real_v1):  # fmt: skip
    owner = unprivileged_user
    write_policy(f"user {owner.name} {GENEROUS}\nuser {second_user.name} {GENEROUS}\n")
    cgroup_id = cgroup_ids(owner.uid)
    cgroup_ids(second_user.uid)  # removes hutch/<second uid> afterwards
    result = run_as(owner, setuid_install, "--id", cgroup_id, *spawn_args(user_rootfs, "/bin/true"))
    assert result.returncode == 0, result.stderr
    for form in ("--query", "--remove", "--freeze", "--thaw"):
        other = run_as(second_user, setuid_install, form, cgroup_id)
        assert_refused(other, f"open `hutch/{second_user.uid}/{cgroup_id}`: no such cgroup")
    assert len(user_dirs(owner.uid, cgroup_id)) >= 4


# --- refusals ---


def test_user_not_in_policy_refused(setuid_install, write_policy, unprivileged_user,
                                    user_rootfs):  # fmt: skip
    user = unprivileged_user
    write_policy("user 0 memory=max pids=max cpus=max containers=max\n")
    result = run_as(user, setuid_install, "--id", "nopolicy", *spawn_args(user_rootfs, "/bin/true"))
    assert_refused(result, f"no user or group line matches uid {user.uid}")
    assert user_dirs(user.uid, "nopolicy") == []


@pytest.mark.parametrize(
    "limit, message",
    [
        (["--memory", "2g"], "--memory 2147483648 is above the ceiling of 1073741824"),
        (["--memory", "512m", "--memory-swap", "3g"], "--memory-swap 3221225472 is above"),
        (["--pids", "513"], "--pids 513 is above the ceiling of 512"),
        (["--cpu-quota", "300000"], "--cpu-quota 300000 per --cpu-period 100000 is above "
                                    "the ceiling of 2.000 CPUs"),
    ],
)
def test_limit_above_ceiling_refused(setuid_install, write_policy, unprivileged_user,
                                     user_rootfs, limit, message):  # fmt: skip
    user = unprivileged_user
    write_policy(f"user {user.name} {GENEROUS} memory-swap=2g\n")
    result = run_as(user, setuid_install, "--id", "toobig", *limit,
                    *spawn_args(user_rootfs, "/bin/true"))
    assert_refused(result, message)
    assert user_dirs(user.uid, "toobig") == []


def test_too_many_containers_refused(setuid_install, write_policy, unprivileged_user,
                                     user_rootfs, cgroup_ids, real_v1):  # fmt: skip
    user = unprivileged_user
    write_policy(f"user {user.name} memory=1g pids=512 cpus=2 containers=2\n")
    first, second, third = cgroup_ids(user.uid), cgroup_ids(user.uid), cgroup_ids(user.uid)
    for cgroup_id in (first, second):
        result = run_as(user, setuid_install, "--id", cgroup_id,
                        *spawn_args(user_rootfs, "/bin/true"))
        assert result.returncode == 0, result.stderr
    result = run_as(user, setuid_install, "--id", third, *spawn_args(user_rootfs, "/bin/true"))
    assert_refused(result, f"too many containers: uid {user.uid} has 2 cgroups")
    assert user_dirs(user.uid, third) == []
    assert run_as(user, setuid_install, "--remove", first).returncode == 0
    again = run_as(user, setuid_install, "--id", third, *spawn_args(user_rootfs, "/bin/true"))
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--id", "a/b", "--", "x"], "invalid ID `a/b`"),
        (["--id", "..", "--", "x"], "invalid ID `..`"),
        (["--id", "x" * 65, "--", "x"], "invalid ID"),
        (["--query", "../0"], "invalid ID `../0`"),
        (["--id", "ok", "--frobnicate", "--", "x"], "unknown option `--frobnicate`"),
        (["--id", "ok", "--memory", "a" * 4097, "--", "x"], "longer than 4096 bytes"),
        (["--pids", "5"] * 600, "too many arguments"),
        (["--root", "/tmp", "--probe"], "option `--root` is only for tests run by root"),
        (["--layout", "v2", "--probe"], "option `--layout` is only for tests run by root"),
    ],
)
def test_bad_argv_refused_setuid(setuid_install, write_policy, unprivileged_user, argv, message):
    write_policy(f"user {unprivileged_user.name} {GENEROUS}\n")
    assert_refused(run_as(unprivileged_user, setuid_install, *argv), message)


@pytest.mark.parametrize(
    "problem, message",
    [
        ("file owned by user", "policy `/etc/hutch/policy`: owned by uid"),
        ("file group-writable", "policy `/etc/hutch/policy`: writable by group or others"),
        ("file world-writable", "policy `/etc/hutch/policy`: writable by group or others"),
        ("dir owned by user", "policy `/etc/hutch`: owned by uid"),
        ("dir world-writable", "policy `/etc/hutch`: writable by group or others"),
        ("file is a symlink", "policy `/etc/hutch/policy`: a symlink"),
        ("file missing", "policy `/etc/hutch/policy`: missing"),
        ("syntax error", "policy `/etc/hutch/policy` line 2: unknown setting `memroy`"),
        ("unknown user", "policy `/etc/hutch/policy` line 1: user `nosuchhutchuser` not found"),
    ],
)
def test_unsafe_policy_refuses_everything(setuid_install, write_policy, unprivileged_user,
                                          shared_tmp, problem, message):  # fmt: skip
    user = unprivileged_user
    write_policy(f"user {user.name} {GENEROUS}\n")
    if problem == "file owned by user":
        os.chown(POLICY, user.uid, 0)
    elif problem == "file group-writable":
        POLICY.chmod(0o664)
    elif problem == "file world-writable":
        POLICY.chmod(0o646)
    elif problem == "dir owned by user":
        os.chown(POLICY_DIR, user.uid, 0)
    elif problem == "dir world-writable":
        POLICY_DIR.chmod(0o757)
    elif problem == "file is a symlink":
        target = shared_tmp / "policy"
        target.write_text(f"user {user.name} {GENEROUS}\n")
        POLICY.unlink()
        POLICY.symlink_to(target)
    elif problem == "file missing":
        POLICY.unlink()
    elif problem == "syntax error":
        write_policy(f"user {user.name} {GENEROUS}\nuser 0 memroy=1g\n")
    elif problem == "unknown user":
        write_policy(f"user nosuchhutchuser {GENEROUS}\nuser {user.name} {GENEROUS}\n")
    for argv in (["--probe"], ["--query", "any"], ["--id", "any", "--", "x"]):
        assert_refused(run_as(user, setuid_install, *argv), message)


@pytest.mark.parametrize("variable", ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"])
def test_loader_variable_refused(setuid_install, write_policy, unprivileged_user, variable):
    write_policy(f"user {unprivileged_user.name} {GENEROUS}\n")
    result = unprivileged_user.run(
        ["env", f"{variable}=/nonexistent/lib.so", str(setuid_install.cgroup), "--probe"],
        text=True,
    )
    assert_refused(result, f"refusing to run setuid with `{variable}` in the environment")


def test_caller_fd_reaches_spawn_only_when_kept(setuid_install, write_policy, unprivileged_user,
                                                user_rootfs, cgroup_ids, real_v1):  # fmt: skip
    user = unprivileged_user
    write_policy(f"user {user.name} {GENEROUS}\n")
    lost_id, kept_id = cgroup_ids(user.uid), cgroup_ids(user.uid)
    read_end, write_end = os.pipe()
    # hutch-spawn checks that --log-fd is open, which shows whether the fd got through.
    program = spawn_args(user_rootfs, "/bin/echo", "through")
    separator = program.index("--", 1)
    program[separator:separator] = ["--log-fd", str(write_end)]
    try:
        lost = run_as(user, setuid_install, "--id", lost_id, *program, pass_fds=[write_end])
        kept = run_as(user, setuid_install, "--id", kept_id, "--keep-fd", str(write_end),
                      *program, pass_fds=[write_end])  # fmt: skip
    finally:
        os.close(write_end)
        os.close(read_end)
    assert lost.returncode == 125
    assert lost.stderr == f"hutch-spawn: fcntl `{write_end}`: Bad file descriptor\n"
    assert kept.returncode == 0, kept.stderr
