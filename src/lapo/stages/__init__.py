"""Pipeline stages, each a straight-line loop: data collection (more stages follow)."""
