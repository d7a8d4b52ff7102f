"""Deployments of saved programs: aliases moved through the seed's pipeline, announced
to running workers over Redis, and the cache workers keep of resolved programs.

- :class:`Deployer` (``deploy``, ``rollback``, ``promote``, ``abort_canary``, ``history``);
- :class:`Deployment`, what a deployment returns and the history lists;
- :class:`ProgramCache`, a worker's resolved programs, invalidated on alias changes.

Imports the store and Redis; never the client or the workers.
"""

from dspyq.deploy.announce import AliasAnnouncer, AliasMessage, alias_channel
from dspyq.deploy.pipeline import Deployer
from dspyq.deploy.plan import STEPS, Deployment, LiveWorkers, RunSmoke
from dspyq.deploy.record import DEPLOYMENT_EVENTS

__all__ = [
    "DEPLOYMENT_EVENTS",
    "STEPS",
    "AliasAnnouncer",
    "AliasMessage",
    "Deployer",
    "Deployment",
    "LiveWorkers",
    "RunSmoke",
    "alias_channel",
]
