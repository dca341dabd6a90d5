"""Floor control over HTTP: the current floor and the speaking-time record of a session."""
