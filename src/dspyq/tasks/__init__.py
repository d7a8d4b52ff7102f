"""Celery tasks: the app, module executions, multi-hop canvases and optimization runs.

Kept free of imports: the client reaches :mod:`dspyq.tasks.protocol` (task and queue
names, the JSON messages) without loading the worker-side task modules.
"""
