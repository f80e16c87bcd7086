"""Optional dependencies (``lapo.data.optional``): a missing extra is named."""

from __future__ import annotations

import pytest

from lapo.data.optional import require


def test_missing_extra_is_named() -> None:
    with pytest.raises(ImportError, match=r"pip install 'lapo\[formats\]'"):
        require("lapo_no_such_module", "reading a thing")
