"""`hutch exec` and `hutch attach`: processes and streams of running containers."""

from __future__ import annotations

import os
import secrets
from typing import Any

import click

from hutch import remote_policy, units
from hutch.cli.app import App
from hutch.cli.attach import check_terminal, session, terminal_size
from hutch.cli.run import follow_output
from hutch.errors import HutchError
from hutch.rootfs import lookup_user
from hutch.store.layout import remove_tree


def _require_running(app: App, container) -> None:
    from hutch.helper.v1 import helper_pb2

    state = app.helper.call("GetStates", helper_pb2.GetStatesRequest(ids=[container.id])).states[0]
    if state.status != "running":
        raise HutchError(f"container {container.name} is not running; start it first")


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open and pass it to the process.")
@click.option("-t", "--tty", is_flag=True, help="Give the process a terminal of its own.")
@click.option("-d", "--detach", is_flag=True, help="Run the process in the background.")
@click.option("-e", "--env", multiple=True, help="Set NAME=VALUE for the process.")
@click.option("-w", "--workdir", help="Working directory of the process.")
@click.option("-u", "--user", help="NAME or UID[:GID] of the process.")
@click.pass_obj
def exec_(app: App, container: str, command: tuple[str, ...], **options: Any) -> int:
    """Run COMMAND in a running container, in all of its namespaces and its cgroup."""
    from hutch.helper.v1 import helper_pb2

    check_terminal(options["tty"], options["interactive"])
    record = app.containers.get(container)
    _require_running(app, record)
    config = record.data["Config"]
    image = app.store.image(record.image_id)
    spec = units.check_user_spec(options["user"]) if options["user"] else config["User"]
    uid, gid = lookup_user([record.upper, *reversed(image.layer_dirs)], spec)
    remote_policy.check_host_env(list(options["env"]))
    env = units.merge_env(config["Env"], units.parse_env(list(options["env"]), dict(os.environ)))
    workdir = options["workdir"] or config["WorkingDir"] or "/"
    if not workdir.startswith("/"):
        raise HutchError(f"invalid working directory {workdir!r}: it must be an absolute path")

    exec_id = secrets.token_hex(32)
    directory = record.directory / "exec" / exec_id
    directory.mkdir(mode=0o700, parents=True)
    rows, cols = terminal_size() if options["tty"] else (0, 0)
    request = helper_pb2.StartContainerRequest(
        id=exec_id,
        state_dir=str(directory),
        join_container_id=record.id,
        argv=list(command),
        env=env,
        cwd=workdir,
        uid=uid,
        gid=gid,
        tty=options["tty"],
        stdin=options["interactive"],
        tty_rows=rows,
        tty_cols=cols,
        remove_when_done=options["detach"],
        cap_add=record.data["HostConfig"].get("CapAdd", []),
        cap_drop=record.data["HostConfig"].get("CapDrop", []),
    )
    try:
        app.helper.call("StartContainer", request)
    except BaseException:
        remove_tree(directory)
        raise
    if options["detach"]:
        return 0
    try:
        if options["tty"] or options["interactive"]:
            return session(
                app, exec_id, tty=options["tty"], interactive=options["interactive"],
                from_start=True,
            )  # fmt: skip
        return follow_output(app, exec_id)
    finally:
        try:
            app.helper.call("ReleaseContainer", helper_pb2.ReleaseContainerRequest(id=exec_id))
        except HutchError:
            pass
        remove_tree(directory)


@click.command("attach")
@click.argument("container")
@click.option("--no-stdin", is_flag=True, help="Do not pass stdin to the container.")
@click.pass_obj
def attach(app: App, container: str, no_stdin: bool) -> int:
    """Connect to a running container's output (and its stdin, if it keeps one open)."""
    record = app.containers.get(container)
    _require_running(app, record)
    config = record.data["Config"]
    interactive = config.get("OpenStdin", False) and not no_stdin
    tty = config.get("Tty", False)
    check_terminal(tty, interactive)
    return session(app, record.id, tty=tty, interactive=interactive, from_start=False)


COMMANDS = [exec_, attach]
