"""Address arithmetic shared by every stage: CIDR parsing, normalising, merging, intersecting."""
