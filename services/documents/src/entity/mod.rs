//! The sea-orm entities of the documents tables, as the migrations in
//! [`crate::migration`] create them.

pub mod document;
pub mod document_label;
