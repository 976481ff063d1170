"""qtforge: an embeddable, asyncio-native workflow orchestrator.

Workflows are graphs of steps; each step calls a method of a registered plugin. See
`qtforge.orchestration` for the orchestrator and workflow classes, and
`qtforge.executors` for where steps run.
"""

from . import executors as executors
from . import orchestration as orchestration
from . import store as store
from ._errors import Expected as Expected
from ._errors import PluginError as PluginError
from ._errors import PluginErrorCode as PluginErrorCode
from ._plugins import Plugin as Plugin
from ._plugins import PluginManager as PluginManager
from ._version import __version__ as __version__
from .orchestration import create_orchestrator as create_orchestrator

__all__ = [
    "Expected",
    "Plugin",
    "PluginError",
    "PluginErrorCode",
    "PluginManager",
    "__version__",
    "create_orchestrator",
    "executors",
    "orchestration",
    "store",
]
