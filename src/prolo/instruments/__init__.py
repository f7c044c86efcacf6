"""Outcome instruments: questionnaires as data plus pure scoring."""
