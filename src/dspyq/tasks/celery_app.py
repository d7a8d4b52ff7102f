"""A module-level Celery app for Celery's own tools: ``celery -A dspyq.tasks.celery_app flower``.

dspyq's code builds its apps with :func:`dspyq.tasks.app.make_app`; this one exists
because ``celery -A`` needs an importable attribute. Its settings come from the
environment (``DSPYQ_BROKER_URL`` ...) when the module is imported.
"""

from __future__ import annotations

from dspyq.settings import get_settings
from dspyq.tasks.app import make_app

app = make_app(get_settings())
