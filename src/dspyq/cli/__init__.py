"""The ``dspyq`` command. Each module here adds one group of commands to :data:`app`."""

# isort: off
# The order of these imports is the order ``dspyq --help`` lists the commands in.
from dspyq.cli import config  # noqa: F401  (registers its commands)
from dspyq.cli import jobs  # noqa: F401  (run, submit)
from dspyq.cli import readback  # noqa: F401  (events, executions)
from dspyq.cli import optimize  # noqa: F401  (optimize)
from dspyq.cli import evaluate  # noqa: F401  (evaluate)
from dspyq.cli import runs  # noqa: F401  (runs, runs show)
from dspyq.cli import pools  # noqa: F401  (registers its commands)
from dspyq.cli import serve  # noqa: F401  (registers its commands)
from dspyq.cli import watch  # noqa: F401  (watch, alerts)
from dspyq.cli import improve  # noqa: F401  (improve)
from dspyq.cli import deploy  # noqa: F401  (deploy, rollback, deployments, feedback, lineage)
from dspyq.cli._common import app

# isort: on

__all__ = ["app"]
