"""Networks and context modules behind one registry: ``build(network, module, in_channels=..., num_classes=...)``."""

# the context-module subpackage is imported first: importing it later would rebind the name ``salseg.nets.modules``
# from the registry function below to the subpackage
import salseg.nets.modules  # noqa: E402,F401  isort: skip
from salseg.nets.capabilities import Capabilities, capabilities_of
from salseg.nets.registry import (build, check_pair, get_module, get_network, invalid_reason, modules, networks,
                                  register_module, register_network, valid_modules)

__all__ = ["Capabilities", "build", "capabilities_of", "check_pair", "get_module", "get_network", "invalid_reason",
           "modules", "networks", "register_module", "register_network", "valid_modules"]
