"""The hutch command line: a Docker-compatible CLI for rootless containers."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from hutch.cli.app import App
from hutch.errors import HutchError


# Each command's module, imported only when that command runs, so that
# `hutch run` does not pay for the imports of every other command.
COMMAND_MODULES = {
    "import": "image", "images": "image", "tag": "image", "rmi": "image",
    "save": "image", "load": "image",
    "ps": "container", "logs": "container", "stop": "container", "kill": "container",
    "rm": "container", "wait": "container", "inspect": "container",
    "commit": "container", "export": "container", "stats": "container",
    "pause": "container", "unpause": "container",
    "run": "run", "create": "run", "start": "run", "restart": "run",
    "exec": "exec", "attach": "exec",
    "helper": "helper",
}  # fmt: skip


class LazyGroup(click.Group):
    """A click group that imports a command's module when the command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(name)
        if module_name is None:
            return None
        module = importlib.import_module(f"hutch.cli.{module_name}")
        return next(command for command in module.COMMANDS if command.name == name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar="HUTCH_DEBUG", help="Show tracebacks and debug logs (env HUTCH_DEBUG).")
@click.option("-H", "--host", "host", metavar="tcp://HOST:PORT", help="Act on the hutch-helper of another host (env HUTCH_HOST); give it first. TLS files: --tls-cert, --tls-key, --tls-ca.", expose_value=False, is_eager=True)
@click.version_option(package_name="hutch")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Run Linux containers as an ordinary user."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="hutch: %(levelname)s: %(message)s",
    )
    ctx.obj = App(debug=debug)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map errors to one line on stderr and Docker's exit codes."""
    try:
        from hutch.remote_client import run_remote, split_global_options

        options, argv = split_global_options(sys.argv[1:] if argv is None else argv)
        host = options.get("host") or os.environ.get("HUTCH_HOST")
        if host:
            return run_remote({**options, "host": host}, argv)
        if not argv:
            argv = ["--help"]
        code = cli.main(args=argv, prog_name="hutch", standalone_mode=False)
    except HutchError as error:
        click.echo(f"hutch: {error.message}", err=True)
        return error.code
    except click.UsageError as error:
        where = error.ctx.command_path if error.ctx else "hutch"
        click.echo(f"hutch: {error.format_message()} (see '{where} --help')", err=True)
        return 125
    except click.ClickException as error:
        click.echo(f"hutch: {error.format_message()}", err=True)
        return 125
    except click.Abort:
        click.echo("hutch: aborted", err=True)
        return 130
    except BrokenPipeError:
        return 141
    return code if isinstance(code, int) else 0
