"""Full-text search over published pages (Whoosh, behind this package)."""
