"""Domains: the kinds of scenes fineimagen draws and judges, each behind `base.Domain`.

A spec names its domain (`"domain": "openmoji"`); a spec that does not is read in the
domain of the model that draws it (a model folder's `model_index.json` says `"domain"`,
shapes where it does not). Adding a domain: its folder and one `register_domain` line.
"""

from __future__ import annotations

from ..control.regions import CompiledScene
from ..errors import InputError
from ..files import loads
from .base import Domain
from .openmoji.domain import OpenMojiDomain
from .shapes.domain import ShapesDomain

DEFAULT_DOMAIN = "shapes"
_DOMAINS: dict[str, Domain] = {}


def register_domain(domain: Domain) -> Domain:
    """Make a domain known by its name (a later one of the same name replaces it)."""
    _DOMAINS[domain.name] = domain
    return domain


def get_domain(name: str | Domain | None = None) -> Domain:
    """The registered domain of a name (None: the default, shapes)."""
    if isinstance(name, Domain):
        return name
    name = name or DEFAULT_DOMAIN
    if name not in _DOMAINS:
        raise InputError(f"unknown domain {name!r} (known: {', '.join(sorted(_DOMAINS))})")
    return _DOMAINS[name]


def domain_names() -> list[str]:
    return sorted(_DOMAINS)


def parse_scene(spec: dict | str, domain: str | Domain | None = None):
    """The scene of a spec (a dict or JSON text) in the domain it names, else in `domain`."""
    if isinstance(spec, str):
        spec = loads(spec)
    if not isinstance(spec, dict):
        raise InputError(f"a scene spec is a JSON object, got {type(spec).__name__}")
    return get_domain(spec.get("domain", domain)).parse_spec(spec)


def domain_of(scene) -> Domain:
    """The domain a scene was read in (a scene that says so), else the registered one
    whose scenes are of its type."""
    if isinstance(getattr(scene, "domain", None), str):
        return get_domain(scene.domain)
    for domain in _DOMAINS.values():
        if isinstance(scene, domain.scene_type):
            return domain
    raise InputError(f"no registered domain draws a {type(scene).__name__}")


def compile_scene(spec, size: int, seed: int = 0, prompt: str | None = None,
                  like: CompiledScene | None = None,
                  domain: str | Domain | None = None) -> CompiledScene:
    """A spec (dict, JSON text or a parsed scene) compiled to regions by its domain."""
    scene = spec if not isinstance(spec, dict | str) else parse_scene(spec, domain)
    return domain_of(scene).compile_scene(scene, size, seed, prompt, like)


register_domain(ShapesDomain())
register_domain(OpenMojiDomain())
register_domain(OpenMojiDomain("openmoji-coco"))
