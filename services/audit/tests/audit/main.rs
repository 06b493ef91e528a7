//! The audit service against real databases: events through the embedded
//! bus into per-tenant chains, idempotency, tampering found by the
//! verification, and the gRPC API with its access rules.
//!
//! Every scenario runs twice, on SQLite (a temp file) and on PostgreSQL (a
//! fresh `audit_test_<random>` database, dropped afterwards; skipped with a
//! notice when PostgreSQL is unreachable, failed when `CI=true`).

// Test helpers outside `#[test]` functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
// `Audit::build`, the DynamoDB store and head signing: their own
// scenarios, in this binary so that the crate links its tests once.
mod build;
mod dynamo;
mod log;
mod signing;
mod support;
mod tamper;

macro_rules! on_both_backends {
    ($($module:ident::$name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::support::run(crate::support::Backend::Sqlite, crate::$module::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::support::run(crate::support::Backend::Postgres, crate::$module::$name).await;
                }
            )*
        }
    };
}

on_both_backends!(
    log::bus_events_become_per_tenant_chains,
    log::redelivered_events_are_recorded_once,
    log::concurrent_appends_keep_every_chain_gapless,
    log::outcomes_ack_retry_and_dead_letter,
    log::the_page_token_key_survives_a_restart,
    tamper::an_untouched_chain_verifies,
    tamper::a_changed_field_is_reported_at_its_seq,
    tamper::a_rehashed_forgery_is_caught_at_the_next_record,
    tamper::deleted_records_are_reported,
    api::admins_list_their_own_tenants_records,
    api::non_admins_and_anonymous_callers_are_refused,
    api::pages_and_filters,
    api::bad_list_requests_are_invalid_arguments,
    api::verification_over_grpc_reports_tampering,
);
