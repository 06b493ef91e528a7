//! Service tests: the `DocumentService` adapter against real databases.
//!
//! Every scenario runs twice, on SQLite (a temp file) and on PostgreSQL (a
//! fresh `documents_test_<random>` database, dropped afterwards; skipped
//! with a notice when PostgreSQL is unreachable, failed when `CI=true`).

// Test helpers outside `#[test]` functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// `Documents::build` and `run_until_stopped`, in this binary so that the
// crate links its tests once.
mod build;
mod content;
mod kms;
mod scenarios;
mod support;

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::support::run(crate::support::Backend::Sqlite, crate::scenarios::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::support::run(crate::support::Backend::Postgres, crate::scenarios::$name).await;
                }
            )*
        }
    };
}

on_both_backends!(
    crud_round_trip,
    output_only_fields_are_ignored,
    tenant_isolation,
    members_of_a_tenant_read_each_others_documents,
    etag_conflicts_abort_and_change_nothing,
    update_mask_changes_only_named_fields,
    pagination_with_filters,
    page_tokens_are_bound_to_tenant_and_filters,
    keyset_order_with_equal_and_ragged_timestamps,
    create_validation_writes_nothing,
    update_validation_changes_nothing,
    list_validation,
    bad_ids_are_invalid_arguments,
    missing_or_bad_tokens_are_unauthenticated,
    oversized_content_is_rejected,
    delete_removes_labels,
    over_the_wire,
    every_change_writes_its_event_atomically,
    restricted_documents_need_the_group,
);
