"""The API's routers, one per kind of caller: `platform` (operators: platform, projects, VPCs,
services, nodes, integrations), `agents` (node agents: policy long-poll, status reports) and
`health` (metrics, liveness)."""
