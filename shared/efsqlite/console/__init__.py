"""The web console of the local stack: browse, query, watch commands settle, redrive, send.

``efsqlite dev`` serves it on loopback (``--console-port``, default 4769), writes its URL to
``endpoints.json`` as ``console_url`` and prints it at start. It is built on the client library
and the reader the CLI uses (:mod:`.data`), renders pages on the server with no script and no
build step (:mod:`.pages`, :mod:`.html`) and serves them with the standard library
(:mod:`.server`). See docs/console.md.

DO read through the client library only: what the console shows is what a client sees.
DON'T write anything but what the send form and the redrive button ask for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from efsqlite.devstack.stack import Addon, DevOptions


def console_addon(host: str, port: int) -> Addon:
    """The console as an addon of :class:`efsqlite.devstack.stack.DevStack`: started once the
    stack is up, with its endpoints and registries; adds ``console_url``."""

    def start(
        endpoints: dict[str, Any], options: DevOptions
    ) -> tuple[dict[str, Any], Callable[[], None]]:
        from efsqlite.client import Endpoints
        from efsqlite.console.data import Console
        from efsqlite.console.server import serve
        from efsqlite.read.queries import load_queries
        from efsqlite.write.commands import load_commands

        console = Console(
            Endpoints.from_dict(endpoints, source="efsqlite dev"),
            queries=load_queries(options.queries),
            commands=load_commands(options.commands),
            declared=options.databases,
        )
        server, thread = serve(console, host, port)
        bound = server.server_address[1]

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)

        return {"console_url": f"http://{host}:{bound}/"}, stop

    return start
