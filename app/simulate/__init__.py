"""Simulated connection points: the rooms of a rehearsal, driven against a running server.

`plan` decides, from a seed, what each room will do (pure); `point` is one room's client (a real
WebSocket, and for a chosen few real aiortc media); `worker` runs a share of the rooms in one
process; `fleet` starts the workers and adds up what they saw; `links` finds the rooms' join
credentials.
"""
