"""Small ASGI helpers shared by the middlewares."""

from __future__ import annotations

from starlette.types import Message, Send


class StatusRecorder:
    """Wraps ``send`` and remembers the response status (500 until a response starts)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status_code = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status_code = int(message["status"])
        await self._send(message)
