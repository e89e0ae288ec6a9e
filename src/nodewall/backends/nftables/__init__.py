"""The nftables backend: a `NodePolicy` held in one `inet nodewall` table (design note in
`nodewall.backends.nftables.backend`)."""
