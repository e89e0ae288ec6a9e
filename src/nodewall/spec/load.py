"""Reading a deployment spec: file to document to validated `DeploymentSpec`, every error at once.

`parse_spec` checks structure first (types, lengths, formats: pydantic collects all of those at
once), then the rules that span the document (`nodewall.spec.rules`: references, duplicates,
per-type settings, ECE constraints, port pins), also over the structurally valid parts of a
broken spec. Either way it raises one `SpecError` holding every problem with its path. Files are
read by `nodewall.spec.document` (every reading limit). It never compiles, allocates or touches
a kernel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from nodewall.errors import SpecError, format_path
from nodewall.gcpause import collector_paused
from nodewall.spec.document import read_document
from nodewall.spec.model import (
    DeploymentSpec,
    IntegrationSpec,
    Project,
    ServiceSpec,
    UserConfig,
    Vpc,
)
from nodewall.spec.rules import Positions, document_errors, user_config_errors

_M = TypeVar("_M", bound=BaseModel)


def _pydantic_errors(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[
    tuple[str, str]
]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if p not in ("function-before[_ip_filter_item()]",))
        errors.append((format_path(prefix + loc), str(err["msg"])))
    return errors


def parse_spec(data: Any) -> DeploymentSpec:
    """Validate a spec document (already parsed from YAML or JSON); raise SpecError."""
    with collector_paused():  # models and parsed networks by the thousand (`nodewall.gcpause`)
        return _parse_spec(data)


def _parse_spec(data: Any) -> DeploymentSpec:
    if not isinstance(data, dict):
        raise SpecError([("", "the spec must be a mapping with platform, project and services")])
    try:
        spec = DeploymentSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_pydantic_errors(exc) + _partial_document_errors(data)) from None
    errors = document_errors(spec)
    if errors:
        raise SpecError(errors)
    return spec


def _partial_document_errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The cross-field errors among the parts of a spec that are structurally valid, so a
    spec with both kinds of problems reports them all at once."""
    def valid(model: type[_M], item: Any) -> _M | None:
        try:
            return model.model_validate(item)
        except ValidationError:
            return None

    broken: set[str] = set()
    kept: dict[str, tuple[list[Any], list[int]]] = {}
    for key, model in (("vpcs", Vpc), ("services", ServiceSpec), ("integrations", IntegrationSpec)):
        raw = data.get(key, [])
        items: list[Any] = []
        indices: list[int] = []
        for i, item in enumerate(raw if isinstance(raw, list) else []):
            parsed = valid(model, item)
            if parsed is not None:
                items.append(parsed)
                indices.append(i)
            elif isinstance(item, dict):
                name = item.get("id", item.get("name"))
                broken.update([name] if isinstance(name, str) else [])
        kept[key] = (items, indices)
    project = valid(Project, data.get("project"))
    spec = DeploymentSpec.model_construct(
        platform=None, project=project or Project.model_construct(name="", base_port=None),
        vpcs=kept["vpcs"][0], services=kept["services"][0],
        integrations=kept["integrations"][0],
    )
    where = Positions(vpcs=tuple(kept["vpcs"][1]), services=tuple(kept["services"][1]),
                      integrations=tuple(kept["integrations"][1]),
                      broken_names=frozenset(broken), project_valid=project is not None)
    return document_errors(spec, where)


def load_spec(path: str | Path) -> DeploymentSpec:
    """A spec file read strictly (`nodewall.spec.document`: limits, encoding, YAML 1.2 or
    JSON, keys given twice) and validated; SpecError with every problem otherwise."""
    return parse_spec(read_document(path))


def validate_user_config(service_type: str, user_config: Any) -> UserConfig:
    """Validate one service's user_config for its type; paths start at `user_config`."""
    try:
        config = UserConfig.model_validate(user_config)
    except ValidationError as exc:
        raise SpecError(_pydantic_errors(exc, ("user_config",))) from None
    errors = user_config_errors(service_type, config, "user_config")
    if errors:
        raise SpecError(errors)
    return config
