"""Alembic environment and revisions of the store's schema (see ``dspyq.store.migrate``)."""
