//! End-to-end tests: the whole platform on port-0 listeners, over REST
//! through the gateway and over mTLS gRPC to the services. Every scenario
//! runs on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aws_profile;
mod bad_input;
mod cognito;
mod events;
mod federation;
mod grpc;
// The IAM policies under moto (its own scenarios, in this binary so that
// the suite links once).
mod iam;
mod mtls;
mod ops;
mod rest;
mod sessions;
mod tokens;
mod vault;

use cloudsec_tests::{Backend, Sandbox};

/// Generates one test per scenario and backend.
macro_rules! on_both_backends {
    ($($module:ident :: $scenario:ident => $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let sandbox = crate::Sandbox::start(crate::Backend::Sqlite).await.expect("sqlite sandbox");
                    crate::$module::$scenario(&sandbox).await;
                    sandbox.stop().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(sandbox) = crate::Sandbox::start(crate::Backend::Postgres).await else { return };
                    crate::$module::$scenario(&sandbox).await;
                    sandbox.stop().await;
                }
            )*
        }
    };
}

on_both_backends! {
    rest::document_lifecycle => rest_document_lifecycle,
    rest::list_pages_and_filters => rest_list_pages_and_filters,
    rest::tenants_are_isolated => rest_tenants_are_isolated,
    rest::stale_etag_conflicts => rest_stale_etag_conflicts,
    rest::sign_up_and_login_errors => rest_sign_up_and_login_errors,
    grpc::document_lifecycle => grpc_document_lifecycle,
    grpc::tenants_are_isolated => grpc_tenants_are_isolated,
    bad_input::malformed_json => bad_malformed_json,
    bad_input::unknown_fields => bad_unknown_fields,
    bad_input::wrong_types => bad_wrong_types,
    bad_input::missing_required_fields => bad_missing_required_fields,
    bad_input::oversized_body => bad_oversized_body,
    bad_input::forged_page_token => bad_forged_page_token,
    bad_input::unknown_route => bad_unknown_route,
    tokens::missing_token => token_missing,
    tokens::expired_and_not_yet_valid => token_expired_and_not_yet_valid,
    tokens::alg_none_and_hs256 => token_alg_none_and_hs256,
    tokens::other_key => token_other_key,
    tokens::wrong_audience_and_issuer => token_wrong_audience_and_issuer,
    mtls::refuses_clients_without_mesh_certificate => mtls_refuses_outsiders,
    ops::health_reflection_and_metrics => ops_health_reflection_and_metrics,
    ops::restart_reuses_data => ops_restart_reuses_data,
    ops::drain_finishes_what_was_accepted => ops_drain_finishes_what_was_accepted,
    ops::internal_errors_are_opaque => ops_internal_errors_are_opaque,
    events::changes_reach_the_audit_log => events_changes_reach_the_audit_log,
    sessions::refresh_rotates_and_reuse_revokes => sessions_refresh_rotates_and_reuse_revokes,
    sessions::lockout_answers_known_and_unknown_alike => sessions_lockout_answers_known_and_unknown_alike,
    sessions::openid_discovery_and_id_tokens => sessions_openid_discovery_and_id_tokens,
    sessions::admins_manage_the_users_of_their_tenant => sessions_admins_manage_the_users_of_their_tenant,
    sessions::change_password_checks_and_revokes => sessions_change_password_checks_and_revokes,
    sessions::groups_open_restricted_documents => sessions_groups_open_restricted_documents,
    sessions::sign_up_confirmation_and_password_reset => sessions_sign_up_confirmation_and_password_reset,
    sessions::codes_never_travel_in_clear => sessions_codes_never_travel_in_clear,
    sessions::mfa_enrolment_and_login => sessions_mfa_enrolment_and_login,
    sessions::groups_map_to_scopes => sessions_groups_map_to_scopes,
}

/// Asserts a JSON error body in the gateway's shape and returns it.
pub(crate) async fn expect_error(
    response: reqwest::Response,
    status: u16,
    code: i64,
    message_part: &str,
) -> serde_json::Value {
    let got = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert_eq!(got, status, "unexpected status, body: {text}");
    let body: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("error body is not JSON: {text}"));
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(
        message
            .to_lowercase()
            .contains(&message_part.to_lowercase()),
        "message {message:?} does not mention {message_part:?}"
    );
    body
}

/// The ids of the caller's documents, as REST lists them.
pub(crate) async fn document_ids(sb: &Sandbox, token: &str) -> Vec<String> {
    let r = sb.get("/v1/documents?pageSize=100", token).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    body["documents"]
        .as_array()
        .map(|docs| {
            docs.iter()
                .map(|d| d["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Creates a document over REST and returns its JSON.
pub(crate) async fn create(sb: &Sandbox, token: &str, doc: serde_json::Value) -> serde_json::Value {
    let r = sb.post("/v1/documents", token, &doc).await;
    let status = r.status();
    let text = r.text().await.expect("body");
    assert_eq!(status, 200, "create failed: {text}");
    serde_json::from_str(&text).expect("json")
}
