//! The secrets crate against a real OpenBao server (and, for database
//! credentials, the PostgreSQL on 127.0.0.1:5432). See
//! `cloudsec_secrets::test_util` for how the server is found or started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod database;
mod envelope;
mod kv;
mod pki;
mod policies;
mod support;
