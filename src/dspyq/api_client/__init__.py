"""The thin client: ``dspyq.Client`` submits programs to the worker pools."""

from dspyq.api_client.client import Client
from dspyq.api_client.job import Job

__all__ = ["Client", "Job"]
