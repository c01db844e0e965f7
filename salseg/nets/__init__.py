"""Networks and context modules behind one registry: ``build(network, module, in_channels=..., num_classes=...)``."""

from salseg.nets.registry import (build, check_pair, get_module, get_network, invalid_reason, modules, networks,
                                  register_module, register_network, valid_modules)

__all__ = ["build", "check_pair", "get_module", "get_network", "invalid_reason", "modules", "networks",
           "register_module", "register_network", "valid_modules"]
