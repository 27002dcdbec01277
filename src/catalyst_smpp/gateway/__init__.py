"""The gateway: partners in, operators out, receipts back (see docs/gateway.md)."""
