"""Media statistics of a session for the hall operators' console."""
