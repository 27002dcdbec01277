"""The HTTP side of the gateway (docs/dev/http-api.md): the partner API (FastAPI on Hypercorn in the gateway's
trio nursery), webhooks and the receipts pull."""
