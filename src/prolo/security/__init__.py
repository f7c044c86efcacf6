"""Users, roles, sessions, tokens, route policies and the audit chain."""
