"""prolo: an open-source clinical platform for prolotherapy practices."""
