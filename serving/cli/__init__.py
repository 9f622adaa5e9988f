"""The ``sluice`` command, one module per command family: ``serve`` (``_serve``), ``config``
(``_config``), the client commands ``models`` and ``infer`` (``_client``), and ``pull`` and
``registry ...`` (``_registry``). A family adds its subcommands in ``add_commands(sub)``, each
with the function that runs it (``set_defaults(run=...)``); ``_errors`` is how every command
fails.
"""

from __future__ import annotations

from serving.cli._main import main

__all__ = ["main"]
