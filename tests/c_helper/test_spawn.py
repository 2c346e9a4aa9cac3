"""hutch-spawn run for real, as root and as an unprivileged user, checked from inside."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest
from c_support import Runner, parse_records, spawn_bin

ALL_NS = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
DEFAULT_CAPS = 0x800405FB  # the 11 capabilities of docs/helper-spec.md
SPEC_OPTIONS = {
    "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
    "--unshare-cgroup", "--uid-map", "--gid-map", "--rootfs", "--overlay-lower",
    "--overlay-upper", "--overlay-work", "--readonly-rootfs", "--hostname", "--cwd", "--env",
    "--uid", "--gid", "--log-fd", "--status-fd", "--bind", "--tmpfs", "--init", "--tty",
    "--tty-size", "--stdin", "--attach-socket", "--join", "--log-max-bytes", "--log-rotate-fd",
    "--cap-drop", "--cap-add",
}


def sh(runner: Runner, rootfs, script: str, options=ALL_NS, **kwargs):
    return runner.spawn(rootfs, ["/bin/sh", "-c", script], list(options), **kwargs)


def status_fields(text: str) -> dict[str, int]:
    return {key: int(value, 16) for key, value in re.findall(r"^(Cap\w+):\s+(\w+)$", text, re.M)}


def test_hostname_inside(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "hostname", options=[*ALL_NS, "--hostname", "box1"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "box1\n"


def test_pid_one_inside(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "echo $$; readlink /proc/self; true")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.split()
    assert first == "1"
    # readlink runs as a child of pid 1 in the new pid namespace.
    assert 1 < int(second) < 100


def test_uid_map_inside(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "cat /proc/self/uid_map; cat /proc/self/gid_map")
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    if runner.user is None:
        # Real root gets no user namespace unless asked, as with Docker.
        assert lines == [["0", "0", "4294967295"], ["0", "0", "4294967295"]]
    else:
        assert lines == [["0", str(runner.user.uid), "1"], ["0", str(runner.user.gid), "1"]]


def test_root_with_unshare_user_maps_root(root_runner, busybox_tree):
    result = sh(root_runner, busybox_tree, "cat /proc/self/uid_map",
                options=[*ALL_NS, "--unshare-user"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "0", "1"]


def test_root_writes_multi_range_map(root_runner, shared_tmp):
    from c_support import chown_tree, make_busybox_tree

    busybox_tree = make_busybox_tree(shared_tmp / "rootfs")
    chown_tree(shared_tmp, 100000, 100000)
    maps = ["--uid-map", "0:100000:1000", "--uid-map", "1000:5000:10",
            "--gid-map", "0:100000:1000"]
    result = sh(root_runner, busybox_tree, "cat /proc/self/uid_map /proc/self/gid_map",
                options=[*ALL_NS, "--unshare-user", *maps])
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines == [["0", "100000", "1000"], ["1000", "5000", "10"], ["0", "100000", "1000"]]


def test_user_multi_range_map_uses_newuidmap(unprivileged_user, shared_tmp):
    from c_support import chown_tree, make_busybox_tree

    subuid = [line.split(":") for line in open("/etc/subuid").read().splitlines() if line]
    subgid = [line.split(":") for line in open("/etc/subgid").read().splitlines() if line]
    uid_range = next((r for r in subuid if r[0] == unprivileged_user.name), None)
    gid_range = next((r for r in subgid if r[0] == unprivileged_user.name), None)
    if uid_range is None or gid_range is None:
        pytest.skip("useradd gave the test user no /etc/subuid or /etc/subgid range")
    rootfs = make_busybox_tree(shared_tmp / "rootfs")
    chown_tree(shared_tmp, unprivileged_user.uid, unprivileged_user.gid)
    maps = [
        "--uid-map", f"0:{unprivileged_user.uid}:1", "--uid-map", f"1:{uid_range[1]}:100",
        "--gid-map", f"0:{unprivileged_user.gid}:1", "--gid-map", f"1:{gid_range[1]}:100",
    ]
    result = sh(Runner(unprivileged_user), rootfs,
                "cat /proc/self/uid_map /proc/self/gid_map; touch /tmp/f; chown 7:8 /tmp/f",
                options=[*ALL_NS, *maps])
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[:2] == [["0", str(unprivileged_user.uid), "1"], ["1", uid_range[1], "100"]]
    assert lines[2:] == [["0", str(unprivileged_user.gid), "1"], ["1", gid_range[1], "100"]]
    owner = os.stat(rootfs / "tmp" / "f")
    assert owner.st_uid == int(uid_range[1]) + 6
    assert owner.st_gid == int(gid_range[1]) + 7


def test_user_multi_range_map_outside_subuid_fails(unprivileged_user, shared_tmp):
    from c_support import chown_tree, make_busybox_tree

    rootfs = make_busybox_tree(shared_tmp / "rootfs")
    chown_tree(shared_tmp, unprivileged_user.uid, unprivileged_user.gid)
    result = sh(Runner(unprivileged_user), rootfs, "true",
                options=[*ALL_NS, "--uid-map", "0:1:100"])
    assert result.returncode == 125
    assert "newuidmap" in result.stderr


def test_net_namespace_has_only_lo(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "ls /sys/class/net; cat /sys/class/net/lo/flags; ip link")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "lo"
    assert int(lines[1], 16) & 0x1, "lo is not up"
    links = re.findall(r"^\d+: (\w+):", result.stdout, re.M)
    assert links == ["lo"]


def test_dev_contents(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "ls -A /dev; readlink /dev/ptmx; readlink /dev/fd; readlink /dev/stdin; "
                "echo hi > /dev/null; head -c 3 /dev/zero | od -An -tx1; stat -c %a /dev/shm")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:13] == sorted(["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr",
                                 "stdin", "stdout", "tty", "urandom", "zero"])
    assert lines[13:16] == ["pts/ptmx", "/proc/self/fd", "/proc/self/fd/0"]
    assert lines[16].split() == ["00", "00", "00"]
    assert lines[17] == "1777"


def test_dev_is_fresh_tmpfs_not_image_dev(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    (rootfs / "dev" / "image-file").write_text("x")
    result = sh(runner, rootfs, "ls /dev/image-file; grep ' /dev ' /proc/mounts")
    assert "image-file" not in result.stdout
    assert "No such file or directory" in result.stderr
    assert result.stdout.split()[2] == "tmpfs"


def test_proc_mounted(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "grep -E ' /proc | /sys ' /proc/mounts; ls /proc/1/")
    assert result.returncode == 0, result.stderr
    proc_line = next(line for line in result.stdout.splitlines() if " /proc " in line)
    assert proc_line.split()[2] == "proc"
    for flag in ("nosuid", "nodev", "noexec"):
        assert flag in proc_line.split()[3].split(",")
    assert "cmdline" in result.stdout


def test_sys_read_only(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "echo 1 > /sys/kernel/uevent_helper; echo rc=$?; "
                "grep ' /sys ' /proc/mounts")
    assert "rc=0" not in result.stdout
    assert "Read-only file system" in result.stderr
    sys_line = next(line for line in result.stdout.splitlines() if " /sys " in line)
    assert "ro" in sys_line.split()[3].split(",")


def test_sys_read_only_without_netns(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "touch /sys/fs/cgroup/x; echo rc=$?; grep ' /sys' /proc/mounts",
                options=["--unshare-pid"])
    assert "rc=0" not in result.stdout
    sys_lines = [line for line in result.stdout.splitlines() if " /sys" in line]
    assert sys_lines
    for line in sys_lines:
        assert "ro" in line.split()[3].split(","), line


def test_capabilities(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "cat /proc/self/status")
    assert result.returncode == 0, result.stderr
    caps = status_fields(result.stdout)
    assert caps["CapBnd"] == DEFAULT_CAPS
    assert caps["CapEff"] == DEFAULT_CAPS
    assert caps["CapPrm"] == DEFAULT_CAPS
    assert caps["CapInh"] == 0
    assert caps["CapAmb"] == 0
    assert re.search(r"^NoNewPrivs:\s+1$", result.stdout, re.M)


def test_non_root_uid_inside_has_no_caps(root_runner, busybox_tree):
    result = sh(root_runner, busybox_tree, "id -u; id -g; id -G; cat /proc/self/status",
                options=[*ALL_NS, "--uid", "1000", "--gid", "1001"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["1000", "1001", "1001"]
    caps = status_fields(result.stdout)
    assert caps["CapEff"] == 0
    assert caps["CapPrm"] == 0
    assert caps["CapBnd"] == DEFAULT_CAPS


def test_unmapped_uid_inside_fails(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    if runner.user is None:
        pytest.skip("real root without a user namespace can take any uid")
    result = sh(runner, rootfs, "true", options=[*ALL_NS, "--uid", "1000"])
    assert result.returncode == 125
    assert result.stderr == "hutch-spawn: setresuid `1000`: Invalid argument\n"


@pytest.mark.parametrize(
    "program, code",
    [
        (["/bin/sh", "-c", "exit 0"], 0),
        (["/bin/sh", "-c", "exit 3"], 3),
        (["/no/such/program"], 127),
        (["no-such-program"], 127),
        (["/etc/passwd"], 126),
    ],
)
def test_exit_codes(runner_and_rootfs, program, code):
    runner, rootfs = runner_and_rootfs
    result = runner.spawn(rootfs, program, ALL_NS)
    assert result.returncode == code, result.stderr
    if code >= 126:
        assert result.stderr.startswith(f"hutch-spawn: exec `{program[0]}`: ")
        assert result.stderr.count("\n") == 1


def test_sigkill_gives_137(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    # Without a pid namespace, so that the shell is not pid 1 and SIGKILL to itself lands.
    result = sh(runner, rootfs, "kill -9 $$", options=["--unshare-net"], status=True)
    assert result.returncode == 137, result.stderr
    assert result.status.splitlines()[-1] == "signal 9"


def test_path_lookup_uses_env_path(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    (rootfs / "opt").mkdir()
    (rootfs / "opt" / "tool").write_text("#!/bin/sh\necho tool ran\n")
    (rootfs / "opt" / "tool").chmod(0o755)
    if runner.user:
        os.chown(rootfs / "opt", runner.user.uid, runner.user.gid)
        os.chown(rootfs / "opt" / "tool", runner.user.uid, runner.user.gid)
    env = ["--env", "PATH=/nowhere:/opt", "--env", "A=b c"]
    result = runner.spawn(rootfs, ["tool"], [*ALL_NS, *env])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tool ran\n"
    # Without PATH in --env the default PATH applies, which has no /opt.
    assert runner.spawn(rootfs, ["tool"], ALL_NS).returncode == 127


def test_env_is_exactly_given(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = runner.spawn(rootfs, ["env"], [*ALL_NS, "--env", "A=b c", "--env", "EMPTY="])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "A=b c\nEMPTY=\n"


def test_cwd_inside(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "pwd", options=[*ALL_NS, "--cwd", "/etc"])
    assert result.stdout == "/etc\n"
    missing = sh(runner, rootfs, "pwd", options=[*ALL_NS, "--cwd", "/nonexistent"])
    assert missing.returncode == 125
    assert missing.stderr == ("hutch-spawn: chdir `/nonexistent`: No such file or directory\n")


def test_readonly_rootfs(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "touch /newfile; echo rc=$?; touch /dev/shm/ok && echo shm ok",
                options=[*ALL_NS, "--readonly-rootfs"])
    assert "rc=0" not in result.stdout
    assert "shm ok" in result.stdout
    assert not (rootfs / "newfile").exists()


def test_only_stdio_fds_inside(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "ls /proc/self/fd", log=True, status=True)
    assert result.returncode == 0, result.stderr
    out = b"".join(data for stream, data in parse_records(result.log) if stream == "o")
    # ls opens one fd of its own for the directory it lists.
    assert out.decode().split() == ["0", "1", "2", "3"]


def test_log_fd_keeps_streams_apart(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    script = "echo out1; echo err1 >&2; echo out2; head -c 100000 /dev/zero | tr '\\0' x"
    result = sh(runner, rootfs, script, log=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""
    records = parse_records(result.log)
    out = b"".join(data for stream, data in records if stream == "o")
    err = b"".join(data for stream, data in records if stream == "e")
    assert out == b"out1\nout2\n" + b"x" * 100000
    assert err == b"err1\n"


def test_without_log_fd_output_is_inherited(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "echo to-out; echo to-err >&2")
    assert result.stdout == "to-out\n"
    assert result.stderr == "to-err\n"


def test_stdin_is_monitor_stdin(root_runner, busybox_tree):
    argv = [str(spawn_bin()), "--rootfs", str(busybox_tree), *ALL_NS, "--", "/bin/cat"]
    result = subprocess.run(argv, input=b"from stdin\n", capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"from stdin\n"


def test_status_fd_lines(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "exit 7", status=True)
    assert result.returncode == 7
    lines = result.status.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"pid \d+", lines[0])
    assert lines[1] == "exit 7"


def test_signal_forwarded_to_pid_one(root_runner, busybox_tree):
    read_end, write_end = os.pipe()
    argv = [str(spawn_bin()), "--rootfs", str(busybox_tree), *ALL_NS,
            "--status-fd", str(write_end), "--", "/bin/sh", "-c",
            "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, pass_fds=[write_end])
    os.close(write_end)
    try:
        with os.fdopen(read_end, "r") as status:
            assert status.readline().startswith("pid ")
            assert proc.stdout.readline() == b"ready\n"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 42
            assert status.readline() == "exit 42\n"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--bogus"], "unknown option `--bogus`"),
        (["--rootfs"], "option `--rootfs` needs a value"),
        (["--rootfs", "/", "--hostname", "x", "--", "true"], "--hostname needs --unshare-uts"),
        (["--rootfs", "/", "--uid-map", "0:1", "--", "true"], "invalid --uid-map `0:1`"),
        (["--rootfs", "/", "--uid", "-1", "--", "true"], "invalid --uid `-1`"),
        (["--rootfs", "relative", "--", "true"], "invalid --rootfs `relative`"),
        (["--rootfs", "/"], "missing PROGRAM after `--`"),
        (["--", "true"], "missing --rootfs"),
        (["--rootfs", "/", "--log-fd", "99", "--", "true"], "fcntl `99`"),
        (["--rootfs", "/" + "a" * 5000, "--", "true"], "longer than 4096 bytes"),
    ],
)
def test_bad_argv_rejected(argv, message):
    result = subprocess.run([str(spawn_bin()), *argv], capture_output=True, text=True)
    assert result.returncode == 125
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("hutch-spawn: ")
    assert message in result.stderr


def test_too_many_arguments_rejected():
    argv = [str(spawn_bin()), "--rootfs", "/", *(["--unshare-pid"] * 2000), "--", "true"]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 125
    assert "too many arguments" in result.stderr


def test_list_options_matches_spec():
    result = subprocess.run([str(spawn_bin()), "--list-options"], capture_output=True, text=True)
    assert result.returncode == 0
    assert set(result.stdout.split()) == SPEC_OPTIONS


def test_refuses_setuid(unprivileged_user, shared_tmp):
    copy = shared_tmp / "hutch-spawn"
    copy.write_bytes(spawn_bin().read_bytes())
    os.chown(copy, 0, 0)
    copy.chmod(0o4755)
    if os.statvfs(copy).f_flag & os.ST_NOSUID:
        pytest.skip(f"{shared_tmp} is mounted nosuid")
    result = unprivileged_user.run([str(copy), "--rootfs", "/", "--", "true"], text=True)
    assert result.returncode == 125
    assert "refusing to run setuid" in result.stderr
