"""Calendar, booking and planners."""
