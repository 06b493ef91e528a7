//! The sweeper deletes expired and abandoned rows, and nothing live.

use std::time::Duration;

use cloudsec_auth::cleanup::{CleanupConfig, sweep};
use cloudsec_auth::clock::Clock;
use cloudsec_proto::auth::v1 as pb;
use cloudsec_proto::auth::v1::auth_service_server::AuthService;
use tonic::Request;

use crate::support::{Harness, PASSWORD};

async fn rows(h: &Harness, table: &str) -> i64 {
    h.count(&format!("SELECT COUNT(*) AS n FROM {table}")).await
}

pub(crate) async fn the_sweeper_deletes_only_what_cannot_matter(h: Harness) {
    let config = CleanupConfig::default();
    let alice = h.sign_up("alice").await;
    let login = h.login_ok(&alice).await;
    // A sign-up nobody confirms.
    let ghost_signs_up = || async {
        h.api
            .sign_up(Request::new(pb::SignUpRequest {
                email: "ghost@example.com".into(),
                password: PASSWORD.into(),
                tenant: "t-ghost".into(),
            }))
            .await
    };
    ghost_signs_up().await.unwrap();
    // One failure for an email: a counter that locks nothing.
    h.login("nobody@example.com", "wrong password entirely")
        .await
        .unwrap_err();

    // Everything is live: nothing goes.
    let swept = sweep(&h.db, &config, h.clock.now()).await.unwrap();
    assert_eq!(
        swept.refresh_tokens + swept.unconfirmed_users,
        0,
        "{swept:?}"
    );
    assert_eq!(swept.login_attempts + swept.empty_tenants, 0, "{swept:?}");

    // A locked counter stays even when idle past `failures_ttl`.
    for _ in 0..5 {
        h.login("locked@example.com", "wrong password entirely")
            .await
            .unwrap_err();
    }
    h.clock.advance(Duration::from_secs(1));
    let eager = CleanupConfig {
        failures_ttl: Duration::ZERO,
        ..config
    };
    let swept = sweep(&h.db, &eager, h.clock.now()).await.unwrap();
    assert_eq!(swept.login_attempts, 1, "only the unlocked counter");
    assert_eq!(rows(&h, "login_attempts").await, 1);

    // Thirty-one days on: the login, the ghost sign-up (with its code and
    // tenant) and the stale counter are gone; Alice and her tenant stay.
    h.clock.advance(Duration::from_secs(31 * 24 * 3600));
    let swept = sweep(&h.db, &config, h.clock.now()).await.unwrap();
    assert_eq!(swept.refresh_tokens, 1, "{swept:?}");
    assert_eq!(swept.unconfirmed_users, 1, "{swept:?}");
    assert_eq!(swept.empty_tenants, 1, "{swept:?}");
    assert_eq!(swept.login_attempts, 1, "{swept:?}");
    assert!(swept.confirmation_codes >= 1, "{swept:?}");
    assert_eq!(rows(&h, "users").await, 1);
    assert_eq!(rows(&h, "tenants").await, 1);
    assert_eq!(rows(&h, "refresh_tokens").await, 0);
    assert_eq!(rows(&h, "confirmation_codes").await, 0);
    assert!(h.refresh(&login.refresh_token).await.is_err());
    // The ghost's email and tenant name are free again.
    ghost_signs_up().await.unwrap();
    // A second sweep has nothing left to do.
    let swept = sweep(&h.db, &config, h.clock.now()).await.unwrap();
    assert_eq!(swept, Default::default());
}
