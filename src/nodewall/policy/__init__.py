"""The node policy, the one interface between "what should be allowed" and "how the kernel is
told": `model` (NodePolicy, AddressSet, Rule), `reasons` (every reason text the compiler writes),
`evaluator` (the reference semantics every backend is tested against)."""
