"""Kernel backends: render a `NodePolicy` into a ruleset and keep a kernel holding it.

`get_backend(name)` returns the backend by name ("nftables", "iptables", "auto"). Backends know
nothing of services or ip_filter: their only input is a `NodePolicy`.
"""
