"""Root exception of the ingest package."""


class IngestError(Exception):
    """Base class for everything ingest raises on purpose."""


class DecodeError(IngestError):
    """A message could not be decoded into a valid record; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
