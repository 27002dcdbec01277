"""Billing: price and cost plans, the partner books (ledger, balances, credit held per message) and the
credit leases that let a node hold credit without a database round trip per message.

The design and its invariants: docs/dev/billing.md.
"""
