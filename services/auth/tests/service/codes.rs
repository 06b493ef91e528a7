//! Confirmation and password-reset codes: the codes come from the outbox,
//! as a mailer would get them, and time is the manual clock.

use std::time::Duration;

use cloudsec_proto::auth::v1 as pb;
use cloudsec_proto::auth::v1::auth_service_server::AuthService;
use tonic::{Code, Request};

use crate::support::{Harness, PASSWORD, Purpose};

const NEW_PASSWORD: &str = "a brand new passphrase";

async fn sign_up_unconfirmed(h: &Harness, name: &str) -> String {
    let email = format!("{name}@example.com");
    h.api
        .sign_up(Request::new(pb::SignUpRequest {
            email: email.clone(),
            password: PASSWORD.into(),
            tenant: format!("t-{name}"),
        }))
        .await
        .expect("sign up");
    email
}

async fn confirm(h: &Harness, email: &str, code: &str) -> tonic::Result<()> {
    h.api
        .confirm_sign_up(Request::new(pb::ConfirmSignUpRequest {
            email: email.into(),
            code: code.into(),
        }))
        .await
        .map(|_| ())
}

async fn resend(h: &Harness, email: &str) {
    h.api
        .resend_confirmation_code(Request::new(pb::ResendConfirmationCodeRequest {
            email: email.into(),
        }))
        .await
        .expect("resend always succeeds");
}

async fn forgot(h: &Harness, email: &str) {
    h.api
        .forgot_password(Request::new(pb::ForgotPasswordRequest {
            email: email.into(),
        }))
        .await
        .expect("forgot password always succeeds");
}

async fn reset(h: &Harness, email: &str, code: &str, password: &str) -> tonic::Result<()> {
    h.api
        .confirm_forgot_password(Request::new(pb::ConfirmForgotPasswordRequest {
            email: email.into(),
            code: code.into(),
            password: password.into(),
        }))
        .await
        .map(|_| ())
}

fn assert_bad_code(result: tonic::Result<()>) {
    let status = result.expect_err("the code must not open");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("code: is wrong or has expired"),
        "{}",
        status.message()
    );
}

/// Any six digits other than `code`.
fn other_than(code: &str) -> String {
    if code == "000000" {
        "000001".into()
    } else {
        "000000".into()
    }
}

pub(crate) async fn sign_up_needs_the_emailed_code(h: Harness) {
    let email = sign_up_unconfirmed(&h, "carol").await;
    let code = h.code(&email, Purpose::SignUp).await;
    assert_eq!(code.len(), 6);
    // Only a hash is kept, bound to the user and purpose.
    let stored = h
        .strings("SELECT code_hash FROM confirmation_codes", "code_hash")
        .await;
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(&code));

    // The right password, but not confirmed: a distinct answer is safe now.
    let status = h.login(&email, PASSWORD).await.expect_err("unconfirmed");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("not confirmed"), "{status:?}");
    // A wrong password still gets the one wrong-password answer.
    let status = h.login(&email, "wrong horse battery").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    assert_bad_code(confirm(&h, &email, &other_than(&code)).await);
    assert_bad_code(confirm(&h, "nobody@example.com", &code).await);
    assert_bad_code(confirm(&h, &email, "12345x").await);
    confirm(&h, &email, &code).await.expect("the right code");
    h.login(&email, PASSWORD)
        .await
        .expect("confirmed users log in");
    // Spent: the same code again, or any code, is refused.
    assert_bad_code(confirm(&h, &email, &code).await);
    assert_eq!(
        h.count("SELECT count(*) AS n FROM confirmation_codes")
            .await,
        0
    );
    // A confirmed user is sent no new sign-up code.
    h.clock.advance(Duration::from_secs(120));
    resend(&h, &email).await;
    assert_eq!(h.codes(&email, Purpose::SignUp).await.len(), 1);

    // Empty fields are named.
    let status = confirm(&h, "", "").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("email"), "{status:?}");
}

pub(crate) async fn codes_expire_die_after_wrong_tries_and_resend_is_throttled(h: Harness) {
    let email = sign_up_unconfirmed(&h, "dave").await;
    let first = h.code(&email, Purpose::SignUp).await;
    // Valid for 24 hours.
    h.clock.advance(Duration::from_secs(24 * 3600));
    assert_bad_code(confirm(&h, &email, &first).await);

    resend(&h, &email).await;
    let second = h.code(&email, Purpose::SignUp).await;
    assert_eq!(h.codes(&email, Purpose::SignUp).await.len(), 2);
    // Five wrong tries kill the code, even for its right value.
    for _ in 0..5 {
        assert_bad_code(confirm(&h, &email, &other_than(&second)).await);
    }
    assert_bad_code(confirm(&h, &email, &second).await);

    // One code a minute at most; the answer is the same either way.
    resend(&h, &email).await;
    resend(&h, &email).await;
    assert_eq!(h.codes(&email, Purpose::SignUp).await.len(), 3);
    let third = h.code(&email, Purpose::SignUp).await;
    h.clock.advance(Duration::from_secs(59));
    resend(&h, &email).await;
    assert_eq!(h.codes(&email, Purpose::SignUp).await.len(), 3);
    h.clock.advance(Duration::from_secs(1));
    resend(&h, &email).await;
    let fourth = h.code(&email, Purpose::SignUp).await;
    assert_eq!(h.codes(&email, Purpose::SignUp).await.len(), 4);
    // A new code replaces the old one.
    if third != fourth {
        assert_bad_code(confirm(&h, &email, &third).await);
    }
    confirm(&h, &email, &fourth).await.expect("the latest code");

    // Unknown emails are answered the same and sent nothing.
    resend(&h, "nobody@example.com").await;
    assert!(
        h.codes("nobody@example.com", Purpose::SignUp)
            .await
            .is_empty()
    );
}

pub(crate) async fn forgotten_passwords_reset_with_a_code_and_revoke_logins(h: Harness) {
    let alice = h.sign_up("alice").await;
    let before = h.login_ok(&alice).await;

    forgot(&h, "nobody@example.com").await;
    assert!(
        h.codes("nobody@example.com", Purpose::PasswordReset)
            .await
            .is_empty()
    );
    forgot(&h, &alice.email.to_uppercase()).await;
    let code = h.code(&alice.email, Purpose::PasswordReset).await;
    // A reset code is no sign-up code, and the other way round.
    assert_bad_code(confirm(&h, &alice.email, &code).await);

    // A password the policy refuses, or the current one, leaves the code
    // alive for a better try.
    let status = reset(&h, &alice.email, &code, "short").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("password"), "{status:?}");
    let status = reset(&h, &alice.email, &code, PASSWORD).await.unwrap_err();
    assert!(status.message().contains("must differ"), "{status:?}");
    assert_bad_code(reset(&h, &alice.email, &other_than(&code), NEW_PASSWORD).await);
    reset(&h, &alice.email, &code, NEW_PASSWORD)
        .await
        .expect("reset");

    // Every login is gone, the old password too; the new one works.
    let refreshed = h.refresh(&before.refresh_token).await;
    assert_eq!(refreshed.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(
        h.login(&alice.email, PASSWORD).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    h.login(&alice.email, NEW_PASSWORD)
        .await
        .expect("new password");
    // Spent.
    assert_bad_code(reset(&h, &alice.email, &code, "yet another passphrase").await);

    // Reset codes last an hour.
    h.clock.advance(Duration::from_secs(120));
    forgot(&h, &alice.email).await;
    let late = h.code(&alice.email, Purpose::PasswordReset).await;
    h.clock.advance(Duration::from_secs(3600));
    assert_bad_code(reset(&h, &alice.email, &late, "yet another passphrase").await);
}

pub(crate) async fn a_reset_code_also_confirms_the_email(h: Harness) {
    let email = sign_up_unconfirmed(&h, "erin").await;
    forgot(&h, &email).await;
    let code = h.code(&email, Purpose::PasswordReset).await;
    reset(&h, &email, &code, NEW_PASSWORD).await.expect("reset");
    h.login(&email, NEW_PASSWORD)
        .await
        .expect("the reset proved the email");
}

pub(crate) async fn a_reset_clears_the_lockout(h: Harness) {
    let alice = h.sign_up("alice").await;
    for _ in 0..5 {
        let _ = h.login(&alice.email, "wrong horse battery").await;
    }
    assert_eq!(
        h.login(&alice.email, PASSWORD).await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    forgot(&h, &alice.email).await;
    let code = h.code(&alice.email, Purpose::PasswordReset).await;
    reset(&h, &alice.email, &code, NEW_PASSWORD)
        .await
        .expect("reset");
    h.login(&alice.email, NEW_PASSWORD)
        .await
        .expect("the owner of the email is let back in");
}

async fn login_from(
    h: &Harness,
    email: &str,
    password: &str,
    ip: &str,
) -> tonic::Result<pb::LoginResponse> {
    let mut request = Request::new(pb::LoginRequest {
        email: email.into(),
        password: password.into(),
        client_id: String::new(),
    });
    request
        .metadata_mut()
        .insert("x-cloudsec-client-ip", ip.parse().unwrap());
    h.api.login(request).await.map(|r| r.into_inner())
}

pub(crate) async fn failed_logins_are_limited_per_client_address(h: Harness) {
    let alice = h.sign_up("alice").await;
    let spray = "203.0.113.7";
    // A password spray: one try per email, so no email locks.
    for i in 0..49 {
        let status = login_from(&h, &format!("victim{i}@example.com"), "Winter2026!", spray)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // A right password does not clear the address's count.
    login_from(&h, &alice.email, PASSWORD, spray)
        .await
        .expect("under the limit");
    let _ = login_from(&h, "victim49@example.com", "Winter2026!", spray).await;
    // The fiftieth failure locks the address, for every email.
    let status = login_from(&h, &alice.email, PASSWORD, spray)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("900 s"), "{status:?}");
    // Other addresses, and callers the gateway did not name, are not.
    login_from(&h, &alice.email, PASSWORD, "198.51.100.1")
        .await
        .expect("another address");
    h.login(&alice.email, PASSWORD).await.expect("no address");
    // The lock lasts the window.
    h.clock.advance(Duration::from_secs(15 * 60));
    login_from(&h, &alice.email, PASSWORD, spray)
        .await
        .expect("after the window");
    // After a quiet spell the count starts afresh: one failure locks nothing.
    h.clock.advance(Duration::from_secs(16 * 60));
    let _ = login_from(&h, "victim50@example.com", "Winter2026!", spray).await;
    login_from(&h, &alice.email, PASSWORD, spray)
        .await
        .expect("a fresh count");
}
