"""race-harness: replay and explore interleavings of database sessions on real servers."""

from __future__ import annotations

from .config import Settings, load_settings
from .errors import HarnessError, ProvisionError, ScenarioError
from .provision import Database, Server, start_server

__version__ = "0.1.0"

__all__ = ["Database", "HarnessError", "ProvisionError", "ScenarioError", "Server", "Settings",
           "load_settings", "start_server", "__version__"]
