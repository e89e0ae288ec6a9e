"""The node agent (`nodewall agent`): keeps this node's kernel holding the policy the control
plane (or a local spec file) gives it, through restarts, outages, drift and reboots.

One straight path: a policy source (`poller` long-polling the server, or `specsource` watching a
file) hands decoded `NodePolicy`s to the `loop`, whose `keeper` applies them through one
long-lived backend, verifies them, caches the last verified one (`cache`) and reports what the
kernel holds (`reporter`). At boot the cached policy, or the `failsafe` one, is applied before
systemd is told READY (`notify`).

Footprint rule: the agent imports neither the server stack (FastAPI, SQLAlchemy, uvicorn) nor
the spec model, nor typer or rich; only `specsource` (the serverless mode) loads the spec model
and the compiler, lazily. Idle, it wakes only for its long-poll and its verify timer.
"""
