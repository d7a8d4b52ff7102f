"""Telemetry: Prometheus metrics of workers, correlation ids in logs, optional tracing.

- :mod:`dspyq.telemetry.metrics`: the seed's metric names in Prometheus form.
- :mod:`dspyq.telemetry.logs`: the correlation id on every log record.
- :mod:`dspyq.telemetry.tracing`: OpenTelemetry spans, one trace per correlation id.
- :mod:`dspyq.telemetry.worker`: how a worker process installs them.
"""
