"""The compile stage: a validated `DeploymentSpec` and a node name in, that node's `NodePolicy`
out, every rule with its reason."""
