"""Console logging of every tagfer command: one handler, one line per record.

:func:`configure_logging` installs the root handler (``hh:mm:ss LEVEL logger: message``). Lightning adds
a console handler of its own to the ``lightning`` logger when it is imported (``INFO: GPU available…``)
and lets the same records propagate to the root handler, so each of its start-up lines came out twice.
:func:`route_lightning_to_root` (called by the commands that run Lightning, after their light checks)
imports Lightning, removes its handlers and lets its records reach the root handler only.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


def configure_logging(verbose: bool = False) -> None:
    """The root handler on stderr: DEBUG with ``verbose``, else INFO."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT, datefmt=DATE_FORMAT)


def route_lightning_to_root() -> None:
    """Drop Lightning's own console handlers; its records then print once, through the root handler."""
    import lightning  # noqa: F401  (adds the handlers this removes)

    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
