"""Telemetry: Prometheus metrics, JSON logs and OpenTelemetry traces."""
