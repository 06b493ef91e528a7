//! The development mailer of `cloudsec up`: it reads every
//! `UserConfirmationRequested` event from its own queue, opens the sealed
//! code with the mailer's key (no other subscriber can) and writes it to
//! the log, where a real deployment runs a mailer that emails it.

use std::sync::Arc;
use std::time::Duration;

use cloudsec_auth::codes::CodeSeal;
use cloudsec_bus::{
    Bus, DeliveryInfo, DomainEvent, Envelope, Outcome, Provisioning, QueueSpec, Subscriber,
    SubscriberConfig, handler_fn,
};
use cloudsec_proto::events::v1::{ConfirmationPurpose, UserConfirmationRequested};

/// The queue the development mailer reads.
pub const QUEUE: &str = "cloudsec-dev-mailer";

/// A subscriber that logs each code; run it with [`Subscriber::run`].
pub async fn log_codes(
    bus: &Bus,
    provisioning: Provisioning,
    shutdown_grace: Duration,
    seal: CodeSeal,
) -> Result<Subscriber, cloudsec_bus::BusError> {
    let queue = bus
        .queue(
            &QueueSpec::new(QUEUE, &[UserConfirmationRequested::TYPE]),
            provisioning,
        )
        .await?;
    let seal = Arc::new(seal);
    let handler = handler_fn(move |event: Envelope, _: DeliveryInfo| {
        let seal = seal.clone();
        async move { deliver(&seal, &event).await }
    });
    Subscriber::from_arcs(
        queue,
        Arc::new(handler),
        SubscriberConfig {
            shutdown_grace,
            ..SubscriberConfig::default()
        },
    )
}

async fn deliver(seal: &CodeSeal, event: &Envelope) -> Outcome {
    let request = match event.decode::<UserConfirmationRequested>() {
        Ok(request) => request,
        Err(e) => return Outcome::dead_letter(format!("not a confirmation request: {e}")),
    };
    let code = match seal.open(&request).await {
        Ok(code) => code,
        // The key service may be down for a moment; a code that does not
        // open (forged, or moved to another address) never will.
        Err(cloudsec_auth::AuthError::Unavailable(reason)) => {
            tracing::warn!(%reason, "cannot open a confirmation code now; retrying");
            return Outcome::retry();
        }
        Err(error) => {
            tracing::warn!(event_id = %event.id, %error, "a confirmation code does not open");
            return Outcome::dead_letter("the sealed code does not open".to_owned());
        }
    };
    let purpose = match request.purpose() {
        ConfirmationPurpose::SignUp => "confirm the sign-up",
        ConfirmationPurpose::PasswordReset => "reset the password",
        ConfirmationPurpose::Unspecified => "confirm",
    };
    // Deliberately in the log: `up` is a laptop platform with no mail
    // server, and this line is the delivery (the only place the code is
    // ever written in clear).
    tracing::info!(
        email = %request.email,
        code = %code,
        purpose,
        "confirmation code (cloudsec up logs codes instead of emailing them)"
    );
    Outcome::Ack
}
