"""One module per instrument; each defines ``INSTRUMENT``."""
