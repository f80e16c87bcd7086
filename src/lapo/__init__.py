"""lapo: Learning to Act without Actions (Schmidt & Jiang, ICLR 2024, arXiv 2312.10812).

Subpackages follow the pipeline: ``lapo.envs`` (Procgen), ``lapo.data`` (on-disk datasets),
``lapo.stages`` (collection and training loops), ``lapo.cli`` (the ``lapo`` command).
Nothing is imported or executed at import time beyond this docstring and the version.
"""

__version__ = "0.1.0"
