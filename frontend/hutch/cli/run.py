"""`hutch run`: make a container from an image, start it, and follow it."""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime, timezone
from typing import Any

import click

from hutch import remote_policy, units
from hutch.cli.app import App
from hutch.cli.attach import check_terminal, session, terminal_size
from hutch.errors import HutchError
from hutch.rootfs import lookup_user

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXIED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def command_line(image_config: dict[str, Any], entrypoint: str | None, args: tuple[str, ...]) -> list[str]:
    """Combine Entrypoint and Cmd the way Docker does."""
    if entrypoint is not None:
        prefix = [entrypoint] if entrypoint else []
        return [*prefix, *args]
    prefix = list(image_config.get("Entrypoint") or [])
    cmd = list(args) if args else list(image_config.get("Cmd") or [])
    return [*prefix, *cmd]


def container_config(app: App, image, options: dict[str, Any]) -> dict[str, Any]:
    """Build the container record (Docker's inspect shape) from image and flags."""
    config = (image.config or {}).get("config") or {}
    argv = command_line(config, options["entrypoint"], options["command"])
    if not argv:
        raise HutchError(f"no command given, and image {options['image']} has no Cmd or Entrypoint")
    name = options["name"] or app.containers.new_name()
    hostname = options["hostname"] or ""
    env = list(config.get("Env") or [])
    if not any(item.startswith("PATH=") for item in env):
        env.insert(0, f"PATH={DEFAULT_PATH}")
    for env_file in options["env_files"]:
        remote_policy.check_server_path("--env-file", env_file)
    remote_policy.check_host_env(list(options["env"]))
    given = [*units.read_env_files(list(options["env_files"])), *options["env"]]
    env = units.merge_env(env, units.parse_env(given, dict(os.environ)))
    user = options["user"] or config.get("User") or "0"
    units.check_user_spec(user)
    memory = units.parse_size(options["memory"], "memory limit") if options["memory"] else 0
    swap = units.parse_memory_swap(options["memory_swap"], memory) if options["memory_swap"] else 0
    if swap and not memory:
        raise HutchError("--memory-swap needs --memory: set the memory limit too")
    quota, period = units.parse_cpus(options["cpus"]) if options["cpus"] else (0, 0)
    if options["pids_limit"] is not None and options["pids_limit"] < 1:
        raise HutchError(f"invalid --pids-limit {options['pids_limit']}: expected a positive number")
    if options["cpu_shares"] is not None and not 2 <= options["cpu_shares"] <= 262144:
        raise HutchError(f"invalid --cpu-shares {options['cpu_shares']}: expected 2 to 262144")
    if options["volumes"] and not remote_policy.binds_allowed():
        raise HutchError("host bind mounts (-v) are not allowed for remote clients on this host")
    if options["cap_add"] and remote_policy.is_remote():
        raise HutchError("--cap-add is not allowed for remote clients")
    workdir = options["workdir"] or config.get("WorkingDir") or "/"
    if not workdir.startswith("/"):
        raise HutchError(f"invalid working directory {workdir!r}: it must be an absolute path")
    return {
        "Name": name,
        "Created": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "Image": image.id,
        "ImageName": options["image"],
        "Path": argv[0],
        "Args": argv[1:],
        "Config": {
            "Hostname": hostname,
            "User": user,
            "Tty": options["tty"],
            "OpenStdin": options["interactive"],
            "Env": env,
            "Cmd": list(options["command"]) or config.get("Cmd"),
            "Entrypoint": [options["entrypoint"]] if options["entrypoint"] else config.get("Entrypoint"),
            "WorkingDir": workdir,
            "Image": options["image"],
            "Labels": config.get("Labels") or {},
            "StopSignal": config.get("StopSignal") or "SIGTERM",
        },
        "HostConfig": {
            "Memory": memory,
            "MemorySwap": swap,
            "PidsLimit": options["pids_limit"] or 0,
            "NanoCpus": round(quota * 1e9 / period) if quota else 0,
            "CpuQuota": quota,
            "CpuPeriod": period,
            "CpuShares": options["cpu_shares"] or 0,
            "NetworkMode": options["network"],
            "AutoRemove": options["rm"],
            "ReadonlyRootfs": options["read_only"],
            "Binds": [units.parse_volume(volume) for volume in options["volumes"]],
            "Tmpfs": dict(units.parse_tmpfs(spec) for spec in options["tmpfs"]),
            "Init": options["init"],
            "LogConfig": {"Type": "hutch", "Config": units.parse_log_options(list(options["log_options"]))},
            "CapAdd": list(options["cap_add"]),
            "CapDrop": list(options["cap_drop"]),
        },
    }


def start_request(app: App, container, image):
    """Build the StartContainer request for CONTAINER from its record."""
    from hutch.helper.v1 import helper_pb2

    data = container.data
    host = data["HostConfig"]
    layers = [container.upper, *reversed(image.layer_dirs)]
    uid, gid = lookup_user(layers, data["Config"]["User"])
    hostname = data["Config"]["Hostname"] or container.id[:12]
    rows, cols = terminal_size() if data["Config"].get("Tty") else (0, 0)
    defaults = [f"HOSTNAME={hostname}", "HOME=/root"]
    if data["Config"].get("Tty"):
        defaults.append("TERM=xterm")
    env = units.merge_env(defaults, data["Config"]["Env"])
    return helper_pb2.StartContainerRequest(
        id=container.id,
        state_dir=str(container.directory),
        lower_dirs=[str(path) for path in reversed(image.layer_dirs)],
        upper_dir=str(container.upper),
        work_dir=str(container.work),
        rootfs=str(container.rootfs),
        readonly_rootfs=host["ReadonlyRootfs"],
        argv=[data["Path"], *data["Args"]],
        env=env,
        cwd=data["Config"]["WorkingDir"],
        uid=uid,
        gid=gid,
        hostname=hostname,
        network=host["NetworkMode"],
        limits=helper_pb2.Limits(
            memory_bytes=host["Memory"],
            memory_swap_bytes=host["MemorySwap"],
            pids=host["PidsLimit"],
            cpu_quota_us=host["CpuQuota"],
            cpu_period_us=host["CpuPeriod"],
            cpu_shares=host["CpuShares"],
        ),
        default_pids_limit=True,
        remove_when_done=host["AutoRemove"],
        tty=data["Config"].get("Tty", False),
        stdin=data["Config"].get("OpenStdin", False),
        tty_rows=rows,
        tty_cols=cols,
        binds=[
            helper_pb2.BindMount(source=source, destination=destination, readonly=mode == "ro")
            for source, destination, mode in (bind.split(":") for bind in host.get("Binds", []))
        ],
        tmpfs=[
            helper_pb2.TmpfsMount(destination=destination, size_bytes=size)
            for destination, size in host.get("Tmpfs", {}).items()
        ],
        init=host.get("Init", False),
        log_max_bytes=int(host.get("LogConfig", {}).get("Config", {}).get("max-size", 0)),
        cap_add=host.get("CapAdd", []),
        cap_drop=host.get("CapDrop", []),
    )


def start(app: App, container) -> None:
    """Start CONTAINER's process through the helper."""
    image = app.store.image(container.image_id)
    app.helper.call("StartContainer", start_request(app, container, image))


def follow_output(app: App, container_id: str) -> int:
    """Copy the container's output to ours until it ends; return its exit code."""
    from hutch.helper.v1 import helper_pb2

    def forward(number: int, frame: object) -> None:
        try:
            app.helper.call(
                "SignalContainer", helper_pb2.SignalContainerRequest(id=container_id, signal=number)
            )
        except HutchError:
            pass

    previous = {number: signal.signal(number, forward) for number in PROXIED_SIGNALS}
    try:
        request = helper_pb2.ReadLogsRequest(id=container_id, follow=True)
        stdout, stderr = sys.stdout.buffer, sys.stderr.buffer
        for chunk in app.helper.call("ReadLogs", request):
            target = stderr if chunk.stream == helper_pb2.LogChunk.STREAM_STDERR else stdout
            target.write(chunk.data)
            target.flush()
        state = app.helper.call("WaitContainer", helper_pb2.WaitContainerRequest(id=container_id))
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return state.exit_code


def remove(app: App, container) -> None:
    """Release CONTAINER from the helper and delete its record and files."""
    from hutch.helper.v1 import helper_pb2

    try:
        app.helper.call("ReleaseContainer", helper_pb2.ReleaseContainerRequest(id=container.id))
    except HutchError as error:
        if "no such container" not in error.message:
            raise
    app.containers.remove(container)


def _container_options(function):
    """Add the options that `run` and `create` share."""
    options = [
        click.argument("image"),
        click.argument("command", nargs=-1, type=click.UNPROCESSED),
        click.option("--name", help="Name of the container."),
        click.option("-e", "--env", multiple=True, help="Set NAME=VALUE (NAME alone takes the host's value)."),
        click.option("-w", "--workdir", help="Working directory inside the container."),
        click.option("-u", "--user", help="UID[:GID] of the process inside the container."),
        click.option("--hostname", help="Hostname inside the container (default: the short id)."),
        click.option("--entrypoint", help="Replace the image's Entrypoint."),
        click.option("-m", "--memory", help="Memory limit in bytes, or with a k, m or g suffix."),
        click.option("--memory-swap", help="Memory plus swap limit; -1 for unlimited swap."),
        click.option("--pids-limit", type=int, help="Maximum number of processes (default 2048 where hutch can set it)."),
        click.option("--cpus", help="Number of CPUs, e.g. 0.5 (CFS quota)."),
        click.option("--cpu-shares", type=int, help="Relative CPU weight, 2 to 262144."),
        click.option("--network", type=click.Choice(["none", "host"]), default="none", help="none: own network namespace with lo only; host: the host's network."),
        click.option("--read-only", is_flag=True, help="Mount the container's root filesystem read-only."),
        click.option("--rm", is_flag=True, help="Remove the container when it ends."),
        click.option("-i", "--interactive", is_flag=True, help="Keep stdin open and pass it to the container."),
        click.option("-t", "--tty", is_flag=True, help="Give the container a terminal of its own."),
        click.option("-v", "--volume", "volumes", multiple=True, help="Bind mount HOST-PATH:CONTAINER-PATH[:ro]."),
        click.option("--tmpfs", "tmpfs", multiple=True, help="Mount a tmpfs at CONTAINER-PATH[:size=SIZE]."),
        click.option("--init", is_flag=True, help="Run a small init as pid 1 that reaps orphaned processes."),
        click.option("--env-file", "env_files", multiple=True, type=click.Path(dir_okay=False), help="Read NAME=VALUE lines from a file."),
        click.option("--cap-add", "cap_add", multiple=True, help="Add a capability to the default set (root only)."),
        click.option("--cap-drop", "cap_drop", multiple=True, help="Drop a capability from the default set, or ALL."),
        click.option("--log-opt", "log_options", multiple=True, help="Log option: max-size=SIZE keeps the log under SIZE, default 100m (one older part is kept)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _create(app: App, options: dict[str, Any]):
    if not options.get("detach"):
        check_terminal(options["tty"], options["interactive"])
    image = app.store.image(options["image"])
    return app.containers.create(container_config(app, image, options))


@click.command("run", context_settings={"allow_interspersed_args": False})
@_container_options
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the container id.")
@click.pass_obj
def run(app: App, **options: Any) -> int:
    """Run COMMAND in a new container from IMAGE."""
    container = _create(app, options)
    try:
        start(app, container)
    except BaseException:
        # The container never ran: drop its record even if the helper is unreachable.
        try:
            remove(app, container)
        except HutchError:
            app.containers.remove(container)
        raise
    if options["detach"]:
        app.out(container.id)
        return 0
    try:
        if options["tty"] or options["interactive"]:
            code = session(
                app, container.id, tty=options["tty"], interactive=options["interactive"],
                from_start=True,
            )  # fmt: skip
        else:
            code = follow_output(app, container.id)
    finally:
        if options["rm"]:
            remove(app, container)
    return code


@click.command("create", context_settings={"allow_interspersed_args": False})
@_container_options
@click.pass_obj
def create(app: App, **options: Any) -> None:
    """Create a container from IMAGE without starting it; print its id."""
    container = _create(app, options)
    app.out(container.id)


def _state(app: App, container):
    from hutch.helper.v1 import helper_pb2

    response = app.helper.call("GetStates", helper_pb2.GetStatesRequest(ids=[container.id]))
    return response.states[0]


def restart_container(app: App, container) -> None:
    """Start CONTAINER again after it ended, keeping its files and its log."""
    from hutch.helper.v1 import helper_pb2

    state = _state(app, container)
    if state.status == "running":
        raise HutchError(f"container {container.name} is already running")
    if state.status != "unknown":
        app.helper.call("ReleaseContainer", helper_pb2.ReleaseContainerRequest(id=container.id))
    start(app, container)


@click.command("start")
@click.argument("containers", nargs=-1, required=True)
@click.option("-a", "--attach", is_flag=True, help="Follow the output and exit with the container's code.")
@click.pass_obj
def start_command(app: App, containers: tuple[str, ...], attach: bool) -> int:
    """Start created or stopped containers."""
    if attach and len(containers) > 1:
        raise HutchError("start -a takes exactly one container")
    for reference in containers:
        container = app.containers.get(reference)
        if _state(app, container).status == "running":
            if not attach:
                app.out(reference)
            continue
        restart_container(app, container)
        if not attach:
            app.out(reference)
    if attach:
        return follow_output(app, app.containers.get(containers[0]).id)
    return 0


@click.command("restart")
@click.argument("containers", nargs=-1, required=True)
@click.option("-t", "--time", "seconds", type=click.IntRange(min=0), default=10, show_default=True, help="Seconds to wait before SIGKILL.")
@click.pass_obj
def restart(app: App, containers: tuple[str, ...], seconds: int) -> None:
    """Stop containers (if running) and start them again."""
    from hutch.helper.v1 import helper_pb2

    for reference in containers:
        container = app.containers.get(reference)
        if _state(app, container).status == "running":
            stop_signal = units.parse_signal(container.data["Config"].get("StopSignal") or "SIGTERM")
            app.helper.call(
                "StopContainer",
                helper_pb2.StopContainerRequest(
                    id=container.id, signal=stop_signal, timeout_seconds=max(seconds, 0)
                ),
            )
        restart_container(app, container)
        app.out(reference)


COMMANDS = [run, create, start_command, restart]
