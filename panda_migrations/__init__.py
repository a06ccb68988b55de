"""One migration history (Alembic) for every service's tables, on SQLite and PostgreSQL. It
ships inside the package so an installed `panda db upgrade` finds it; `panda_runtime.service.db`
runs it."""
