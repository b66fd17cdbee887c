-- Copy into examples/todo/migrations/ to walk through "force a failure, redrive it":
-- commands sent with expect_schema 2 fail (and reach the DLQ) until this file is there.
ALTER TABLE todos ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
