"""Real peers for tests: a coturn TURN server and a headless Chromium, started on loopback."""
