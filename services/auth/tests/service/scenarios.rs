//! The scenarios; each gets a fresh database and a manual clock.

use std::time::Duration;

use cloudsec_auth::entity::refresh_token;
use cloudsec_proto::auth::v1 as pb;
use cloudsec_proto::auth::v1::auth_service_server::AuthService;
use cloudsec_runtime::token::{Signer, TokenVerifier};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tonic::{Code, Request};
use tonic_types::StatusExt;

pub(crate) use crate::cleanup::the_sweeper_deletes_only_what_cannot_matter;
pub(crate) use crate::codes::{
    a_reset_clears_the_lockout, a_reset_code_also_confirms_the_email,
    codes_expire_die_after_wrong_tries_and_resend_is_throttled,
    failed_logins_are_limited_per_client_address,
    forgotten_passwords_reset_with_a_code_and_revoke_logins, sign_up_needs_the_emailed_code,
};
pub(crate) use crate::mfa::{
    admins_reset_a_lost_authenticator, mfa_secrets_sealed_by_kms, tenant_mfa_modes,
    totp_enrolment_challenge_replay_and_recovery, users_remove_their_own_authenticator,
};
pub(crate) use crate::revocation::{
    mesh_verifiers_pull_revocations, revoked_access_tokens_are_listed_and_refused,
};
use crate::support::{AUDIENCE, Harness, ISSUER, PASSWORD, bearer, payload, sha256_hex};

const BAD_REFRESH: &str = "invalid refresh token";
const BAD_LOGIN: &str = "invalid email or password";
const THIRTY_DAYS: Duration = Duration::from_secs(30 * 24 * 3600);

fn assert_status<T: std::fmt::Debug>(result: tonic::Result<T>, code: Code, message: &str) {
    let status = result.expect_err("must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), message);
}

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Rows of the family `token` belongs to: (rotated, revoked) per row.
async fn family_state(h: &Harness, token: &str) -> Vec<(bool, bool)> {
    let hash = sha256_hex(token);
    let sql = format!(
        "SELECT CASE WHEN rotated_at IS NULL THEN 'live' ELSE 'rotated' END AS r, \
                CASE WHEN revoked_at IS NULL THEN 'ok' ELSE 'revoked' END AS v \
         FROM refresh_tokens WHERE family_id = \
           (SELECT family_id FROM refresh_tokens WHERE token_hash = '{hash}') \
         ORDER BY issued_at, id"
    );
    let r = h.strings(&sql, "r").await;
    let v = h.strings(&sql, "v").await;
    r.iter()
        .zip(v.iter())
        .map(|(r, v)| (r == "rotated", v == "revoked"))
        .collect()
}

/// Tokens of `user_id` not revoked (UUIDs are blobs on SQLite, so not SQL text).
async fn live_tokens_of(h: &Harness, user_id: &str) -> u64 {
    refresh_token::Entity::find()
        .filter(refresh_token::Column::UserId.eq(uuid::Uuid::parse_str(user_id).unwrap()))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .count(&h.db)
        .await
        .unwrap()
}

pub(crate) async fn sign_up_writes_its_event_in_the_same_transaction(h: Harness) {
    let before = cloudsec_bus::Outbox::pending(&h.db).await.unwrap();
    h.sign_up("alice").await;
    // The sign-up and the code that confirms it.
    assert_eq!(
        cloudsec_bus::Outbox::pending(&h.db).await.unwrap(),
        before + 2
    );
    // A refused sign-up writes no event.
    let taken = h
        .api
        .sign_up(Request::new(pb::SignUpRequest {
            email: "alice2@example.com".into(),
            password: PASSWORD.into(),
            tenant: "t-alice".into(),
        }))
        .await;
    assert_eq!(taken.unwrap_err().code(), Code::AlreadyExists);
    assert_eq!(
        cloudsec_bus::Outbox::pending(&h.db).await.unwrap(),
        before + 2
    );
    // A registered email is answered like a new one, and nothing is
    // written: no tenant, no user, no event, no code.
    let users = user_count(&h).await;
    let again = h
        .api
        .sign_up(Request::new(pb::SignUpRequest {
            email: "ALICE@example.com".into(),
            password: PASSWORD.into(),
            tenant: "t-elsewhere".into(),
        }))
        .await
        .expect("answered as a new sign-up")
        .into_inner();
    assert_eq!(again.tenant, "t-elsewhere");
    assert_eq!(user_count(&h).await, users);
    assert_eq!(
        cloudsec_bus::Outbox::pending(&h.db).await.unwrap(),
        before + 2
    );
    let fresh = h
        .api
        .sign_up(Request::new(pb::SignUpRequest {
            email: "carol@example.com".into(),
            password: PASSWORD.into(),
            tenant: "t-elsewhere".into(),
        }))
        .await;
    assert!(fresh.is_ok(), "the tenant was not created: {fresh:?}");
}

async fn user_count(h: &Harness) -> u64 {
    use sea_orm::{EntityTrait, PaginatorTrait};
    cloudsec_auth::entity::user::Entity::find()
        .count(&h.db)
        .await
        .unwrap()
}

pub(crate) async fn login_returns_a_refresh_token_stored_only_as_a_hash(h: Harness) {
    let alice = h.sign_up("alice").await;
    let r = h.login_ok(&alice).await;
    assert_eq!(r.token_type, "Bearer");
    assert_eq!(r.expires_in, 900);
    // 256 bits in base64url without padding.
    assert_eq!(r.refresh_token.len(), 43, "{}", r.refresh_token);
    assert!(
        r.refresh_token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );

    let hashes = h
        .strings("SELECT token_hash FROM refresh_tokens", "token_hash")
        .await;
    assert_eq!(hashes, [sha256_hex(&r.refresh_token)]);
    let clear = h
        .count(&format!(
            "SELECT count(*) AS n FROM refresh_tokens WHERE token_hash = '{}'",
            r.refresh_token
        ))
        .await;
    assert_eq!(clear, 0, "the token itself is never stored");
    let rows = refresh_token::Entity::find().all(&h.db).await.unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.user_id.to_string(), alice.user_id);
    assert_eq!(row.tenant, alice.tenant);
    assert_eq!(row.client_id, "cloudsec");
    assert_eq!(row.auth_time, row.issued_at);
    assert_eq!((row.rotated_at, row.revoked_at), (None, None));
    // 30 days from the login, by default.
    let issued = h.core_now_secs();
    let expires = h
        .db_timestamp("SELECT expires_at AS t FROM refresh_tokens")
        .await;
    assert_eq!(expires - issued, THIRTY_DAYS.as_secs() as i64);

    // Two logins are two independent families.
    let again = h.login_ok(&alice).await;
    assert_ne!(again.refresh_token, r.refresh_token);
    assert_eq!(
        h.count("SELECT count(DISTINCT family_id) AS n FROM refresh_tokens")
            .await,
        2
    );
}

pub(crate) async fn access_tokens_carry_cognito_claims(h: Harness) {
    let alice = h.sign_up("alice").await;
    let login_time = h.core_now_secs();
    let r = h.login_ok(&alice).await;

    // Signed with the published key, and readable by the old verifier.
    let jwks = h
        .api
        .get_jwks(Request::new(pb::GetJwksRequest {}))
        .await
        .unwrap()
        .into_inner();
    let verifier = TokenVerifier::fixed(ISSUER, AUDIENCE);
    verifier.set_keys(&jwks);
    let plain = verifier.verify(&r.access_token).await.unwrap();
    assert_eq!(plain.sub, alice.user_id);
    assert_eq!(plain.tenant, alice.tenant);
    assert_eq!(plain.scope, "documents tenant:admin");
    let claims = verifier.verify_access(&r.access_token).await.unwrap();
    assert_eq!(claims.token_use, "access");
    assert_eq!(claims.client_id, "cloudsec");
    assert_eq!(claims.auth_time, Some(login_time));
    assert!(claims.groups.is_empty());
    let raw = payload(&r.access_token);
    assert_eq!(raw["cognito:groups"], serde_json::json!([]));
    assert_eq!(raw["token_use"], "access");
}

pub(crate) async fn refresh_rotates_and_keeps_the_login_time(h: Harness) {
    let alice = h.sign_up("alice").await;
    let login_time = h.core_now_secs();
    let first = h.login_ok(&alice).await;
    h.clock.advance(Duration::from_secs(600));

    let second = h.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(second.token_type, "Bearer");
    assert_eq!(second.expires_in, 900);
    let claims = payload(&second.access_token);
    assert_eq!(claims["sub"], alice.user_id.as_str());
    assert_eq!(claims["tenant"], alice.tenant.as_str());
    assert_eq!(claims["scope"], "documents tenant:admin");
    assert_eq!(claims["iat"], login_time + 600, "a new token");
    assert_eq!(
        claims["auth_time"], login_time,
        "the password was shown then"
    );
    assert_eq!(claims["client_id"], "cloudsec");

    // The old token is spent, the new one is live, both in one family.
    assert_eq!(
        family_state(&h, &first.refresh_token).await,
        [(true, false), (false, false)]
    );
    assert_eq!(
        family_state(&h, &second.refresh_token).await,
        family_state(&h, &first.refresh_token).await
    );

    let third = h.refresh(&second.refresh_token).await.unwrap();
    assert_eq!(
        family_state(&h, &third.refresh_token).await,
        [(true, false), (true, false), (false, false)]
    );
}

pub(crate) async fn reusing_a_spent_token_revokes_the_whole_login(h: Harness) {
    let alice = h.sign_up("alice").await;
    let stolen = h.login_ok(&alice).await.refresh_token;
    let other_login = h.login_ok(&alice).await.refresh_token;
    let next = h.refresh(&stolen).await.unwrap().refresh_token;

    // The spent token comes back: someone else holds a copy.
    assert_status(h.refresh(&stolen).await, Code::Unauthenticated, BAD_REFRESH);
    assert_eq!(
        family_state(&h, &stolen).await,
        [(true, true), (false, true)],
        "every token of the login is revoked"
    );
    // So the successor, whoever holds it, is dead too, with the same answer.
    assert_status(h.refresh(&next).await, Code::Unauthenticated, BAD_REFRESH);
    // Another login of the same user is untouched.
    h.refresh(&other_login).await.unwrap();
}

pub(crate) async fn bad_refresh_tokens_get_one_answer_and_change_nothing(h: Harness) {
    let alice = h.sign_up("alice").await;
    let live = h.login_ok(&alice).await.refresh_token;
    let revoked = h.login_ok(&alice).await.refresh_token;
    h.logout(&revoked).await.unwrap();
    let unknown = "A".repeat(43);
    for bad in [unknown.as_str(), "abc", "not base64!", revoked.as_str()] {
        assert_status(h.refresh(bad).await, Code::Unauthenticated, BAD_REFRESH);
    }
    let missing = h.refresh("").await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert_eq!(violations(&missing), ["refresh_token"]);
    // The live token was not touched by any of that.
    assert_eq!(family_state(&h, &live).await, [(false, false)]);

    // Expired: one second past thirty days.
    h.clock.advance(THIRTY_DAYS + Duration::from_secs(1));
    assert_status(h.refresh(&live).await, Code::Unauthenticated, BAD_REFRESH);
    assert_eq!(family_state(&h, &live).await, [(false, false)]);
}

pub(crate) async fn logins_expire_from_the_login_not_the_last_refresh(h: Harness) {
    let alice = h.sign_up("alice").await;
    let first = h.login_ok(&alice).await.refresh_token;
    h.clock.advance(THIRTY_DAYS - Duration::from_secs(60));
    let late = h.refresh(&first).await.unwrap().refresh_token;
    let expires = h
        .db_timestamp(&format!(
            "SELECT expires_at AS t FROM refresh_tokens WHERE token_hash = '{}'",
            sha256_hex(&late)
        ))
        .await;
    let login_expiry = h
        .db_timestamp(&format!(
            "SELECT expires_at AS t FROM refresh_tokens WHERE token_hash = '{}'",
            sha256_hex(&first)
        ))
        .await;
    assert_eq!(expires, login_expiry, "rotation does not extend the login");
    h.clock.advance(Duration::from_secs(60));
    assert_status(h.refresh(&late).await, Code::Unauthenticated, BAD_REFRESH);
}

pub(crate) async fn concurrent_refreshes_of_one_token_cannot_both_succeed(h: Harness) {
    let alice = h.sign_up("alice").await;
    // Several rounds: each must have exactly one winner, whatever the
    // interleaving was.
    for round in 0..5 {
        let token = h.login_ok(&alice).await.refresh_token;
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                let token = token.clone();
                tokio::spawn(async move { h.refresh(&token).await })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => wins += 1,
                Err(status) => {
                    assert_eq!(
                        status.code(),
                        Code::Unauthenticated,
                        "round {round}: {status:?}"
                    );
                    assert_eq!(status.message(), BAD_REFRESH);
                }
            }
        }
        assert_eq!(wins, 1, "round {round}: exactly one exchange succeeds");
        // The losers presented a spent token, so the login is revoked,
        // including the winner's new token.
        let state = family_state(&h, &token).await;
        assert_eq!(state.len(), 2, "round {round}: one successor only");
        assert!(state.iter().all(|(_, revoked)| *revoked), "round {round}");
    }
}

pub(crate) async fn logout_revokes_the_login_and_reveals_nothing(h: Harness) {
    let alice = h.sign_up("alice").await;
    let a = h.login_ok(&alice).await.refresh_token;
    let a2 = h.refresh(&a).await.unwrap().refresh_token;
    let b = h.login_ok(&alice).await.refresh_token;

    // Logging out with a spent token of the login still ends the login.
    h.logout(&a).await.unwrap();
    assert_eq!(family_state(&h, &a).await, [(true, true), (false, true)]);
    assert_status(h.refresh(&a2).await, Code::Unauthenticated, BAD_REFRESH);
    // The other login lives on.
    h.refresh(&b).await.unwrap();

    // Again, unknown and malformed: all fine and all the same.
    h.logout(&a2).await.unwrap();
    h.logout(&"A".repeat(43)).await.unwrap();
    h.logout("abc").await.unwrap();
    let missing = h.logout(" ").await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert_eq!(violations(&missing), ["refresh_token"]);
}

pub(crate) async fn global_sign_out_revokes_every_login_of_the_caller(h: Harness) {
    let alice = h.sign_up("alice").await;
    let bob = h.sign_up("bob").await;
    let first = h.login_ok(&alice).await;
    let spent = h.login_ok(&alice).await.refresh_token;
    h.refresh(&spent).await.unwrap();
    let bobs = h.login_ok(&bob).await.refresh_token;
    assert_eq!(live_tokens_of(&h, &alice.user_id).await, 3);

    h.api
        .global_sign_out(bearer(&first.access_token, pb::GlobalSignOutRequest {}))
        .await
        .unwrap();
    assert_eq!(live_tokens_of(&h, &alice.user_id).await, 0);
    assert_status(
        h.refresh(&first.refresh_token).await,
        Code::Unauthenticated,
        BAD_REFRESH,
    );
    h.refresh(&bobs).await.unwrap();

    // No token, a bad one, or one of another key: refused, nothing changes.
    let bob_live = live_tokens_of(&h, &bob.user_id).await;
    let forged = {
        let mut claims = payload(&first.access_token);
        claims["sub"] = bob.user_id.clone().into();
        Signer::generate().unwrap().sign_claims(&claims).unwrap()
    };
    for request in [
        Request::new(pb::GlobalSignOutRequest {}),
        bearer("garbage", pb::GlobalSignOutRequest {}),
        bearer(&forged, pb::GlobalSignOutRequest {}),
    ] {
        let status = h.api.global_sign_out(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    assert_eq!(live_tokens_of(&h, &bob.user_id).await, bob_live);
}

pub(crate) async fn admin_global_sign_out_is_for_admins_of_the_same_tenant(h: Harness) {
    let admin = h.sign_up("alice").await;
    let member = h.add_member("carol", &admin.tenant).await;
    let other_admin = h.sign_up("mallory").await;
    let admin_token = h.login_ok(&admin).await.access_token;
    let member_login = h.login_ok(&member).await;
    let mallory_token = h.login_ok(&other_admin).await.access_token;
    let sign_out = |token: &str, user_id: &str| {
        bearer(
            token,
            pb::AdminGlobalSignOutRequest {
                user_id: user_id.into(),
            },
        )
    };

    // A member is no admin.
    let denied = h
        .api
        .admin_global_sign_out(sign_out(&member_login.access_token, &admin.user_id))
        .await;
    assert_status(
        denied,
        Code::PermissionDenied,
        "this needs the tenant:admin scope",
    );
    // Another tenant's admin: the member looks missing, like a random id.
    let foreign = h
        .api
        .admin_global_sign_out(sign_out(&mallory_token, &member.user_id))
        .await;
    assert_status(
        foreign,
        Code::NotFound,
        &format!("user `{}` not found", member.user_id),
    );
    let random = uuid::Uuid::now_v7().to_string();
    let missing = h
        .api
        .admin_global_sign_out(sign_out(&admin_token, &random))
        .await;
    assert_status(
        missing,
        Code::NotFound,
        &format!("user `{random}` not found"),
    );
    let bad = h
        .api
        .admin_global_sign_out(sign_out(&admin_token, "not-a-uuid"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violations(&bad), ["user_id"]);
    let unauthenticated = h
        .api
        .admin_global_sign_out(Request::new(pb::AdminGlobalSignOutRequest {
            user_id: member.user_id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    assert_eq!(live_tokens_of(&h, &member.user_id).await, 1, "all refused");

    h.api
        .admin_global_sign_out(sign_out(&admin_token, &member.user_id))
        .await
        .unwrap();
    assert_eq!(live_tokens_of(&h, &member.user_id).await, 0);
    assert_status(
        h.refresh(&member_login.refresh_token).await,
        Code::Unauthenticated,
        BAD_REFRESH,
    );
    assert_eq!(
        live_tokens_of(&h, &admin.user_id).await,
        1,
        "only the member"
    );
}

fn retry_after(status: &tonic::Status) -> Option<Duration> {
    status.get_error_details().retry_info()?.retry_delay
}

/// A locked answer: the message and the RetryInfo both say `secs`.
fn assert_locked<T: std::fmt::Debug>(result: tonic::Result<T>, secs: u64) {
    let status = result.expect_err("locked");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        format!("too many failed attempts, try again in {secs} s")
    );
    assert_eq!(retry_after(&status), Some(Duration::from_secs(secs)));
}

pub(crate) async fn lockout_after_five_failures_doubles_up_to_fifteen_minutes(h: Harness) {
    let alice = h.sign_up("alice").await;
    let wrong = "wrong horse battery";
    for _ in 0..5 {
        assert_status(
            h.login(&alice.email, wrong).await,
            Code::Unauthenticated,
            BAD_LOGIN,
        );
    }
    // Locked for 30 s: even the right password is refused, unhashed.
    assert_locked(h.login(&alice.email, PASSWORD).await, 30);
    h.clock.advance(Duration::from_millis(29_500));
    assert_locked(h.login(&alice.email, PASSWORD).await, 1);
    h.clock.advance(Duration::from_millis(500));
    // Open again; one more failure locks for twice as long, and so on.
    let mut expected = 60;
    for _ in 0..6 {
        assert_status(
            h.login(&alice.email, wrong).await,
            Code::Unauthenticated,
            BAD_LOGIN,
        );
        assert_locked(h.login(&alice.email, PASSWORD).await, expected);
        h.clock.advance(Duration::from_secs(expected));
        expected = (expected * 2).min(900);
    }
    assert_eq!(expected, 900, "capped at fifteen minutes");
    assert_status(
        h.login(&alice.email, wrong).await,
        Code::Unauthenticated,
        BAD_LOGIN,
    );
    assert_locked(h.login(&alice.email, PASSWORD).await, 900);
    h.clock.advance(Duration::from_secs(900));
    h.login_ok(&alice).await;
}

pub(crate) async fn success_resets_the_failure_count(h: Harness) {
    let alice = h.sign_up("alice").await;
    let wrong = "wrong horse battery";
    for _ in 0..4 {
        assert_status(
            h.login(&alice.email, wrong).await,
            Code::Unauthenticated,
            BAD_LOGIN,
        );
    }
    h.login_ok(&alice).await;
    assert_eq!(h.count("SELECT count(*) AS n FROM login_attempts").await, 0);
    // Four more failures are not five in a row.
    for _ in 0..4 {
        assert_status(
            h.login(&alice.email, wrong).await,
            Code::Unauthenticated,
            BAD_LOGIN,
        );
    }
    h.login_ok(&alice).await;
    // The lock ends by time as well, and a success then clears the count.
    for _ in 0..5 {
        assert_status(
            h.login(&alice.email, wrong).await,
            Code::Unauthenticated,
            BAD_LOGIN,
        );
    }
    h.clock.advance(Duration::from_secs(30));
    h.login_ok(&alice).await;
    assert_status(
        h.login(&alice.email, wrong).await,
        Code::Unauthenticated,
        BAD_LOGIN,
    );
    h.login_ok(&alice).await;
}

pub(crate) async fn unknown_emails_lock_exactly_like_known_ones(h: Harness) {
    let alice = h.sign_up("alice").await;
    let ghost = "ghost@example.com";
    let wrong = "wrong horse battery";
    let mut answers = Vec::new();
    for email in [alice.email.as_str(), ghost] {
        let mut seen = Vec::new();
        for _ in 0..7 {
            let status = h.login(email, wrong).await.unwrap_err();
            seen.push((
                status.code(),
                status.message().to_owned(),
                retry_after(&status),
            ));
        }
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1], "the answers reveal nothing");
    assert_eq!(answers[0][4].0, Code::Unauthenticated);
    assert_eq!(answers[0][5].0, Code::ResourceExhausted);
    // Case and spaces do not make a fresh counter.
    assert_locked(h.login(" ALICE@example.com ", PASSWORD).await, 30);
    // Emails are kept only as hashes.
    let keys = h
        .strings(
            "SELECT email_hash FROM login_attempts ORDER BY email_hash",
            "email_hash",
        )
        .await;
    let mut expected = vec![sha256_hex(&alice.email), sha256_hex(ghost)];
    expected.sort();
    assert_eq!(keys, expected);
}

pub(crate) use crate::keys::{
    signing_keys_in_the_database_are_sealed, signing_keys_rotate_with_overlap,
    signing_keys_sealed_by_kms,
};

/// No user enumeration by timing: a wrong password for a known email and
/// any password for an unknown one each cost exactly one argon2id
/// verification (the unknown one against a dummy hash of the same
/// parameters, which `password`'s unit tests check), and they get the same
/// answer. Counted, not timed: wall-clock medians on a shared CI machine
/// differed by 2x with no difference in the work done.
pub(crate) async fn unknown_and_known_emails_cost_the_same_work(h: Harness) {
    let users = [
        h.sign_up("tina").await,
        h.sign_up("tom").await,
        h.sign_up("tara").await,
    ];
    let wrong = "wrong horse battery";
    // 4 failures per known email: under the lockout threshold, so every
    // try runs the full check.
    for round in 0..12 {
        let user = &users[round % users.len()];
        let before = h.hasher.verifications();
        let known = h.login(&user.email, wrong).await.unwrap_err();
        assert_eq!(
            h.hasher.verifications() - before,
            1,
            "known email, round {round}"
        );
        let ghost = format!("ghost-{round}@example.com");
        let before = h.hasher.verifications();
        let unknown = h.login(&ghost, wrong).await.unwrap_err();
        assert_eq!(
            h.hasher.verifications() - before,
            1,
            "unknown email, round {round}"
        );
        assert_eq!(known.code(), Code::Unauthenticated);
        assert_eq!(
            (known.code(), known.message()),
            (unknown.code(), unknown.message())
        );
    }
}
