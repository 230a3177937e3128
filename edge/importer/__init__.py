"""Importing a dictaphone's recordings cut around a CRM's events (``contactpoint import``).

recordings (files, folders) ─▶ sources.py: hash, decode, start time (bext, name, mtime),
                               the recorder's clock correction
events file (CSV, JSON lines) ─▶ events.py: rows, line-numbered problems
─▶ cut.py: windows around events (merged as on the device), placed on the recordings
   (stitched across contiguous files, else cut short and flagged)
─▶ run.py: clips and contacts (mode ``import``) saved by the device's core into its store
   and outbox; with a broker, published and waited for like the device's own
cli.py: the subcommand, its progress bar and its summary
"""

from edge.importer.cli import add_import_command
from edge.importer.run import ImportSummary, run_import

__all__ = ["ImportSummary", "add_import_command", "run_import"]
