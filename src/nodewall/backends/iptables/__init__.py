"""The iptables + ipset backend: `NODEWALL-` chains and `nodewall-` sets (design note in
`nodewall.backends.iptables.backend`)."""
