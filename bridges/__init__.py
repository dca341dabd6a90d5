"""Connection points: the directory and its import, invitations and join credentials."""
