//! TOTP MFA on a manual clock: codes are computed from the enrolled secret
//! at the clock's time, so drift and replay are exact.

use std::time::Duration;

use cloudsec_auth::clock::Clock;
use cloudsec_auth::mfa::code_at;
use cloudsec_proto::auth::v1 as pb;
use cloudsec_proto::auth::v1::auth_service_server::AuthService;
use tonic::{Code, Request};

use crate::support::{Harness, PASSWORD, bearer};

async fn associate(
    h: &Harness,
    token: Option<&str>,
    session: &str,
) -> tonic::Result<pb::AssociateSoftwareTokenResponse> {
    let message = pb::AssociateSoftwareTokenRequest {
        session: session.into(),
    };
    let request = match token {
        Some(token) => bearer(token, message),
        None => Request::new(message),
    };
    h.api
        .associate_software_token(request)
        .await
        .map(|r| r.into_inner())
}

async fn verify(
    h: &Harness,
    token: Option<&str>,
    session: &str,
    code: &str,
) -> tonic::Result<pb::VerifySoftwareTokenResponse> {
    let message = pb::VerifySoftwareTokenRequest {
        session: session.into(),
        code: code.into(),
    };
    let request = match token {
        Some(token) => bearer(token, message),
        None => Request::new(message),
    };
    h.api
        .verify_software_token(request)
        .await
        .map(|r| r.into_inner())
}

async fn respond(h: &Harness, session: &str, code: &str) -> tonic::Result<pb::LoginResponse> {
    h.api
        .respond_to_auth_challenge(Request::new(pb::RespondToAuthChallengeRequest {
            session: session.into(),
            code: code.into(),
        }))
        .await
        .map(|r| r.into_inner())
}

async fn set_mode(h: &Harness, token: &str, mode: pb::MfaMode) -> tonic::Result<()> {
    h.api
        .set_tenant_mfa_mode(bearer(
            token,
            pb::SetTenantMfaModeRequest { mode: mode as i32 },
        ))
        .await
        .map(|_| ())
}

fn code(secret: &str, h: &Harness) -> String {
    code_at(secret, h.clock.now()).expect("a code")
}

fn assert_code(result: tonic::Result<pb::LoginResponse>, code: Code) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
}

pub(crate) async fn totp_enrolment_challenge_replay_and_recovery(h: Harness) {
    let alice = h.sign_up("alice").await;
    let login = h.login_ok(&alice).await;
    assert!(login.challenge_name.is_empty(), "not enrolled yet");
    let token = login.access_token.as_str();

    let enrol = associate(&h, Some(token), "").await.expect("associate");
    assert!(
        enrol
            .otpauth_uri
            .starts_with("otpauth://totp/cloudsec:alice%40example.com?"),
        "{}",
        enrol.otpauth_uri
    );
    assert!(enrol.otpauth_uri.contains(&enrol.secret_code));
    assert!(enrol.qr_code_svg.starts_with("<?xml") && enrol.qr_code_svg.contains("<svg"));
    // No code yet, or a wrong one: enrolment stays pending and login
    // stays one step.
    let first = code(&enrol.secret_code, &h);
    let wrong = if first == "000000" {
        "000001"
    } else {
        "000000"
    };
    let status = verify(&h, Some(token), "", wrong).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(h.login_ok(&alice).await.challenge_name.is_empty());

    let done = verify(&h, Some(token), "", &first).await.expect("verify");
    assert_eq!(done.recovery_codes.len(), 10);
    assert!(done.login.is_none());

    // Now every login is challenged, and gives no tokens before the code.
    let challenge = h.login_ok(&alice).await;
    assert_eq!(challenge.challenge_name, "SOFTWARE_TOKEN_MFA");
    assert!(challenge.access_token.is_empty() && challenge.refresh_token.is_empty());
    // The enrolment code is spent: the same step is a replay.
    assert_code(
        respond(&h, &challenge.session, &first).await,
        Code::InvalidArgument,
    );
    h.clock.advance(Duration::from_secs(30));
    let second = code(&enrol.secret_code, &h);
    let tokens = respond(&h, &challenge.session, &second)
        .await
        .expect("next step");
    assert!(!tokens.access_token.is_empty() && !tokens.refresh_token.is_empty());
    // The session is single-use.
    assert_code(
        respond(&h, &challenge.session, &second).await,
        Code::Unauthenticated,
    );
    // The same code in a fresh login is a replay too.
    let challenge = h.login_ok(&alice).await;
    assert_code(
        respond(&h, &challenge.session, &second).await,
        Code::InvalidArgument,
    );
    // One step of drift: the authenticator's clock 30 s ahead still works.
    let ahead = code_at(
        &enrol.secret_code,
        h.clock.now() + chrono::Duration::seconds(30),
    )
    .unwrap();
    respond(&h, &challenge.session, &ahead)
        .await
        .expect("one step ahead");
    // Two steps behind does not.
    h.clock.advance(Duration::from_secs(120));
    let challenge = h.login_ok(&alice).await;
    let stale = code_at(
        &enrol.secret_code,
        h.clock.now() - chrono::Duration::seconds(60),
    )
    .unwrap();
    assert_code(
        respond(&h, &challenge.session, &stale).await,
        Code::InvalidArgument,
    );

    // A recovery code stands in for the authenticator, once.
    let recovery = &done.recovery_codes[0];
    respond(&h, &challenge.session, recovery)
        .await
        .expect("recovery code");
    let challenge = h.login_ok(&alice).await;
    assert_code(
        respond(&h, &challenge.session, recovery).await,
        Code::InvalidArgument,
    );
    respond(&h, &challenge.session, &done.recovery_codes[1])
        .await
        .expect("another recovery code");

    // Wrong codes kill the session and lock the email like wrong passwords.
    let challenge = h.login_ok(&alice).await;
    for _ in 0..5 {
        let _ = respond(&h, &challenge.session, "999999-x").await;
    }
    let locked = h.login(&alice.email, PASSWORD).await.unwrap_err();
    assert_eq!(locked.code(), Code::ResourceExhausted, "{locked:?}");
    h.clock.advance(Duration::from_secs(30));
    // The right password after the lock does not clear the count: one more
    // wrong code locks for twice as long.
    let again = h.login_ok(&alice).await;
    let _ = respond(&h, &again.session, "999999-x").await;
    let locked = h.login(&alice.email, PASSWORD).await.unwrap_err();
    assert_eq!(locked.code(), Code::ResourceExhausted, "{locked:?}");
    assert!(locked.message().contains("60 s"), "{locked:?}");
    let right = code(&enrol.secret_code, &h);
    assert_code(
        respond(&h, &challenge.session, &right).await,
        Code::Unauthenticated,
    );

    // Sessions that were never issued, or are malformed, get one answer.
    assert_code(
        respond(&h, "not-a-session", "123456").await,
        Code::Unauthenticated,
    );
    assert_code(respond(&h, "", "").await, Code::InvalidArgument);
}

pub(crate) async fn tenant_mfa_modes(h: Harness) {
    let ann = h.sign_up("ann").await;
    let admin = h.login_ok(&ann).await.access_token;
    let bob = h.add_member("bob", &ann.tenant).await;
    let member = h.login_ok(&bob).await.access_token;

    let status = set_mode(&h, &member, pb::MfaMode::Required)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = set_mode(&h, &admin, pb::MfaMode::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // REQUIRED: Bob has no authenticator, so his login enrols him.
    set_mode(&h, &admin, pb::MfaMode::Required).await.unwrap();
    let setup = h.login_ok(&bob).await;
    assert_eq!(setup.challenge_name, "MFA_SETUP");
    assert!(setup.access_token.is_empty());
    // A setup session answers no code challenge.
    assert_code(
        respond(&h, &setup.session, "123456").await,
        Code::Unauthenticated,
    );
    let enrol = associate(&h, None, &setup.session)
        .await
        .expect("associate");
    let done = verify(&h, None, &setup.session, &code(&enrol.secret_code, &h))
        .await
        .expect("verify");
    let login = done.login.expect("the login completes");
    assert!(!login.access_token.is_empty());
    assert_eq!(done.recovery_codes.len(), 10);
    // Spent with the enrolment.
    let status = associate(&h, None, &setup.session).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(h.login_ok(&bob).await.challenge_name, "SOFTWARE_TOKEN_MFA");

    // OFF: no challenge, and no enrolment.
    set_mode(&h, &admin, pb::MfaMode::Off).await.unwrap();
    let plain = h.login_ok(&bob).await;
    assert!(plain.challenge_name.is_empty() && !plain.access_token.is_empty());
    let status = associate(&h, Some(&plain.access_token), "")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    // Verifying with nothing pending says what to do.
    set_mode(&h, &admin, pb::MfaMode::Optional).await.unwrap();
    let status = verify(&h, Some(&plain.access_token), "", "123456")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("AssociateSoftwareToken"));
}

/// A user who lost their authenticator and recovery codes: another admin
/// of the tenant resets their MFA, which also ends their logins.
pub(crate) async fn admins_reset_a_lost_authenticator(h: Harness) {
    let admin = h.sign_up("alice").await;
    let carol = h.add_member("carol", &admin.tenant).await;
    let mallory = h.sign_up("mallory").await;
    let admin_token = h.login_ok(&admin).await.access_token;
    let mallory_token = h.login_ok(&mallory).await.access_token;
    let before = h.login_ok(&carol).await;
    let enrol = associate(&h, Some(&before.access_token), "").await.unwrap();
    verify(
        &h,
        Some(&before.access_token),
        "",
        &code(&enrol.secret_code, &h),
    )
    .await
    .unwrap();
    let pending = h.login_ok(&carol).await;
    assert_eq!(pending.challenge_name, "SOFTWARE_TOKEN_MFA");
    let reset = |token: &str, user_id: &str| {
        bearer(
            token,
            pb::AdminResetUserMfaRequest {
                user_id: user_id.into(),
            },
        )
    };

    // Only an admin of the same tenant, and not on themself.
    let status = h
        .api
        .admin_reset_user_mfa(reset(&before.access_token, &admin.user_id))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = h
        .api
        .admin_reset_user_mfa(reset(&mallory_token, &carol.user_id))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = h
        .api
        .admin_reset_user_mfa(reset(&admin_token, &admin.user_id))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        h.login_ok(&carol).await.challenge_name,
        "SOFTWARE_TOKEN_MFA"
    );

    h.api
        .admin_reset_user_mfa(reset(&admin_token, &carol.user_id))
        .await
        .unwrap();
    // The open challenge and every login are gone; the next login asks for
    // no code.
    assert_code(
        respond(&h, &pending.session, "123456").await,
        Code::Unauthenticated,
    );
    assert!(h.refresh(&before.refresh_token).await.is_err());
    let status = h
        .api
        .global_sign_out(bearer(&before.access_token, pb::GlobalSignOutRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.message(), "token revoked");
    let after = h.login_ok(&carol).await;
    assert!(after.challenge_name.is_empty());
    assert!(!after.access_token.is_empty());
    // Under REQUIRED the next login enrols again.
    set_mode(&h, &admin_token, pb::MfaMode::Required)
        .await
        .unwrap();
    assert_eq!(h.login_ok(&carol).await.challenge_name, "MFA_SETUP");
}

/// A user removes their own authenticator with one of its codes, or a
/// recovery code; not while the tenant requires MFA.
pub(crate) async fn users_remove_their_own_authenticator(h: Harness) {
    let alice = h.sign_up("alice").await;
    let token = h.login_ok(&alice).await.access_token;
    let delete = |code: &str| {
        h.api.delete_software_token(bearer(
            &token,
            pb::DeleteSoftwareTokenRequest { code: code.into() },
        ))
    };
    let status = delete("123456").await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "no authenticator is enrolled");

    let enrol = associate(&h, Some(&token), "").await.unwrap();
    let first = code(&enrol.secret_code, &h);
    let recovery = verify(&h, Some(&token), "", &first)
        .await
        .unwrap()
        .recovery_codes;
    // The enrolment's code is spent; a wrong or empty code changes nothing.
    for bad in [first.as_str(), "", "not-a-code"] {
        let status = delete(bad).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
    }
    set_mode(&h, &token, pb::MfaMode::Required).await.unwrap();
    h.clock.advance(Duration::from_secs(30));
    let status = delete(&code(&enrol.secret_code, &h)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("requires MFA"), "{status:?}");
    set_mode(&h, &token, pb::MfaMode::Optional).await.unwrap();
    assert_eq!(
        h.login_ok(&alice).await.challenge_name,
        "SOFTWARE_TOKEN_MFA"
    );

    delete(&code(&enrol.secret_code, &h)).await.unwrap();
    assert!(h.login_ok(&alice).await.challenge_name.is_empty());
    assert!(
        delete(&recovery[0]).await.is_err(),
        "the recovery codes went too"
    );

    // Enrolled again, removed with a recovery code.
    let enrol = associate(&h, Some(&token), "").await.unwrap();
    let recovery = verify(&h, Some(&token), "", &code(&enrol.secret_code, &h))
        .await
        .unwrap()
        .recovery_codes;
    delete(&recovery[3]).await.unwrap();
    assert!(h.login_ok(&alice).await.challenge_name.is_empty());
}

/// With `[auth.signing.kms]` MFA secrets are sealed by KMS (moto), each
/// data key bound to its user: enrolment and MFA logins work, a sealed
/// secret moved to another user is refused, and with KMS down an
/// enrolment is UNAVAILABLE and stores nothing.
pub(crate) async fn mfa_secrets_sealed_by_kms(h: Harness) {
    use base64::Engine;
    use cloudsec_auth::entity::mfa_totp;
    use cloudsec_secrets::test_util::{CutProxy, host_port, moto_kms, moto_url};
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    let Some(moto) = moto_url() else { return };
    let proxy = CutProxy::start(&host_port(&moto)).await;
    let signing = cloudsec_auth::keys::SigningConfig {
        kms: Some(moto_kms(&proxy.url())),
        ..Default::default()
    };
    let k = match h.with_signing(&signing).await {
        Ok(k) => k,
        Err(e) => panic!("a core on kms: {e}"),
    };
    let row_of = |user: &str| {
        let db = k.db.clone();
        let user = uuid::Uuid::parse_str(user).unwrap();
        async move { mfa_totp::Entity::find_by_id(user).one(&db).await.unwrap() }
    };

    // Every user logs in before the clock moves: tokens are checked
    // against the real time.
    let alice = k.sign_up("alice").await;
    let token = k.login_ok(&alice).await.access_token;
    let bob = k.sign_up("bob").await;
    let bob_token = k.login_ok(&bob).await.access_token;
    let carol = k.sign_up("carol").await;
    let carol_token = k.login_ok(&carol).await.access_token;
    let enrol = associate(&k, Some(&token), "").await.expect("associate");
    let pending = row_of(&alice.user_id)
        .await
        .and_then(|r| r.pending_secret)
        .expect("a pending secret");
    let envelope: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(pending.strip_prefix("sealed:v1:").expect("sealed"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        envelope["wrapped_key"]
            .as_str()
            .unwrap()
            .starts_with("kms:v1:"),
        "{envelope}"
    );
    assert_eq!(envelope["binding"]["user"], alice.user_id.as_str());
    assert_eq!(envelope["binding"]["purpose"], "auth-mfa-secret");
    // Round trip: the code of the secret shown opens the sealed one, and
    // MFA logins use it.
    verify(&k, Some(&token), "", &code(&enrol.secret_code, &k))
        .await
        .expect("verify");
    let challenge = k.login_ok(&alice).await;
    assert_eq!(challenge.challenge_name, "SOFTWARE_TOKEN_MFA");
    k.clock.advance(Duration::from_secs(30));
    respond(&k, &challenge.session, &code(&enrol.secret_code, &k))
        .await
        .expect("an MFA login with the KMS-sealed secret");

    // Wrong context: alice's sealed secret as bob's pending one. Its data
    // key is bound to alice, so KMS refuses to open it for bob.
    associate(&k, Some(&bob_token), "")
        .await
        .expect("associate");
    let alice_secret = row_of(&alice.user_id)
        .await
        .and_then(|r| r.secret)
        .expect("alice's secret");
    let mut bobs: mfa_totp::ActiveModel = row_of(&bob.user_id).await.unwrap().into();
    bobs.pending_secret = Set(Some(alice_secret));
    bobs.update(&k.db).await.unwrap();
    k.clock.advance(Duration::from_secs(30));
    let status = verify(&k, Some(&bob_token), "", &code(&enrol.secret_code, &k))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(row_of(&bob.user_id).await.unwrap().secret.is_none());

    // KMS down: enrolling is UNAVAILABLE and leaves no pending secret.
    proxy.cut();
    let status = associate(&k, Some(&carol_token), "").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        row_of(&carol.user_id)
            .await
            .is_none_or(|r| r.pending_secret.is_none())
    );
    // An MFA login cannot be checked either: UNAVAILABLE, not a wrong code.
    let challenge = k.login_ok(&alice).await;
    k.clock.advance(Duration::from_secs(30));
    assert_code(
        respond(&k, &challenge.session, &code(&enrol.secret_code, &k)).await,
        Code::Unavailable,
    );
    proxy.restore();
}
