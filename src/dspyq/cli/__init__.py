"""The ``dspyq`` command. Each module here adds one group of commands to :data:`app`."""

from dspyq.cli import (
    config,  # noqa: F401  (registers its commands)
    jobs,  # noqa: F401  (registers its commands)
    optimize,  # noqa: F401  (registers its commands)
    pools,  # noqa: F401  (registers its commands)
    serve,  # noqa: F401  (registers its commands)
)
from dspyq.cli._common import app

__all__ = ["app"]
