"""Root exception of the simulator package."""

from __future__ import annotations

from pathlib import Path

DATA_DIR_SETTING = "HOLMES_DATA_DIR"


class SimulatorError(Exception):
    """Base class for everything the simulator raises on purpose."""


class ConfigError(SimulatorError, ValueError):
    """A simulator setting or event spec is invalid."""


class DataNotFoundError(SimulatorError, FileNotFoundError):
    """The ECG data folder (or a record in it) is missing."""

    @classmethod
    def for_folder(cls, what: str, folder: Path | None) -> DataNotFoundError:
        """Build the message that tells the user which setting to fix."""
        where = "no data folder was given" if folder is None else f"{folder} does not exist or is empty"
        return cls(
            f"{what} not found: {where}. Set {DATA_DIR_SETTING} to the folder that holds mitdb/ and "
            f"cinc2017/ (e.g. ../shared/data), or use --source synthetic."
        )
