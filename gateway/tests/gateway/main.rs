//! The gateway's integration tests, in one binary (one link, and the
//! harness's generics compiled once): each module drives a running gateway
//! in front of the test contract's echo server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod edge;
mod limits;
mod tls;
mod transcoding;
