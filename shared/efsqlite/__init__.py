"""efsqlite: SQLite on Amazon EFS with queued, exactly-once writes and read-only readers.

Importing the package is free: the reader's cold start must not pay for pydantic or boto3,
so import the module you need (``efsqlite.client``, ``efsqlite.write.wire``, ...).
"""

__version__ = "0.1.0"
