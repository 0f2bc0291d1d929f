"""The inference API's HTTP edge: /health, /v2, /metrics, /v1 (decode, data plane, encode)."""
