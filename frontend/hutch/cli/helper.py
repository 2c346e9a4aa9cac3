"""`hutch helper status|stop`: the background service that runs containers."""

from __future__ import annotations

import click

from hutch.cli.app import App
from hutch.errors import HutchError


@click.group("helper")
def helper() -> None:
    """Show or stop hutch-helper, which hutch starts when it is needed."""


@helper.command("status")
@click.pass_obj
def status(app: App) -> int:
    """Show whether hutch-helper runs, and what it can do."""
    from hutch.client import HelperClient
    from hutch.helper.v1 import helper_pb2

    client = HelperClient(autostart=False)
    if not client.answers():
        app.out(f"hutch-helper is not running (socket {client.socket_file})")
        return 3
    response = client.call("GetStatus", helper_pb2.GetStatusRequest())
    app.out(f"hutch-helper {response.version} is running")
    app.out(f"  pid:                  {response.pid}")
    app.out(f"  uid:                  {response.uid}")
    app.out(f"  socket:               {client.socket_file}")
    app.out(f"  cgroup layout:        {response.cgroup_layout}")
    controllers = ", ".join(response.writable_controllers) or "none"
    app.out(f"  writable controllers: {controllers}")
    app.out(f"  running containers:   {response.running_containers}")
    return 0


@helper.command("stop")
@click.pass_obj
def stop(app: App) -> None:
    """Stop hutch-helper; running containers keep running."""
    from hutch.client import HelperClient
    from hutch.helper.v1 import helper_pb2

    client = HelperClient(autostart=False)
    if not client.answers():
        app.out("hutch-helper is not running")
        return
    try:
        client.call("Shutdown", helper_pb2.ShutdownRequest())
    except HutchError as error:
        raise HutchError(f"hutch-helper did not stop: {error.message}") from None
    app.out("hutch-helper stopped")


COMMANDS = [helper]
