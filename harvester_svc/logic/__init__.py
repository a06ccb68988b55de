"""Harvester's agents (adjuster, submitter, monitor, propagator, job fetcher, sweeper) and the
plugins that talk to each kind of resource."""
