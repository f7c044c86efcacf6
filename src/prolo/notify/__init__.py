"""Reminders: the outbox, the worker, email and iCalendar, private calendar feeds."""
