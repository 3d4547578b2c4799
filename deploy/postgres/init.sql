-- Run once, when the compose stack's PostgreSQL creates its database: the
-- statistics the Database Metrics dashboard's Query Execution Time panel
-- reads (postgres-exporter's queries.yaml).
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
