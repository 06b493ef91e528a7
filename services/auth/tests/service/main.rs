//! Service tests: the `AuthService` adapter over a real database, called
//! in process.
//!
//! Every scenario runs twice, on SQLite (a temp file) and on PostgreSQL (a
//! fresh `auth_test_<random>` database, dropped afterwards; skipped with a
//! notice when PostgreSQL is unreachable, failed when `CI=true`). Time is a
//! manual clock, so expiry and lockouts are tested without sleeping.

// Test helpers outside `#[test]` functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cleanup;
mod codes;
mod keys;
mod mfa;
mod revocation;
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
    sign_up_writes_its_event_in_the_same_transaction,
    login_returns_a_refresh_token_stored_only_as_a_hash,
    access_tokens_carry_cognito_claims,
    refresh_rotates_and_keeps_the_login_time,
    reusing_a_spent_token_revokes_the_whole_login,
    bad_refresh_tokens_get_one_answer_and_change_nothing,
    logins_expire_from_the_login_not_the_last_refresh,
    concurrent_refreshes_of_one_token_cannot_both_succeed,
    logout_revokes_the_login_and_reveals_nothing,
    global_sign_out_revokes_every_login_of_the_caller,
    admin_global_sign_out_is_for_admins_of_the_same_tenant,
    lockout_after_five_failures_doubles_up_to_fifteen_minutes,
    success_resets_the_failure_count,
    unknown_emails_lock_exactly_like_known_ones,
    signing_keys_rotate_with_overlap,
    signing_keys_in_the_database_are_sealed,
    signing_keys_sealed_by_kms,
    mfa_secrets_sealed_by_kms,
    unknown_and_known_emails_cost_the_same_work,
    sign_up_needs_the_emailed_code,
    codes_expire_die_after_wrong_tries_and_resend_is_throttled,
    forgotten_passwords_reset_with_a_code_and_revoke_logins,
    a_reset_code_also_confirms_the_email,
    a_reset_clears_the_lockout,
    totp_enrolment_challenge_replay_and_recovery,
    tenant_mfa_modes,
    failed_logins_are_limited_per_client_address,
    revoked_access_tokens_are_listed_and_refused,
    mesh_verifiers_pull_revocations,
    the_sweeper_deletes_only_what_cannot_matter,
    admins_reset_a_lost_authenticator,
    users_remove_their_own_authenticator,
);
