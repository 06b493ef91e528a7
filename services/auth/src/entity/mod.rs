//! The auth service's tables.

pub mod signing_key;
pub mod tenant;
pub mod user;
