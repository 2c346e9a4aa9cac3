"""Container commands: ps, logs, stop, kill, rm, wait, inspect, commit, export."""

from __future__ import annotations

import collections
import itertools
import sys
import time
from datetime import datetime, timezone

import click

from hutch import units
from hutch.cli.app import App
from hutch.cli.format import ago, human_duration, human_binary_size, human_size, parse_time, table, to_json
from hutch.cli.image import _output
from hutch.cli.run import remove
from hutch.errors import HutchError


def for_each(references: tuple[str, ...], action) -> None:
    """Run ACTION on each reference; report failures one line each, then exit 125."""
    failed = None
    for reference in references:
        try:
            action(reference)
        except HutchError as error:
            click.echo(f"hutch: {error.message}", err=True)
            failed = error
    if failed is not None:
        raise click.exceptions.Exit(failed.code)


def _states(app: App, containers) -> dict[str, object]:
    """Return the helper's state for each container, by id."""
    from hutch.helper.v1 import helper_pb2

    if not containers:
        return {}
    request = helper_pb2.GetStatesRequest(ids=[c.id for c in containers])
    response = app.helper.call("GetStates", request)
    states = {state.id: state for state in response.states}
    # A container that the helper does not know (its runtime dir was
    # cleared, say after a reboot) has ended, and state.json records how.
    for container in containers:
        state = states.get(container.id)
        if state is not None and state.status == "unknown":
            local = container.local_state()
            state.status = "exited" if local.get("status") in ("running", "exited") else "created"
            state.exit_code = local.get("exit_code", 0)
            state.oom_killed = local.get("oom_killed", False)
            state.started_at = local.get("started_at", "")
            state.finished_at = local.get("finished_at", "")
    return states


def _status_text(state) -> str:
    if state.status == "running":
        started = parse_time(state.started_at)
        if started is None:
            return "Up"
        seconds = (datetime.now(started.tzinfo) - started).total_seconds()
        return f"Up {human_duration(seconds)}" + (" (Paused)" if state.paused else "")
    if state.status == "exited":
        return f"Exited ({state.exit_code}) {ago(state.finished_at)}".rstrip()
    return "Created"


def _command_text(container) -> str:
    words = [container.data["Path"], *container.data["Args"]]
    text = " ".join(words)
    return f'"{text[:20]}…"' if len(text) > 20 else f'"{text}"'


@click.command("ps")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all containers, not only running ones.")
@click.option("-q", "--quiet", is_flag=True, help="Show only container ids.")
@click.option("--no-trunc", is_flag=True, help="Show full ids.")
@click.option("--format", "output_format", default="table", help="table, json, or a template such as '{{.Names}}'.")
@click.pass_obj
def ps(app: App, show_all: bool, quiet: bool, no_trunc: bool, output_format: str) -> None:
    """List containers."""
    containers = app.containers.all()
    states = _states(app, containers)
    shown = [c for c in containers if show_all or states[c.id].status == "running"]
    if quiet:
        for container in shown:
            app.out(container.id if no_trunc else container.id[:12])
        return
    if output_format not in ("table", "json"):
        from hutch.cli.template import render

        for c in shown:
            row = {
                "ID": c.id if no_trunc else c.id[:12], "Image": c.data["ImageName"],
                "Command": _command_text(c), "CreatedAt": c.data["Created"],
                "Status": _status_text(states[c.id]), "State": states[c.id].status,
                "Names": c.name,
            }  # fmt: skip
            app.out(render(output_format, row))
        return
    if output_format == "json":
        app.out(to_json([
            {
                "Id": c.id,
                "Names": [c.name],
                "Image": c.data["ImageName"],
                "Command": " ".join([c.data["Path"], *c.data["Args"]]),
                "Created": c.data["Created"],
                "State": states[c.id].status,
                "Status": _status_text(states[c.id]),
                "ExitCode": states[c.id].exit_code,
            }
            for c in shown
        ]))
        return
    rows = [
        [
            c.id if no_trunc else c.id[:12],
            c.data["ImageName"],
            _command_text(c),
            ago(c.data["Created"]),
            _status_text(states[c.id]),
            c.name,
        ]
        for c in shown
    ]
    app.out(table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"], rows))


def _chunks(app: App, record, follow: bool):
    """Yield (stream, time in ns, data) of a container's log, from the helper or the file."""
    from hutch.helper.v1 import helper_pb2

    request = helper_pb2.ReadLogsRequest(id=record.id, follow=follow)
    try:
        for chunk in app.helper.call("ReadLogs", request):
            stream = "stderr" if chunk.stream == helper_pb2.LogChunk.STREAM_STDERR else "stdout"
            yield stream, chunk.time_unix_nano, chunk.data
        return
    except HutchError as error:
        if "no such container" not in error.message:
            raise
    # The helper no longer tracks this container: read its log file directly.
    from hutch_helper.logs import read_records

    try:
        log = open(record.directory / "log", "rb")
    except FileNotFoundError:
        return
    with log:
        for entry in read_records(log):
            yield entry.stream, entry.time_unix_nano, entry.data


def _lines(chunks):
    """Regroup chunks into whole lines per stream, so that --tail counts lines."""
    pending: dict[str, tuple[int, bytes]] = {}
    for stream, stamp, data in chunks:
        first_stamp, buffered = pending.pop(stream, (stamp, b""))
        buffered += data
        while (newline := buffered.find(b"\n")) >= 0:
            yield stream, first_stamp, buffered[: newline + 1]
            buffered = buffered[newline + 1 :]
            first_stamp = stamp
        if buffered:
            pending[stream] = (first_stamp, buffered)
    for stream, (stamp, buffered) in pending.items():
        yield stream, stamp, buffered


@click.command("logs")
@click.argument("container")
@click.option("-f", "--follow", is_flag=True, help="Keep following new output until the container ends.")
@click.option("-t", "--timestamps", is_flag=True, help="Show the time of each line.")
@click.option("-n", "--tail", "tail", default="all", help="Show only the last N lines (default: all).")
@click.option("--since", help="Show output since a time: RFC 3339, Unix seconds, or a duration such as 10m.")
@click.pass_obj
def logs(app: App, container: str, follow: bool, timestamps: bool, tail: str, since: str | None) -> None:
    """Show a container's output, stdout and stderr each on its own stream."""
    record = app.containers.get(container)
    if tail != "all" and not tail.isdigit():
        raise HutchError(f"invalid --tail {tail!r}: expected a number of lines or all")
    since_ns = units.parse_since(since) if since else 0
    stdout, stderr = sys.stdout.buffer, sys.stderr.buffer

    def write(stream: str, stamp: int, data: bytes) -> None:
        if stamp < since_ns:
            return
        target = stderr if stream == "stderr" else stdout
        if timestamps:
            moment = datetime.fromtimestamp(stamp / 1e9, timezone.utc)
            target.write(moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ ").encode())
        target.write(data)
        target.flush()

    if tail == "all" and not timestamps:
        for stream, stamp, data in _chunks(app, record, follow):
            write(stream, stamp, data)
        return
    lines = _lines(_chunks(app, record, follow))
    if tail != "all":
        # Keep only the last N lines in memory. With --follow, a second
        # pass skips the lines already seen and prints the rest as they come.
        kept: collections.deque = collections.deque(maxlen=int(tail))
        seen = 0
        for line in _lines(_chunks(app, record, False)):
            kept.append(line)
            seen += 1
        for line in kept:
            write(*line)
        if not follow:
            return
        lines = itertools.islice(_lines(_chunks(app, record, True)), seen, None)
    for line in lines:
        write(*line)


@click.command("stop")
@click.argument("containers", nargs=-1, required=True)
@click.option("-t", "--time", "seconds", type=click.IntRange(min=0), default=10, show_default=True, help="Seconds to wait before SIGKILL.")
@click.pass_obj
def stop(app: App, containers: tuple[str, ...], seconds: int) -> None:
    """Stop running containers: the stop signal, then SIGKILL after a timeout."""
    from hutch.helper.v1 import helper_pb2

    def stop_one(reference: str) -> None:
        record = app.containers.get(reference)
        stop_signal = units.parse_signal(record.data["Config"].get("StopSignal") or "SIGTERM")
        request = helper_pb2.StopContainerRequest(
            id=record.id, signal=stop_signal, timeout_seconds=seconds
        )
        try:
            app.helper.call("StopContainer", request)
        except HutchError as error:
            if "no such container" not in error.message:
                raise
        app.out(reference)

    for_each(containers, stop_one)


@click.command("kill")
@click.argument("containers", nargs=-1, required=True)
@click.option("-s", "--signal", "signal_name", default="KILL", show_default=True, help="Signal to send (name or number).")
@click.pass_obj
def kill(app: App, containers: tuple[str, ...], signal_name: str) -> None:
    """Send a signal to running containers."""
    from hutch.helper.v1 import helper_pb2

    number = units.parse_signal(signal_name)

    def kill_one(reference: str) -> None:
        record = app.containers.get(reference)
        request = helper_pb2.SignalContainerRequest(id=record.id, signal=number)
        app.helper.call("SignalContainer", request)
        app.out(reference)

    for_each(containers, kill_one)


@click.command("rm")
@click.argument("containers", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Kill the container first if it is running.")
@click.pass_obj
def rm(app: App, containers: tuple[str, ...], force: bool) -> None:
    """Remove containers."""
    from hutch.helper.v1 import helper_pb2

    def remove_one(reference: str) -> None:
        record = app.containers.get(reference)
        state = _states(app, [record])[record.id]
        if state.status == "running":
            if not force:
                raise HutchError(
                    f"container {reference} is running; stop it first or use rm -f"
                )
            app.helper.call(
                "StopContainer",
                helper_pb2.StopContainerRequest(id=record.id, signal=9, timeout_seconds=0),
            )
        remove(app, record)
        app.out(reference)

    for_each(containers, remove_one)


@click.command("wait")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def wait(app: App, containers: tuple[str, ...]) -> None:
    """Wait until containers end, then print their exit codes."""
    from hutch.helper.v1 import helper_pb2

    for reference in containers:
        record = app.containers.get(reference)
        state = _states(app, [record])[record.id]
        if state.status == "running":
            state = app.helper.call("WaitContainer", helper_pb2.WaitContainerRequest(id=record.id))
        app.out(str(state.exit_code))


def _inspect_container(app: App, record) -> dict:
    state = _states(app, [record])[record.id]
    data = dict(record.data)
    data["Image"] = f"sha256:{record.image_id}"
    data["State"] = {
        "Status": state.status,
        "Running": state.status == "running",
        "Pid": state.pid,
        "ExitCode": state.exit_code,
        "OOMKilled": state.oom_killed,
        "Error": state.error,
        "StartedAt": state.started_at,
        "FinishedAt": state.finished_at,
    }
    data["LogPath"] = str(record.directory / "log")
    data["Config"] = {**data["Config"], "Hostname": data["Config"]["Hostname"] or record.id[:12]}
    return data


def _inspect_image(image) -> dict:
    return {
        "Id": f"sha256:{image.id}",
        "RepoTags": image.repo_tags,
        "Created": image.created,
        "Size": image.size,
        "Architecture": image.config.get("architecture", ""),
        "Os": image.config.get("os", ""),
        "Config": image.config.get("config", {}),
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
    }


@click.command("inspect")
@click.argument("references", nargs=-1, required=True)
@click.option("--type", "kind", type=click.Choice(["container", "image"]), help="Look only for this kind of object.")
@click.option("-f", "--format", "template", help="Print each object through a template, e.g. '{{.State.ExitCode}}'.")
@click.pass_obj
def inspect(app: App, references: tuple[str, ...], kind: str | None, template: str | None) -> None:
    """Show containers or images as JSON."""
    results = []
    for reference in references:
        found = None
        if kind in (None, "container"):
            try:
                found = _inspect_container(app, app.containers.get(reference))
            except HutchError:
                if kind == "container":
                    raise
        if found is None:
            try:
                found = _inspect_image(app.store.image(reference))
            except HutchError:
                raise HutchError(f"no such object: {reference}") from None
        results.append(found)
    if template is not None:
        from hutch.cli.template import render

        for found in results:
            app.out(render(template, found))
        return
    app.out(to_json(results))


@click.command("commit")
@click.argument("container")
@click.argument("reference", required=False)
@click.option("-p", "--pause/--no-pause", default=True, help="Freeze a running container while its layer is taken (default: on).")
@click.option("-c", "--change", "changes", multiple=True, help="Apply a Dockerfile instruction to the new image.")
@click.option("-m", "--message", default="", help="Commit message.")
@click.option("-a", "--author", default="", help="Author of the new image.")
@click.pass_obj
def commit(app: App, container: str, reference: str | None, pause: bool, changes: tuple[str, ...], message: str, author: str) -> None:
    """Make a new image from a container's changes."""
    from hutch.helper.v1 import helper_pb2

    record = app.containers.get(container)
    state = _states(app, [record])[record.id]
    frozen = False
    if pause and state.status == "running" and not state.paused:
        try:
            app.helper.call("PauseContainer", helper_pb2.PauseContainerRequest(id=record.id))
            frozen = True
        except HutchError as error:
            app.warn(f"committing without pausing: {error.message}")
    try:
        image = _commit(app, record, reference, changes, message, author)
    finally:
        if frozen:
            app.helper.call("UnpauseContainer", helper_pb2.PauseContainerRequest(id=record.id))
    app.out(f"sha256:{image.id}")


def _commit(app: App, record, reference, changes, message: str, author: str):
    base = app.store.image(record.image_id)
    config = record.data["Config"]
    overrides = {
        "Env": config["Env"],
        "Cmd": [record.data["Path"], *record.data["Args"]] if not config.get("Entrypoint") else config.get("Cmd"),
        "WorkingDir": config["WorkingDir"],
    }
    return app.store.commit(
        base, record.upper, ref=reference, changes=list(changes), config=overrides,
        author=author, message=message,
    )


@click.command("export")
@click.argument("container")
@click.option("-o", "--output", help="Write to FILE instead of stdout.")
@click.pass_obj
def export(app: App, container: str, output: str | None) -> None:
    """Write a container's filesystem as a tar archive (stdout by default)."""
    record = app.containers.get(container)
    image = app.store.image(record.image_id)
    stream = _output(output, "an archive")
    try:
        app.store.export(image, record.upper, stream)
        stream.flush()
    finally:
        if output not in (None, "-"):
            stream.close()


# cgroup v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX pages).
UNLIMITED_BYTES = 1 << 62


def _stats_rows(app: App, records, previous: dict[str, tuple[int, int]]) -> list[list[str]]:
    from hutch.helper.v1 import helper_pb2

    response = app.helper.call("GetStats", helper_pb2.GetStatesRequest(ids=[r.id for r in records]))
    names = {r.id: r.name for r in records}
    rows = []
    for entry in response.stats:
        cpu = "--"
        if entry.id in previous:
            used_ns, read_ns = previous[entry.id]
            if entry.read_time_unix_nano > read_ns:
                share = (entry.cpu_usage_ns - used_ns) / (entry.read_time_unix_nano - read_ns)
                cpu = f"{100 * share:.2f}%"
        previous[entry.id] = (entry.cpu_usage_ns, entry.read_time_unix_nano)
        if not entry.has_cgroup:
            rows.append([entry.id[:12], names.get(entry.id, ""), "--", "-- / --", "--", "--"])
            continue
        unlimited = not entry.memory_limit_bytes or entry.memory_limit_bytes >= UNLIMITED_BYTES
        limit = "unlimited" if unlimited else human_binary_size(entry.memory_limit_bytes)
        percent = "--" if unlimited else f"{100 * entry.memory_bytes / entry.memory_limit_bytes:.2f}%"
        rows.append([
            entry.id[:12], names.get(entry.id, ""), cpu,
            f"{human_binary_size(entry.memory_bytes)} / {limit}", percent, str(entry.pids),
        ])  # fmt: skip
    return rows


@click.command("stats")
@click.argument("containers", nargs=-1)
@click.option("--no-stream", is_flag=True, help="Print one sample and exit.")
@click.pass_obj
def stats(app: App, containers: tuple[str, ...], no_stream: bool) -> None:
    """Show cpu, memory and pids figures of running containers."""
    records = [app.containers.get(r) for r in containers] if containers else app.containers.all()
    headers = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"]
    previous: dict[str, tuple[int, int]] = {}
    # The cpu share needs two samples: take the first one a moment before.
    _stats_rows(app, records, previous)
    time.sleep(0.5)
    while True:
        app.out(table(headers, _stats_rows(app, records, previous)))
        if no_stream:
            return
        time.sleep(1.5)


def _set_paused(app: App, references: tuple[str, ...], paused: bool) -> None:
    from hutch.helper.v1 import helper_pb2

    method = "PauseContainer" if paused else "UnpauseContainer"

    def set_one(reference: str) -> None:
        record = app.containers.get(reference)
        app.helper.call(method, helper_pb2.PauseContainerRequest(id=record.id))
        app.out(reference)

    for_each(references, set_one)


@click.command("pause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def pause(app: App, containers: tuple[str, ...]) -> None:
    """Freeze every process of running containers."""
    _set_paused(app, containers, True)


@click.command("unpause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def unpause(app: App, containers: tuple[str, ...]) -> None:
    """Thaw paused containers."""
    _set_paused(app, containers, False)


COMMANDS = [ps, logs, stop, kill, rm, wait, inspect, commit, export, stats, pause, unpause]
