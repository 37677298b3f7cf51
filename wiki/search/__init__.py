"""Full-text search over published pages (Whoosh, kept behind this package).

index.py follows `page_events` into the index; query.py parses and ranks; views.py serves it.
"""
