"""A small todo service: migrations, named commands and named queries for efsqlite."""
