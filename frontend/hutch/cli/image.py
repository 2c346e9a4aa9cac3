"""Image commands: import, images, tag, rmi, save, load."""

from __future__ import annotations

import os
import sys

import click

from hutch import remote_policy
from hutch.cli.app import App
from hutch.cli.format import ago, human_size, table, to_json
from hutch.errors import HutchError


def _input(path: str):
    remote_policy.check_server_path("the input", path)
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as error:
        raise HutchError(f"cannot open {path}: {error.strerror}") from None


def _output(path: str | None, what: str):
    """Open the file named by -o, or stdout when it is not a terminal."""
    remote_policy.check_server_path("-o", path)
    if path is None or path == "-":
        if sys.stdout.isatty():
            raise HutchError(
                f"refusing to write {what} to a terminal; use -o FILE or redirect stdout"
            )
        return sys.stdout.buffer
    try:
        return open(path, "wb")
    except OSError as error:
        raise HutchError(f"cannot create {path}: {error.strerror}") from None


@click.command("import")
@click.argument("source")
@click.argument("reference", required=False)
@click.option("-c", "--change", "changes", multiple=True, help="Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, STOPSIGNAL).")
@click.option("-m", "--message", help="Commit message stored in the image history.")
@click.pass_obj
def import_(app: App, source: str, reference: str | None, changes: tuple[str, ...], message: str | None) -> None:
    """Make an image from a root filesystem tar (FILE, or - for stdin)."""
    stream = _input(source)
    try:
        image = app.store.import_tar(stream, ref=reference, changes=list(changes), message=message)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    app.out(f"sha256:{image.id}")


@click.command("images")
@click.option("-q", "--quiet", is_flag=True, help="Show only image ids.")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table", help="Output format.")
@click.pass_obj
def images(app: App, quiet: bool, output_format: str) -> None:
    """List images."""
    listing = app.store.images()
    if quiet:
        for image in listing:
            app.out(image.id[:12])
        return
    if output_format == "json":
        app.out(to_json([
            {"Id": f"sha256:{i.id}", "RepoTags": i.repo_tags, "Created": i.created, "Size": i.size}
            for i in listing
        ]))
        return
    rows = []
    for image in listing:
        tags = image.repo_tags or ["<none>:<none>"]
        for tag in tags:
            repository, _, name = tag.rpartition(":")
            rows.append([repository, name, image.id[:12], ago(image.created), human_size(image.size)])
    app.out(table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows))


@click.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_obj
def tag(app: App, source: str, target: str) -> None:
    """Give image SOURCE the additional name TARGET."""
    app.store.tag(source, target)


@click.command("rmi")
@click.argument("references", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove the image even if a container uses it.")
@click.pass_obj
def rmi(app: App, references: tuple[str, ...], force: bool) -> None:
    """Remove images."""
    in_use = {c.image_id for c in app.containers.all()}
    failed = None
    for reference in references:
        try:
            for line in app.store.remove_image(reference, in_use=in_use, force=force):
                app.out(line)
        except HutchError as error:
            click.echo(f"hutch: {error.message}", err=True)
            failed = error
    if failed is not None:
        raise click.exceptions.Exit(failed.code)


@click.command("save")
@click.argument("references", nargs=-1, required=True)
@click.option("-o", "--output", help="Write to FILE instead of stdout.")
@click.option("--format", "archive_format", type=click.Choice(["docker-archive", "oci-archive"]), default="docker-archive", help="Archive layout.")
@click.pass_obj
def save(app: App, references: tuple[str, ...], output: str | None, archive_format: str) -> None:
    """Write images to a tar archive (stdout by default)."""
    for reference in references:
        app.store.image(reference)  # fail before writing anything
    stream = _output(output, "an archive")
    try:
        app.store.save(list(references), stream, fmt=archive_format)
        stream.flush()
    except BaseException:
        if output not in (None, "-"):
            stream.close()
            os.unlink(output)
        raise
    if output not in (None, "-"):
        stream.close()


@click.command("load")
@click.option("-i", "--input", "source", default="-", help="Read from FILE instead of stdin.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@click.pass_obj
def load(app: App, source: str, quiet: bool) -> None:
    """Load images from a tar archive (stdin by default)."""
    if source == "-" and sys.stdin.isatty():
        raise HutchError("no archive on stdin; use -i FILE or redirect stdin")
    stream = _input(source)
    try:
        lines = app.store.load(stream)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if not quiet:
        for line in lines:
            app.out(line)


COMMANDS = [import_, images, tag, rmi, save, load]
