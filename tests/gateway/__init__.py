"""Gateway tests: accept, operator connectors, receipts and MO, partner delivery, the message log."""
