"""The core every part stands on: errors, types, names, the pinned SQLite, connections, ledger.

Imports the standard library and the pinned SQLite build (apsw) only, so the reader's cold
start pays for nothing else. ``engine`` is the only module that imports SQLite; ``connections``
is the one place that decides how a connection is opened (read-write or read-only);
``ledger`` owns the ``_efsqlite_*`` tables and the position encoding.
"""
