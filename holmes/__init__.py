"""holmes."""
