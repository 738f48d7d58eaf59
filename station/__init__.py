"""Track station: a Raspberry Pi lap and safety station for a running track.

Layers, each a folder or module with one job (see docs/ARCHITECTURE.md):
sensors -> event log -> engine (pure) -> store (SQLite) -> web, wired by runtime.
"""

__version__ = "0.1.0"
