"""The deployment spec (SPEC section 2): `model` (pydantic models of each item), `rules` (the
rules that span a document), `load` (file to validated spec, every error with its path) and
`warnings` (what `plan` and `validate` warn of)."""
