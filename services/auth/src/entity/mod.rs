//! The auth service's tables.

pub mod confirmation_code;
pub mod federated_identity;
pub mod federation_login;
pub mod login_attempt;
pub mod mfa_challenge;
pub mod mfa_recovery_code;
pub mod mfa_totp;
pub mod password_history;
pub mod refresh_token;
pub mod signing_key;
pub mod tenant;
pub mod token_revocation;
pub mod user;
pub mod user_group;
