"""The HTTP API (docs/dev/http-api.md): FastAPI on Hypercorn in the gateway's trio nursery."""
