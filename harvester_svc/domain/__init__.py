"""Harvester's pure rules: worker states, queue configuration, the worker adjuster's arithmetic,
each batch system's state mapping. No I/O."""
