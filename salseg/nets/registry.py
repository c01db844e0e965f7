"""Registry of networks and context modules, and the one factory ``build`` that composes any valid pair.

A network registers a factory ``factory(in_channels, num_classes, dim, plans, **options) -> nn.Module`` with its
constraints; a module registers how it attaches (``slice``: a head over K neighbouring slices' 64-channel backbone
features; ``attention``: an option the network's own attention blocks understand, e.g. RecA). Third-party packages
add either through the entry-point groups ``salseg.networks`` and ``salseg.modules``.

Module kinds: ``none`` (the baseline), ``slice`` (a head over K neighbouring slices), ``attention`` (an option of
the network's own self-attention) and ``stack`` (the context baseline: K neighbouring slices as K*C input channels
of the unchanged 2D network, salseg.nets.modules.stack). A module entry wraps the backbone itself: its ``attach``
(or the default of its kind, ``set_default_attach``, registered by the package that implements the kind) gets a
``backbone(in_channels, num_classes, dim, **extra)`` builder and returns the model, so this registry only checks
and dispatches and imports no network or module.

Options: ``build`` splits one flat options dict between the module (the names its entry declares) and the network.
A factory refuses a name it does not take (``check_options``); ``build`` turns that into one message naming the
keys of both the network and the module, so a typo (``-o scal=0.1``) never passes silently.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

from torch import nn

from salseg.errors import ConfigError, SalsegError
from salseg.nets.capabilities import DEFAULT_POSITION, check_position_name
from salseg.nets.option_types import check_option_values

log = logging.getLogger(__name__)

NETWORK_GROUP = "salseg.networks"
MODULE_GROUP = "salseg.modules"
# built-in families, imported lazily on first lookup (keeps `import salseg` light)
_BUILTIN = ["salseg.nets.unet", "salseg.nets.resenc", "salseg.nets.mtunet", "salseg.nets.swinunet", "salseg.nets.swinunetr",
            "salseg.nets.modules", "salseg.nets.modules.reca", "salseg.nets.diffusion"]


@dataclass
class NetworkEntry:
    name: str
    factory: Callable[..., nn.Module]
    dims: tuple[int, ...] = (2,)
    fixed_size: tuple[int, ...] | None = None      # e.g. (224, 224): the only input size it accepts
    divisor: int = 1                               # every spatial size must be a multiple of this
    has_self_attention: bool = False               # RecA applies only where there is self-attention
    kind: str = "segmenter"                        # "segmenter" or "diffusion"
    recipe: dict = field(default_factory=dict)     # default training recipe (optimizer, lr, batch_size, ...)
    description: str = ""
    presets: dict = field(default_factory=dict)    # named option sets (``--option preset=NAME``), e.g. MedSegDiff's


@dataclass
class ModuleEntry:
    name: str
    kind: str                                       # "none", "slice", "attention" or "stack"
    build: Callable[..., Any] | None = None         # slice: build(features, num_classes, **opts) -> head module;
    #                                                 stack: build(**opts) -> {"k": K}; attention: the network
    #                                                 itself applies (and checks) the options
    options: tuple[str, ...] = ()                   # option names that belong to the module, not the network
    description: str = ""
    attach: Callable[..., nn.Module] | None = None  # attach(entry, backbone, *, in_channels, num_classes,
    #                                                 position, level, **module options) -> model; None: the
    #                                                 default of the kind (set_default_attach)


_networks: dict[str, NetworkEntry] = {}
_modules: dict[str, ModuleEntry] = {}
_default_attach: dict[str, Callable[..., nn.Module]] = {}
_loaded = False


def register_network(name: str, *, dims=(2,), fixed_size=None, divisor=1, has_self_attention=False,
                     kind="segmenter", recipe=None, description="", presets=None):
    """Decorator for a network factory ``f(in_channels, num_classes, dim, plans, **options)``."""

    def deco(factory):
        _networks[name] = NetworkEntry(name, factory, tuple(dims), tuple(fixed_size) if fixed_size else None,
                                       int(divisor), bool(has_self_attention), kind, dict(recipe or {}),
                                       description or (factory.__doc__ or "").strip().split("\n")[0],
                                       dict(presets or {}))
        return factory

    return deco


def register_module(name: str, *, kind: str, options=(), description="", attach=None):
    """Decorator for a module. For ``kind="slice"`` it decorates ``build(features, num_classes, **opts)``.
    ``attach`` wraps the backbone (see ``ModuleEntry``); None uses the default of ``kind``."""

    def deco(build):
        _modules[name] = ModuleEntry(name, kind, build, tuple(options),
                                     description or (build.__doc__ or "").strip().split("\n")[0], attach)
        return build

    return deco


def set_default_attach(kind: str, attach: Callable[..., nn.Module]) -> None:
    """How a module of ``kind`` that brings no ``attach`` of its own wraps the backbone (set by the package that
    implements the kind, e.g. salseg.nets.modules for ``slice``)."""
    _default_attach[kind] = attach


def _attach_none(entry: ModuleEntry, backbone: Callable[..., nn.Module], *, in_channels: int, num_classes: int,
                 **_) -> nn.Module:
    """The baseline: the network alone."""
    return backbone(in_channels, num_classes)


_modules["none"] = ModuleEntry("none", "none", None, (), "the baseline network alone", _attach_none)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a family not installed in this build; anything else is a bug
            if e.name != mod:
                raise
    for group in (NETWORK_GROUP, MODULE_GROUP):
        for ep in entry_points(group=group):
            try:
                ep.load()  # importing the target runs its @register_* decorators
            except Exception as e:  # a broken plug-in must not break salseg
                log.warning("could not load %s entry point %r: %s", group, ep.name, e)


def networks() -> dict[str, NetworkEntry]:
    _load()
    return dict(_networks)


def modules() -> dict[str, ModuleEntry]:
    _load()
    return dict(_modules)


def get_network(name: str) -> NetworkEntry:
    nets = networks()
    if name not in nets:
        raise SalsegError(f"unknown network {name!r}; available: {', '.join(sorted(nets))}")
    return nets[name]


def get_module(name: str) -> ModuleEntry:
    mods = modules()
    if name not in mods:
        raise SalsegError(f"unknown module {name!r}; available: {', '.join(sorted(mods))}")
    return mods[name]


def invalid_reason(network: str, module: str, dim: int = 2) -> str | None:
    """Why ``network`` + ``module`` in ``dim`` D cannot be built, or None if it can."""
    net, mod = get_network(network), get_module(module)
    if dim not in net.dims:
        return f"{network} is {'/'.join(f'{d}D' for d in net.dims)} only (asked for {dim}D)"
    if mod.kind == "none":
        return None
    if mod.kind == "stack":
        what = (f"{module} feeds K neighbouring 2D slices to a 2D segmentation network as K x C input channels "
                f"(2d/2.5d configurations)")
        if net.kind != "segmenter":
            return f"{what}; {network} is a {net.kind} model, not a segmentation network"
        if dim != 2 or 2 not in net.dims:
            return f"{what}; it does not apply in {dim}D"
        return None
    if net.kind != "segmenter":
        return f"{network} is a {net.kind} model; context modules attach to segmentation backbones only"
    if mod.kind == "slice":
        if dim != 2 or 2 not in net.dims:
            return f"{module} is a slice-recurrent head over neighbouring 2D slices; it needs a 2D backbone"
        return None
    if mod.kind == "attention":
        if not net.has_self_attention:
            return f"{module} replaces self-attention, and {network} has no self-attention"
        return None
    return f"module {module!r} has unknown kind {mod.kind!r}"


def valid_modules(network: str, dim: int = 2) -> list[str]:
    return [m for m in sorted(modules()) if invalid_reason(network, m, dim) is None]


def check_pair(network: str, module: str, dim: int = 2) -> None:
    reason = invalid_reason(network, module, dim)
    if reason:
        raise SalsegError(f"invalid pair {network} + {module} ({dim}D): {reason}. "
                          f"Valid modules for {network} in {dim}D: {', '.join(valid_modules(network, dim)) or 'none'}")


class UnknownOptionError(ConfigError):
    """A factory was given option names it does not take; ``owner``, ``bad`` and ``known`` say which."""

    def __init__(self, owner: str, bad, known):
        self.owner, self.bad, self.known = owner, sorted(bad), sorted(known)
        super().__init__(f"{owner} does not know option(s) {', '.join(self.bad)}; "
                         f"known: {', '.join(self.known) or 'none'}")


def check_options(network: str, options: dict, known=()) -> None:
    """Refuse options a network factory does not take, naming them and the known ones."""
    bad = set(options) - set(known)
    if bad:
        raise UnknownOptionError(network, bad, known)


# arguments every network factory gets from ``build`` itself, never from the user's options
_FRAMEWORK_ARGS = {"in_channels", "num_classes", "dim", "plans", "attention"}


def factory_options(factory: Callable) -> tuple[set[str], bool]:
    """(keywords named in ``factory``'s signature, whether it also takes ``**options``)."""
    params = inspect.signature(factory).parameters.values()
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, any(p.kind == p.VAR_KEYWORD for p in params)


def _unknown_options(network: str, module: str, bad, net_known, owner: str | None = None) -> ConfigError:
    mod = get_module(module)
    declared = {k for m in modules().values() for k in m.options}  # module keys (strategy, align) go to modules
    net_known = sorted(set(net_known) - _FRAMEWORK_ARGS - declared)
    msg = f"{owner or network} does not know option(s) {', '.join(sorted(bad))}"
    if mod.kind != "none":
        msg += f" (nor does module {module})"
    msg += f"; {network} takes: {', '.join(net_known) or 'none'}"
    if mod.kind != "none":
        msg += f"; {module} takes: {', '.join(sorted(mod.options)) or 'none'}"
    return ConfigError(msg)


def _call_factory(net: NetworkEntry, module: str, *args, **kwargs) -> nn.Module:
    """``net.factory(*args, **kwargs)``; an option it does not take is refused naming the network's and the
    module's keys (checked on the signature where the factory has no ``**options``, else by its check_options)."""
    named, var_kw = factory_options(net.factory)
    check_option_values(net.name, net.factory, {k: v for k, v in kwargs.items() if k not in ("deep_supervision",)})
    if not var_kw:
        if "deep_supervision" not in named:  # a plug-in without deep supervision: nothing to switch
            kwargs.pop("deep_supervision", None)
        bad = set(kwargs) - named
        if bad:
            raise _unknown_options(net.name, module, bad, named)
    try:
        return net.factory(*args, **kwargs)
    except UnknownOptionError as e:  # the factory's own check; its owner may say more ("medsegdiff (preset x)")
        if e.owner != net.name and not e.owner.startswith(net.name + " "):
            raise
        raise _unknown_options(net.name, module, e.bad, set(e.known) | named, owner=e.owner) from None


def split_options(module: str, options: dict) -> tuple[dict, dict]:
    """(network options, module options) from one flat options dict."""
    mod = get_module(module)
    mod_opts = {k: v for k, v in options.items() if k in mod.options}
    net_opts = {k: v for k, v in options.items() if k not in mod.options}
    return net_opts, mod_opts


def build(network: str, module: str = "none", *, in_channels: int, num_classes: int, dim: int = 2,
          plans: dict | None = None, position: str = "head", level: int | None = None,
          deep_supervision: bool = True, **options) -> nn.Module:
    """Build ``network`` with ``module`` attached. Raises SalsegError naming why a pair is invalid.

    ``position`` places a slice module: ``head`` (default, the released code), ``bottleneck``, ``skip`` (at encoder
    level ``level``, the deepest skip by default) or ``parallel``; see salseg.nets.modules.positions. The model
    records it as ``model.position``.

    ``deep_supervision`` is passed to every backbone the same way, whatever the module: in training mode a network
    that has deep-supervision outputs returns ``[full resolution, 1/2, ...]`` (a slice model: its own full-resolution
    output first, then the backbone's lower-resolution outputs of the centre slice); it is applied iff the model's
    declared capabilities say so (``capabilities_of(model).deep_supervision``, salseg.nets.capabilities). Eval mode
    always returns one full-resolution tensor.
    """
    check_pair(network, module, dim)
    position = check_position_name(position or DEFAULT_POSITION)
    net, mod = get_network(network), get_module(module)
    if mod.kind != "slice" and position != DEFAULT_POSITION:
        raise SalsegError(f"module position {position!r} applies to slice modules only; {module!r} is "
                          f"{'no module' if mod.kind == 'none' else 'a ' + mod.kind + ' module'} (use position head)")
    if level is not None and position != "skip":
        raise SalsegError(f"a module level ({level}) applies to the 'skip' position only, not {position!r}")
    net_opts, mod_opts = split_options(module, options)
    ds = bool(deep_supervision)

    def backbone(cin: int, cout: int, backbone_dim: int = dim, **extra) -> nn.Module:
        """The network from its factory (the run's plans, deep supervision and network options)."""
        return _call_factory(net, module, cin, cout, backbone_dim, plans, deep_supervision=ds, **net_opts, **extra)

    attach = mod.attach or _default_attach.get(mod.kind)
    if attach is None:
        raise SalsegError(f"module {module!r} (kind {mod.kind!r}) states no way to attach to a network")
    return attach(mod, backbone, in_channels=in_channels, num_classes=num_classes, position=position, level=level,
                  **mod_opts)
