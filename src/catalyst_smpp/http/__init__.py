"""The HTTP side of the gateway: the partner API, webhooks and the receipts pull."""
