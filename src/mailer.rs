//! The development mailer of `cloudsec up`: it reads every
//! `UserConfirmationRequested` event from its own queue and writes the code
//! to the log, where a real deployment runs a mailer that emails it.

use std::sync::Arc;
use std::time::Duration;

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
) -> Result<Subscriber, cloudsec_bus::BusError> {
    let queue = bus
        .queue(
            &QueueSpec::new(QUEUE, &[UserConfirmationRequested::TYPE]),
            provisioning,
        )
        .await?;
    let handler = handler_fn(|event: Envelope, _: DeliveryInfo| async move { deliver(&event) });
    Subscriber::from_arcs(
        queue,
        Arc::new(handler),
        SubscriberConfig {
            shutdown_grace,
            ..SubscriberConfig::default()
        },
    )
}

fn deliver(event: &Envelope) -> Outcome {
    let request = match event.decode::<UserConfirmationRequested>() {
        Ok(request) => request,
        Err(e) => return Outcome::dead_letter(format!("not a confirmation request: {e}")),
    };
    let purpose = match request.purpose() {
        ConfirmationPurpose::SignUp => "confirm the sign-up",
        ConfirmationPurpose::PasswordReset => "reset the password",
        ConfirmationPurpose::Unspecified => "confirm",
    };
    // Deliberately in the log: `up` is a laptop platform with no mail
    // server, and this is how its user reads the code.
    tracing::info!(
        email = %request.email,
        code = %request.code,
        purpose,
        "confirmation code (cloudsec up logs codes instead of emailing them)"
    );
    Outcome::Ack
}
