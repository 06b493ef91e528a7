//! The sea-orm entities of the audit tables, as the migrations in
//! [`crate::migration`] create them.

pub mod audit_chain_head;
pub mod audit_record;
pub mod audit_secret;
pub mod audit_signature;
