"""`nodewall lab`: a whole platform on one machine, in network namespaces.

A control plane (`nodewall server` on SQLite, over TLS), several services whose nodes are
namespaces each running a real `nodewall agent`, real PostgreSQL servers on the pg nodes, a real
SOCKS5 proxy for the `ece` service, and client hosts. The lab measures who can reach what with
real connections, compares every cell with the policy's own verdict (`explain`), makes live
changes through the API and times them until every node's kernel enforces them, and writes a
self-contained HTML report.

Everything it creates carries its run prefix (`nwlab` + hex) and is recorded in its work
directory, so that `nodewall lab down` removes what even a killed run left. It never touches the
root namespace's firewall or addresses: every link is created inside the lab's namespaces.
"""
