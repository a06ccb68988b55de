"""Harvester's own tables: the workers it submitted and what it still has to tell the server."""
