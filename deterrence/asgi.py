"""Small ASGI helpers shared by deterrence's own apps."""

from __future__ import annotations

from starlette.types import Receive, Send


async def acknowledge_lifespan(receive: Receive, send: Send) -> None:
    """Answer the lifespan protocol for an app with nothing to start or stop, so
    that it can be served on its own as well as mounted."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
