"""The core layer: what every other part of the agent and every driver may import.

It imports nothing else of ours, so drivers (which import only this) and the composing parts of
`agent` never form a cycle.
"""
