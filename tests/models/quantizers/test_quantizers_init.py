"""``make_quantizer`` (``lapo.models.quantizers``): one kind per name."""

from __future__ import annotations

import pytest

from lapo.models.quantizers import FSQ, NoQuantizer, VectorQuantizer, make_quantizer


def test_make_quantizer_builds_each_kind_and_rejects_unknown() -> None:
    assert isinstance(make_quantizer("vq", codebook_size=8), VectorQuantizer)
    assert isinstance(make_quantizer("none"), NoQuantizer)
    assert isinstance(make_quantizer("fsq", levels=(5, 5)), FSQ)
    with pytest.raises(ValueError, match="vq, none, fsq"):
        make_quantizer("rvq")
