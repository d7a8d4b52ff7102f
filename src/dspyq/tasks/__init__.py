"""Celery tasks: the app, module executions, multi-hop canvases and optimization runs."""
