"""The point directory: every ward or commune that can be invited to a session."""
