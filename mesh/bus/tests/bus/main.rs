//! The bus against real backends: SQLite files, fresh PostgreSQL databases
//! and a moto server (SNS, SQS, EventBridge).

mod aws;
mod embedded;
mod inbox;
mod inbox_retention;
mod metrics;
mod migration;
mod relay;
mod support;
