//! The guide's whole stack: PostgreSQL, Redis and their exporters, and
//! node_exporter, started once for this binary (`Stack::shared`).

use multiweb_tests::stack::Stack;

/// Each exporter serves the families the guide's queries read.
#[test]
fn the_exporters_serve_the_guides_series() {
    let stack = Stack::shared();
    let has = |text: &str, family: &str| text.lines().any(|l| l.starts_with(family));
    let pg = stack.postgres_exporter.scrape();
    for family in [
        "pg_stat_database_numbackends{",
        "pg_stat_database_xact_commit{",
        "pg_database_size_bytes{",
        // From deploy/postgres-exporter/queries.yaml.
        "pg_stat_statements_calls_total{",
        "pg_stat_statements_seconds_total{",
        "pg_stat_statements_mean_exec_time_seconds{",
    ] {
        assert!(has(&pg, family), "postgres_exporter lacks {family}");
    }
    let redis = stack.redis_exporter.scrape();
    for family in [
        "redis_keyspace_hits_total ",
        "redis_keyspace_misses_total ",
        "redis_commands_processed_total ",
        "redis_memory_used_bytes ",
    ] {
        assert!(has(&redis, family), "redis_exporter lacks {family}");
    }
    let node = stack.node_exporter.scrape();
    for family in [
        "node_memory_MemTotal_bytes ",
        "node_disk_read_bytes_total{",
        "node_disk_written_bytes_total{",
    ] {
        assert!(has(&node, family), "node_exporter lacks {family}");
    }
}
