"""The write path the writer Lambda runs: wire format, settings, commands, migrations, applier.

``wire`` parses and validates command messages (pydantic), ``apply`` is the stateless applier
the writer, the tests and replay share, ``writer`` routes SQS FIFO events to it per database.
Imports core; never the read path, the client, the CLI or the local stack.
"""
