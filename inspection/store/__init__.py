"""The record store: every verdict, the rules that made it, stations, API keys, stored images.

SQLite in WAL mode is the embedded default (`$QC_HOME/qc.db`); PostgreSQL works through the
same code when `QC_DATABASE_URL` names it. The schema is managed by Alembic migrations
(`qc db upgrade`, also applied when the service starts).

Example::

    from inspection.store.database import Database
    from inspection.store.records import RecordStore

    db = Database.from_settings(settings)   # opens and migrates
    store = RecordStore(db)
    store.add_station("line1-cam2", rules=StationRules())
"""
