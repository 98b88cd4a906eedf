//! The store's conformance suite: every test runs against SQLite and against PostgreSQL
//! (`conformance!` makes one test per backend), plus a crash test for SQLite.
//!
//! PostgreSQL runs on 127.0.0.1:5432, database `test`, user `$PGUSER` or `postgres`, each
//! test in a schema of its own that is dropped at the end. When it is unreachable the tests
//! fail (with `DOORWARD_SKIP_PG=1` outside CI they print a loud message instead).

mod backends;
mod footage;
mod suite;

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let b = crate::backends::Sqlite::new();
                    crate::suite::$name(&b);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(b) = crate::backends::Postgres::new() {
                        crate::suite::$name(&b);
                    }
                }
            )*
        }
    };
}

conformance!(
    append_read_head,
    pending_can_be_awaited,
    i7_concurrent_appenders_keep_chain_order,
    i7_many_homes_appended_concurrently_each_verify,
    durable_across_reopen,
    migrations_idempotent_on_reopen,
    schema_newer_than_build_is_refused,
    i11_home_cannot_read_another_homes_rows,
    limit_audit_payload_too_large,
    limit_record_key_and_keystore_too_large,
    limit_read_rows,
    i8_full_queue_is_refused_then_drains,
    i7_store_refuses_gap_replay_and_fork,
    i7_store_with_chain_check_off_stores_a_fork,
    i7_checkpoint_must_sign_stored_head,
    a_refused_write_does_not_fail_the_writes_batched_with_it,
    limit_cached_heads_evicts_and_still_checks,
    limit_batch_size_one,
    export_verifies_offline,
    registry_round_trip_and_paging,
    device_state_and_keystore_round_trip,
    footage_round_trip_sealed_once_and_paging,
    footage_delete_and_retention,
    i11_footage_of_another_home_is_neither_read_nor_deleted,
    limit_footage_sizes,
    api_principals_round_trip_and_isolated,
);

mod crash;
