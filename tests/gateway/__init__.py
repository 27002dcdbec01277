"""Gateway tests (issue 5)."""
