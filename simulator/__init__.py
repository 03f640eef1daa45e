"""Bed simulator and load generator: per-bed ECG sources, injectable events, paced replay onto the wire."""

from simulator.errors import ConfigError, DataNotFoundError, SimulatorError
from simulator.events import EVENT_KINDS, Event, EventKind, parse_event, parse_events
from simulator.replay import Simulator, SimulatorConfig, SimulatorStats, chunk_edges, windows_expected
from simulator.sources import SOURCE_KINDS, Source, SourceKind, make_sources

__all__ = [
    "EVENT_KINDS",
    "SOURCE_KINDS",
    "ConfigError",
    "DataNotFoundError",
    "Event",
    "EventKind",
    "Simulator",
    "SimulatorConfig",
    "SimulatorError",
    "SimulatorStats",
    "Source",
    "SourceKind",
    "chunk_edges",
    "make_sources",
    "parse_event",
    "parse_events",
    "windows_expected",
]
