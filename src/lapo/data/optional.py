"""Optional dependencies of the dataset formats (``pip install 'lapo[formats]'``), imported only
when a LeRobot or Minari dataset is read or written."""

from __future__ import annotations

import importlib
from types import ModuleType

#: The extra that installs them (pyproject.toml ``[project.optional-dependencies] formats``).
EXTRA = "formats"


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (e.g. ``pyarrow.parquet``, ``h5py``) or say how to install it.

    Raises:
        ImportError: it is not installed; the message names the purpose and the extra
            (``pip install 'lapo[formats]'``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise ImportError(
            f"{purpose} needs {package}, which is not installed; install it with "
            f"pip install 'lapo[{EXTRA}]' (or pip install {package})"
        ) from exc
