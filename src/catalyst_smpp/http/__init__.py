"""The HTTP side of the gateway (docs/dev/http-api.md): the partner API (FastAPI on our own HTTP/1.1 server,
``h11server``, in the gateway's trio nursery), webhooks and the receipts pull."""
