"""The clinic itself: its rooms and practitioners."""
