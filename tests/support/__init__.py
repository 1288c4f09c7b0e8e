"""Helpers the tests share: processes to serve and cluster, services, runs, SSE, faults."""
