"""The hutch command line: a Docker-compatible CLI for rootless containers."""

from __future__ import annotations

import logging
import os
import sys

import click

from hutch.cli.app import App
from hutch.errors import HutchError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


def _register() -> None:
    from hutch.cli import container, exec, helper, image, run

    for module in (image, container, run, exec, helper):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map errors to one line on stderr and Docker's exit codes."""
    try:
        from hutch.remote_client import run_remote, split_global_options

        options, argv = split_global_options(sys.argv[1:] if argv is None else argv)
        host = options.get("host") or os.environ.get("HUTCH_HOST")
        if host:
            return run_remote({**options, "host": host}, argv)
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
