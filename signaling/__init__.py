"""The live protocol: typed messages, connections, the session event hub (issue 2 of the plan)."""
