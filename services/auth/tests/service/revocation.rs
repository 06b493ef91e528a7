//! Access-token revocation: what the auth service lists for verifiers, how
//! it refuses revoked tokens itself, and a mesh verifier pulling the list
//! over gRPC.

use std::time::Duration;

use cloudsec_proto::auth::v1 as pb;
use cloudsec_proto::auth::v1::auth_service_server::{AuthService, AuthServiceServer};
use cloudsec_runtime::token::{TokenError, TokenVerifier};
use tonic::{Code, Request};

use crate::support::{AUDIENCE, Harness, ISSUER, bearer, payload};

async fn list(
    h: &Harness,
    since: Option<prost_types::Timestamp>,
) -> pb::ListTokenRevocationsResponse {
    h.api
        .list_token_revocations(Request::new(pb::ListTokenRevocationsRequest { since }))
        .await
        .unwrap()
        .into_inner()
}

fn list_groups(token: &str) -> Request<pb::ListGroupsRequest> {
    bearer(token, pb::ListGroupsRequest {})
}

pub(crate) async fn revoked_access_tokens_are_listed_and_refused(h: Harness) {
    let alice = h.sign_up("alice").await;
    let carol = h.add_member("carol", &alice.tenant).await;
    let first = h.login_ok(&alice).await.access_token;
    let carols = h.login_ok(&carol).await.access_token;
    assert!(list(&h, None).await.revocations.is_empty());

    // A global sign-out revokes the caller's access tokens too.
    h.api
        .global_sign_out(bearer(&first, pb::GlobalSignOutRequest {}))
        .await
        .unwrap();
    let listed = list(&h, None).await;
    let now = h.core_now_secs();
    assert_eq!(listed.server_time.map(|t| t.seconds), Some(now));
    assert_eq!(listed.revocations.len(), 1);
    let r = &listed.revocations[0];
    assert_eq!(r.user_id, alice.user_id);
    assert_eq!(payload(&first)["cloudsec:generation"], 0);
    assert_eq!(r.min_generation, 1);
    assert_eq!(
        r.expire_time.map(|t| t.seconds),
        Some(now + 900 + 60),
        "the longest access token plus the margin"
    );
    let refused = h.api.list_groups(list_groups(&first)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(refused.message(), "token revoked");

    // A login in the same second gets the new generation and works.
    let second = h.login_ok(&alice).await.access_token;
    assert_eq!(payload(&second)["cloudsec:generation"], 1);
    h.api.list_groups(list_groups(&second)).await.unwrap();
    // A second sign-out in the same second still catches it.
    let third = h.login_ok(&alice).await.access_token;
    h.api
        .global_sign_out(bearer(&third, pb::GlobalSignOutRequest {}))
        .await
        .unwrap();
    let status = h.api.list_groups(list_groups(&second)).await.unwrap_err();
    assert_eq!(status.message(), "token revoked");
    let second = h.login_ok(&alice).await.access_token;
    assert_eq!(payload(&second)["cloudsec:generation"], 2);

    // Disabling a user lists them as well; their token dies at once here.
    h.api
        .admin_disable_user(bearer(
            &second,
            pb::AdminDisableUserRequest {
                user_id: carol.user_id.clone(),
            },
        ))
        .await
        .unwrap();
    let status = h
        .api
        .global_sign_out(bearer(&carols, pb::GlobalSignOutRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.message(), "token revoked");

    // `since` returns what changed after it, with an overlap for
    // transactions that committed late; expired rows are gone.
    let mut users: Vec<String> = list(&h, listed.server_time)
        .await
        .revocations
        .into_iter()
        .map(|r| r.user_id)
        .collect();
    users.sort();
    let mut both = vec![alice.user_id.clone(), carol.user_id.clone()];
    both.sort();
    assert_eq!(users, both, "within the overlap");
    h.clock.advance(Duration::from_secs(120));
    let later = list(&h, None).await.server_time;
    assert!(list(&h, later).await.revocations.is_empty());
    assert_eq!(list(&h, None).await.revocations.len(), 2);
    h.clock.advance(Duration::from_secs(900));
    assert!(
        list(&h, None).await.revocations.is_empty(),
        "past the horizon"
    );

    let bad = h
        .api
        .list_token_revocations(Request::new(pb::ListTokenRevocationsRequest {
            since: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: -1,
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

/// A verifier elsewhere in the mesh (`TokenVerifier::from_auth`) pulls the
/// revocations from a real gRPC server: its first check waits for the pull.
pub(crate) async fn mesh_verifiers_pull_revocations(h: Harness) {
    let alice = h.sign_up("alice").await;
    let old = h.login_ok(&alice).await.access_token;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AuthServiceServer::new(h.api.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let fresh_verifier = || {
        TokenVerifier::from_auth(ISSUER, AUDIENCE, channel.clone())
            .revocation_interval(Duration::from_millis(100))
    };

    let verifier = fresh_verifier();
    verifier.verify(&old).await.unwrap();
    h.api
        .global_sign_out(bearer(&old, pb::GlobalSignOutRequest {}))
        .await
        .unwrap();
    // A verifier started after the revocation refuses on its first check.
    assert_eq!(
        fresh_verifier().verify(&old).await,
        Err(TokenError::Revoked)
    );
    // The running one learns it within its pulls (in the background of the
    // calls that find the list due).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while verifier.verify(&old).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "never pulled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(verifier.verify(&old).await, Err(TokenError::Revoked));
    let new = h.login_ok(&alice).await.access_token;
    verifier.verify(&new).await.unwrap();
    server.abort();
}
