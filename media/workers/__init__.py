"""Media forwarding spread over worker processes, one event loop per core (docs/media-plane.md §6.2)."""
