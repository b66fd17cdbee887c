"""The read path the reader Lambda runs: requests, the read connection, snapshots, answers.

``connection`` runs one caller query under the authorizer and budgets, ``snapshot`` keeps the
private copies in ``/tmp``, ``reader`` parses requests (Invoke and Function URL) and answers,
``exceptions`` holds the typed errors every answer can carry. Imports core only: no pydantic,
boto3 or powertools on the reader's cold start.
"""
