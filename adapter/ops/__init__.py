"""What an operator sees of the running service: health and readiness probes, Prometheus
metrics, and the structured console log (with the audit trail kept to its own sink).

This package stands below every layer that reports into it (the transport counts vendor
calls here, the guard times requests): it imports nothing else of the service, so any
layer may import it without a cycle. The modules are imported one by one
(``adapter.ops.metrics``, ``adapter.ops.logs``, ``adapter.ops.probes``): a transport that
counts a call need not load the HTTP routes.
"""
