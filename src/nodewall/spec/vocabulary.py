"""The fixed words of a deployment spec: cloud providers, environments, name patterns.

Shared by the pydantic models (`nodewall.spec.model`), the cross-field rules
(`nodewall.spec.rules`) and the quick reading of well-formed specs (`nodewall.spec.quick`), so the
three cannot drift apart. Constants only: it imports nothing and does no work.
"""

from __future__ import annotations

PROVIDERS = ("aws", "google", "azure", "do", "upcloud")
ENVIRONMENTS = ("standard", "byoc", "ece")
#: project, VPC, service and node names
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
#: cloud names ("aws-eu-west-1"), service and integration types, component keys
IDENTIFIER_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
#: the ip_filter a service has when its user_config gives none
DEFAULT_IP_FILTER = ("0.0.0.0/0", "::/0")
