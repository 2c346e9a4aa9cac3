"""The object that every command gets as ctx.obj: store, containers, helper."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import click


logger = logging.getLogger("hutch")


class App:
    """Output, errors and lazily opened resources for one CLI invocation."""

    def __init__(self, debug: bool = False) -> None:
        self.debug = debug

    @functools.cached_property
    def store(self):  # -> hutch.store.Store
        from hutch.store import Store

        override = os.environ.get("HUTCH_STORE")
        return Store.open(Path(override) if override else Store.default_root())

    @functools.cached_property
    def containers(self):  # -> hutch.containers.ContainerStore
        from hutch.containers import ContainerStore

        return ContainerStore(self.store.layout.root / "containers")

    @functools.cached_property
    def helper(self):  # -> hutch.client.HelperClient
        from hutch.client import HelperClient

        return HelperClient()

    def out(self, text: str) -> None:
        click.echo(text)

    def warn(self, text: str) -> None:
        click.echo(f"hutch: warning: {text}", err=True)

