//! The inbox on DynamoDB: the same claims as the SQL inbox
//! ([`Inbox`](crate::Inbox)), one item per `(subscriber, event id)` in the
//! table of Terraform's data module (`cloudsec-<env>-inbox`: `pk` and `sk`
//! strings, TTL on `expires_at`).
//!
//! | attribute | meaning |
//! |---|---|
//! | `pk` | `<subscriber>#<event id>` |
//! | `sk` | `#` |
//! | `handled_at_ms` | when it was claimed or handled |
//! | `lease_until_ms`, `claim_token`, `claim_message` | a claim in progress (absent once handled; a released claim keeps only `lease_until_ms = 0`) |
//! | `expires_at` | epoch seconds after which DynamoDB's TTL deletes the item: the retention window from the last write |
//!
//! A claim is one conditional `PutItem` (absent, or a lease that ran out
//! or was released),
//! so of any number of concurrent callers one wins. Nothing is purged by
//! hand: TTL deletes entries once the retention (longer than any
//! redelivery: SQS keeps a message at most 14 days) has passed. TTL
//! deletes lazily (within days), and an entry past `expires_at` but not yet
//! deleted still counts, which only errs on the side of "handled".

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TimeToLiveSpecification,
};

use crate::error::{BusError, Result};
use crate::inbox::{Claim, ClaimToken};
use crate::sql::{ms, now_ms};
use crate::transport::Provisioning;

/// The TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// By default an entry lives 15 days: longer than SQS's longest retention
/// (14 days), so no redelivery can outlive its entry.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(15 * 24 * 3600);

/// The inbox table (see the module doc).
#[derive(Debug, Clone)]
pub struct DynamoInbox {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: Duration,
}

const CONDITIONAL: &str = "ConditionalCheckFailedException";

fn dynamo<E: ProvideErrorMetadata + std::error::Error>(
    operation: &'static str,
) -> impl FnOnce(E) -> BusError {
    move |error| BusError::Aws {
        service: "dynamodb",
        operation,
        message: aws_sdk_dynamodb::error::DisplayErrorContext(&error).to_string(),
    }
}

/// A conditional write's outcome: `true` when written, `false` when its
/// condition did not hold (someone else's claim, or already handled).
fn conditional<T, E: ProvideErrorMetadata + std::error::Error>(
    result: std::result::Result<T, E>,
    operation: &'static str,
) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some(CONDITIONAL) => Ok(false),
        Err(e) => Err(dynamo(operation)(e)),
    }
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

impl DynamoInbox {
    /// The inbox in `table`; in [`Provisioning::Create`] mode the table is
    /// created with its TTL turned on, in `Existing` mode only checked.
    pub async fn open(
        client: aws_sdk_dynamodb::Client,
        table: &str,
        retention: Duration,
        provisioning: Provisioning,
    ) -> Result<Self> {
        let inbox = Self {
            client,
            table: table.to_owned(),
            retention,
        };
        match provisioning {
            Provisioning::Create => inbox.create().await?,
            Provisioning::Existing => {
                // A read needs only `dynamodb:GetItem`, which the
                // components' policies grant.
                inbox
                    .client
                    .get_item()
                    .table_name(&inbox.table)
                    .key("pk", s("#"))
                    .key("sk", s("#"))
                    .send()
                    .await
                    .map_err(dynamo("GetItem"))?;
            }
        }
        Ok(inbox)
    }

    async fn create(&self) -> Result<()> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| BusError::Config(e.to_string());
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("sk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("sk")
                    .key_type(KeyType::Range)
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceInUseException") => return Ok(()),
            Err(e) => return Err(dynamo("CreateTable")(e)),
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await
            .map_err(dynamo("UpdateTimeToLive"))?;
        Ok(())
    }

    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The item's partition key.
    pub fn key(subscriber: &str, event_id: &str) -> String {
        format!("{subscriber}#{event_id}")
    }

    fn expires_at(&self) -> i64 {
        let seconds = i64::try_from(self.retention.as_secs()).unwrap_or(i64::MAX / 2);
        now_ms() / 1000 + seconds
    }

    async fn get(
        &self,
        subscriber: &str,
        event_id: &str,
    ) -> Result<Option<std::collections::HashMap<String, AttributeValue>>> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&Self::key(subscriber, event_id)))
            .key("sk", s("#"))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo("GetItem"))?;
        Ok(got.item)
    }

    pub(crate) async fn seen(&self, subscriber: &str, event_id: &str) -> Result<bool> {
        Ok(self
            .get(subscriber, event_id)
            .await?
            .is_some_and(|item| !item.contains_key("lease_until_ms")))
    }

    pub(crate) async fn claim(
        &self,
        subscriber: &str,
        event_id: &str,
        message_id: &str,
        lease: Duration,
    ) -> Result<Claim> {
        let token = uuid::Uuid::new_v4().to_string();
        // Twice at most: a claim released (or run out) between the put
        // and the read has ended, and the second put takes it.
        for _ in 0..2 {
            let now = now_ms();
            let put = self
                .put_entry(subscriber, event_id, now)
                .item("lease_until_ms", n(now.saturating_add(ms(lease))))
                .item("claim_token", s(&token))
                .item("claim_message", s(message_id))
                // New, or a claim whose holder stopped extending it.
                .condition_expression(
                    "attribute_not_exists(pk) OR \
                     (attribute_exists(lease_until_ms) AND lease_until_ms < :now)",
                )
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            if conditional(put, "PutItem")? {
                return Ok(Claim::Acquired(ClaimToken::new(token)));
            }
            let Some(item) = self.get(subscriber, event_id).await? else {
                continue;
            };
            return Ok(match item.get("lease_until_ms") {
                None => Claim::Handled,
                Some(until) => {
                    let until = match until {
                        AttributeValue::N(v) => v.parse::<i64>().unwrap_or(now),
                        _ => now,
                    };
                    // Released (or run out) between the put and the
                    // read: the second put takes it.
                    if until < now_ms() {
                        continue;
                    }
                    let holder = match item.get("claim_message") {
                        Some(AttributeValue::S(m)) => m.clone(),
                        _ => String::new(),
                    };
                    Claim::Busy {
                        message_id: holder,
                        lease: Duration::from_millis(
                            u64::try_from(until.saturating_sub(now)).unwrap_or(0),
                        ),
                    }
                }
            });
        }
        Ok(Claim::Busy {
            message_id: String::new(),
            lease: Duration::from_secs(1),
        })
    }

    /// A `PutItem` of one event's entry, handled (or claimed) at
    /// `handled_at_ms` and kept for the retention from now.
    fn put_entry(
        &self,
        subscriber: &str,
        event_id: &str,
        handled_at_ms: i64,
    ) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&Self::key(subscriber, event_id)))
            .item("sk", s("#"))
            .item("handled_at_ms", n(handled_at_ms))
            .item(TTL_ATTRIBUTE, n(self.expires_at()))
    }

    /// An `UpdateItem` on one event's entry, for the holder of `claim`
    /// (its token bound as `:token`).
    fn update_claimed(
        &self,
        subscriber: &str,
        event_id: &str,
        claim: &ClaimToken,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&Self::key(subscriber, event_id)))
            .key("sk", s("#"))
            .expression_attribute_values(":token", s(claim.as_str()))
    }

    pub(crate) async fn extend(
        &self,
        subscriber: &str,
        event_id: &str,
        claim: &ClaimToken,
        lease: Duration,
    ) -> Result<bool> {
        let updated = self
            .update_claimed(subscriber, event_id, claim)
            .update_expression("SET lease_until_ms = :until, #ttl = :exp")
            .condition_expression("claim_token = :token AND attribute_exists(lease_until_ms)")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":until", n(now_ms().saturating_add(ms(lease))))
            .expression_attribute_values(":exp", n(self.expires_at()))
            .send()
            .await;
        conditional(updated, "UpdateItem")
    }

    pub(crate) async fn complete(
        &self,
        subscriber: &str,
        event_id: &str,
        claim: &ClaimToken,
    ) -> Result<()> {
        let updated = self
            .update_claimed(subscriber, event_id, claim)
            .update_expression(
                "SET handled_at_ms = :now, #ttl = :exp \
                 REMOVE lease_until_ms, claim_token, claim_message",
            )
            .condition_expression("claim_token = :token")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now_ms()))
            .expression_attribute_values(":exp", n(self.expires_at()))
            .send()
            .await;
        // A failed condition: already completed, or the handler recorded it
        // itself.
        conditional(updated, "UpdateItem").map(drop)
    }

    /// Ends a claim without handling it, so the next copy can claim the
    /// event at once. An update that ends the lease, not a `DeleteItem`:
    /// the subscribers' IAM policies (deploy/iam) grant no delete on the
    /// inbox table, which keeps the audit trail's tables append-only.
    pub(crate) async fn release(
        &self,
        subscriber: &str,
        event_id: &str,
        claim: &ClaimToken,
    ) -> Result<()> {
        let released = self
            .update_claimed(subscriber, event_id, claim)
            .update_expression("SET lease_until_ms = :ended REMOVE claim_token, claim_message")
            .condition_expression("claim_token = :token AND attribute_exists(lease_until_ms)")
            .expression_attribute_values(":ended", n(0))
            .send()
            .await;
        conditional(released, "UpdateItem").map(drop)
    }

    pub(crate) async fn record(&self, subscriber: &str, event_id: &str) -> Result<bool> {
        let put = self
            .put_entry(subscriber, event_id, now_ms())
            // New, or a claim (this very handler's) becoming the entry.
            .condition_expression("attribute_not_exists(pk) OR attribute_exists(lease_until_ms)")
            .send()
            .await;
        conditional(put, "PutItem")
    }
}
