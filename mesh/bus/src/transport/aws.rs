//! SNS, SQS and EventBridge.
//!
//! - [`SnsPublisher`] publishes in binary mode with `PublishBatch`: the
//!   body is the base64 payload, the `ce_*` attributes are SNS message
//!   attributes, which raw delivery hands to SQS unchanged and which
//!   subscription filter policies match (`ce_type`). On a FIFO topic the
//!   aggregate id is the message group and the event id the deduplication
//!   id.
//! - [`EventBridgePublisher`] publishes in structured mode with `PutEvents`:
//!   `source` and `detail-type` are the event's source and type, `detail`
//!   is the CloudEvent JSON. Rules match on `detail-type`.
//! - [`SqsQueue`] is a subscriber's queue under either; it reads both forms.
//!
//! [`sns_topic`], [`sns_subscription`], [`event_bus`] and
//! [`eventbridge_subscription`] create what they need in
//! [`Provisioning::Create`] mode and only look it up in
//! [`Provisioning::Existing`] mode.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_eventbridge::types::{PutEventsRequestEntry, RuleState, SqsParameters, Target};
use aws_sdk_sns::types::PublishBatchRequestEntry;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

use crate::envelope::{Envelope, TYPE_ATTRIBUTE};
use crate::error::{BusError, Result, aws};
use crate::transport::{
    Delivery, MAX_BATCH, Provisioning, Published, Publisher, Queue, QueueSpec, decode_message,
};

pub use cloudsec_runtime::aws::{AwsSettings, sdk_config};

/// The three clients, built from one configuration.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
}

impl AwsClients {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            sns: aws_sdk_sns::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            eventbridge: aws_sdk_eventbridge::Client::new(config),
        }
    }
}

// ---------------------------------------------------------------- SNS

/// Publishes to one SNS topic.
#[derive(Clone, Debug)]
pub struct SnsPublisher {
    client: aws_sdk_sns::Client,
    topic_arn: String,
    fifo: bool,
}

impl SnsPublisher {
    /// A publisher for a topic known by ARN (FIFO when it ends in `.fifo`).
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        let topic_arn = topic_arn.into();
        Self {
            client,
            fifo: topic_arn.ends_with(".fifo"),
            topic_arn,
        }
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }
}

#[async_trait::async_trait]
impl Publisher for SnsPublisher {
    async fn publish(&self, batch: &[Envelope]) -> Result<Published> {
        if batch.is_empty() {
            return Ok(Published::all());
        }
        let mut entries = Vec::with_capacity(batch.len().min(MAX_BATCH));
        for (i, envelope) in batch.iter().enumerate().take(MAX_BATCH) {
            let (attributes, body) = envelope.to_binary();
            let mut entry = PublishBatchRequestEntry::builder()
                .id(i.to_string())
                .message(body);
            for (name, value) in attributes {
                let value = aws_sdk_sns::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .map_err(|e| BusError::Invalid(e.to_string()))?;
                entry = entry.message_attributes(name, value);
            }
            if self.fifo {
                entry = entry
                    .message_group_id(envelope.aggregate())
                    .message_deduplication_id(&envelope.id);
            }
            entries.push(
                entry
                    .build()
                    .map_err(|e| BusError::Invalid(e.to_string()))?,
            );
        }
        let output = self
            .client
            .publish_batch()
            .topic_arn(&self.topic_arn)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await
            .map_err(aws("sns", "PublishBatch"))?;
        let mut published = Published::all();
        for failed in output.failed() {
            let index = failed.id().parse::<usize>().map_err(|_| BusError::Aws {
                service: "sns",
                operation: "PublishBatch",
                message: format!("unknown entry id `{}` in the answer", failed.id()),
            })?;
            published.failed.push((
                index,
                format!(
                    "{}: {}",
                    failed.code(),
                    failed.message().unwrap_or_default()
                ),
            ));
        }
        Ok(published)
    }
}

/// The topic `name` (a FIFO topic's name ends in `.fifo`).
pub async fn sns_topic(
    client: &aws_sdk_sns::Client,
    name: &str,
    mode: Provisioning,
) -> Result<SnsPublisher> {
    let arn = match mode {
        Provisioning::Create => {
            let mut create = client.create_topic().name(name);
            if name.ends_with(".fifo") {
                create = create.attributes("FifoTopic", "true");
            }
            let output = create.send().await.map_err(aws("sns", "CreateTopic"))?;
            output
                .topic_arn()
                .map(str::to_owned)
                .ok_or_else(|| BusError::Aws {
                    service: "sns",
                    operation: "CreateTopic",
                    message: "no topic ARN in the answer".into(),
                })?
        }
        Provisioning::Existing => find_topic(client, name).await?,
    };
    Ok(SnsPublisher::new(client.clone(), arn))
}

async fn find_topic(client: &aws_sdk_sns::Client, name: &str) -> Result<String> {
    let suffix = format!(":{name}");
    let mut topics = client.list_topics().into_paginator().items().send();
    while let Some(topic) = topics.try_next().await.map_err(aws("sns", "ListTopics"))? {
        if let Some(arn) = topic.topic_arn().filter(|arn| arn.ends_with(&suffix)) {
            return Ok(arn.to_owned());
        }
    }
    Err(BusError::Missing {
        kind: "SNS topic",
        name: name.to_owned(),
    })
}

/// The SNS filter policy that lets only `event_types` through, or `None`
/// for every type.
pub fn filter_policy(event_types: &[String]) -> Option<String> {
    if event_types.is_empty() {
        return None;
    }
    Some(serde_json::json!({ TYPE_ATTRIBUTE: event_types }).to_string())
}

/// The queue of `spec` subscribed to `topic` with raw delivery and a filter
/// policy on the event type. In `Existing` mode only the queue is looked
/// up; the subscription is the infrastructure's business.
pub async fn sns_subscription(
    clients: &AwsClients,
    topic: &SnsPublisher,
    spec: &QueueSpec,
    mode: Provisioning,
) -> Result<SqsQueue> {
    spec.validate()?;
    check_fifo_name(spec)?;
    if mode == Provisioning::Existing {
        return SqsQueue::open(clients.sqs.clone(), &spec.name).await;
    }
    let queue =
        ensure_queue_pair(&clients.sqs, spec, "sns.amazonaws.com", topic.topic_arn()).await?;
    let queue_arn = queue_arn(&clients.sqs, &queue.url).await?;

    let mut attributes = HashMap::from([("RawMessageDelivery".to_owned(), "true".to_owned())]);
    if let Some(policy) = filter_policy(&spec.event_types) {
        attributes.insert("FilterPolicy".to_owned(), policy);
    }
    // Subscribing again with other attributes is an error on AWS, so an
    // existing subscription is updated in place instead.
    match find_subscription(&clients.sns, topic.topic_arn(), &queue_arn).await? {
        Some(subscription) => {
            for (name, value) in &attributes {
                clients
                    .sns
                    .set_subscription_attributes()
                    .subscription_arn(&subscription)
                    .attribute_name(name)
                    .attribute_value(value)
                    .send()
                    .await
                    .map_err(aws("sns", "SetSubscriptionAttributes"))?;
            }
            if spec.event_types.is_empty() {
                // An empty policy removes the filter.
                clients
                    .sns
                    .set_subscription_attributes()
                    .subscription_arn(&subscription)
                    .attribute_name("FilterPolicy")
                    .attribute_value("")
                    .send()
                    .await
                    .map_err(aws("sns", "SetSubscriptionAttributes"))?;
            }
        }
        None => {
            clients
                .sns
                .subscribe()
                .topic_arn(topic.topic_arn())
                .protocol("sqs")
                .endpoint(&queue_arn)
                .set_attributes(Some(attributes))
                .return_subscription_arn(true)
                .send()
                .await
                .map_err(aws("sns", "Subscribe"))?;
        }
    }
    Ok(queue)
}

async fn find_subscription(
    client: &aws_sdk_sns::Client,
    topic_arn: &str,
    endpoint: &str,
) -> Result<Option<String>> {
    let mut subscriptions = client
        .list_subscriptions_by_topic()
        .topic_arn(topic_arn)
        .into_paginator()
        .items()
        .send();
    while let Some(subscription) = subscriptions
        .try_next()
        .await
        .map_err(aws("sns", "ListSubscriptionsByTopic"))?
    {
        if subscription.endpoint() == Some(endpoint)
            && let Some(arn) = subscription.subscription_arn()
        {
            return Ok(Some(arn.to_owned()));
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------- EventBridge

/// Publishes to one EventBridge bus.
#[derive(Clone, Debug)]
pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgePublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    pub fn bus(&self) -> &str {
        &self.bus
    }
}

#[async_trait::async_trait]
impl Publisher for EventBridgePublisher {
    async fn publish(&self, batch: &[Envelope]) -> Result<Published> {
        if batch.is_empty() {
            return Ok(Published::all());
        }
        let entries: Vec<PutEventsRequestEntry> = batch
            .iter()
            .take(MAX_BATCH)
            .map(|envelope| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(&envelope.source)
                    .detail_type(&envelope.event_type)
                    .detail(envelope.to_json())
                    .time(aws_sdk_eventbridge::primitives::DateTime::from_millis(
                        envelope.time.timestamp_millis(),
                    ))
                    .build()
            })
            .collect();
        let output = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(aws("eventbridge", "PutEvents"))?;
        let mut published = Published::all();
        if output.failed_entry_count() > 0 {
            // The answer's entries line up with the request's.
            for (i, entry) in output.entries().iter().enumerate() {
                if let Some(code) = entry.error_code() {
                    published.failed.push((
                        i,
                        format!("{code}: {}", entry.error_message().unwrap_or_default()),
                    ));
                }
            }
        }
        Ok(published)
    }
}

/// The bus `name` (`default` always exists).
pub async fn event_bus(
    client: &aws_sdk_eventbridge::Client,
    name: &str,
    mode: Provisioning,
) -> Result<EventBridgePublisher> {
    if name != "default" {
        let described = client.describe_event_bus().name(name).send().await;
        match described {
            Ok(_) => {}
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                if mode == Provisioning::Existing {
                    return Err(BusError::Missing {
                        kind: "EventBridge bus",
                        name: name.to_owned(),
                    });
                }
                client
                    .create_event_bus()
                    .name(name)
                    .send()
                    .await
                    .map_err(aws("eventbridge", "CreateEventBus"))?;
            }
            Err(error) => return Err(aws("eventbridge", "DescribeEventBus")(error)),
        }
    }
    Ok(EventBridgePublisher::new(client.clone(), name))
}

/// The event pattern of a rule for `event_types`; with none, one that
/// matches every CloudEvent (all carry `specversion` 1.0).
pub fn event_pattern(event_types: &[String]) -> String {
    if event_types.is_empty() {
        serde_json::json!({ "detail": { "specversion": ["1.0"] } }).to_string()
    } else {
        serde_json::json!({ "detail-type": event_types }).to_string()
    }
}

/// The queue of `spec` and the rule on `bus` that sends it `spec`'s event
/// types. The rule is named after the queue. In `Existing` mode only the
/// queue is looked up.
pub async fn eventbridge_subscription(
    clients: &AwsClients,
    bus: &EventBridgePublisher,
    spec: &QueueSpec,
    mode: Provisioning,
) -> Result<SqsQueue> {
    spec.validate()?;
    check_fifo_name(spec)?;
    if mode == Provisioning::Existing {
        return SqsQueue::open(clients.sqs.clone(), &spec.name).await;
    }
    let rule_arn = clients
        .eventbridge
        .put_rule()
        .name(rule_name(&spec.name))
        .event_bus_name(bus.bus())
        .event_pattern(event_pattern(&spec.event_types))
        .state(RuleState::Enabled)
        .send()
        .await
        .map_err(aws("eventbridge", "PutRule"))?
        .rule_arn()
        .map(str::to_owned)
        .unwrap_or_default();
    let queue = ensure_queue_pair(&clients.sqs, spec, "events.amazonaws.com", &rule_arn).await?;
    let queue_arn = queue_arn(&clients.sqs, &queue.url).await?;
    let mut target = Target::builder().id("sqs").arn(queue_arn);
    if spec.fifo {
        // EventBridge takes one fixed group per target, so a FIFO queue
        // behind a rule is in order as a whole, not per aggregate.
        target = target.sqs_parameters(
            SqsParameters::builder()
                .message_group_id(spec.name.trim_end_matches(".fifo"))
                .build(),
        );
    }
    clients
        .eventbridge
        .put_targets()
        .rule(rule_name(&spec.name))
        .event_bus_name(bus.bus())
        .targets(
            target
                .build()
                .map_err(|e| BusError::Invalid(e.to_string()))?,
        )
        .send()
        .await
        .map_err(aws("eventbridge", "PutTargets"))?;
    Ok(queue)
}

/// Rule names are at most 64 characters of `[.\-_A-Za-z0-9]`.
fn rule_name(queue: &str) -> String {
    let name: String = format!("cloudsec-{}", queue.trim_end_matches(".fifo"))
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.chars().take(64).collect()
}

// ---------------------------------------------------------------- SQS

/// A subscriber's SQS queue and, when it has a redrive policy, its
/// dead-letter queue.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    name: String,
    url: String,
    dead_letter_url: Option<String>,
    fifo: bool,
}

impl SqsQueue {
    /// The existing queue `name`, with the dead-letter queue its redrive
    /// policy names.
    pub async fn open(client: aws_sdk_sqs::Client, name: &str) -> Result<Self> {
        let url = queue_url(&client, name).await?;
        let attributes = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(aws("sqs", "GetQueueAttributes"))?;
        let dead_letter_url = match attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
        {
            Some(policy) => {
                let policy: serde_json::Value = serde_json::from_str(policy)
                    .map_err(|e| BusError::Config(format!("redrive policy of `{name}`: {e}")))?;
                let arn = policy["deadLetterTargetArn"].as_str().unwrap_or_default();
                match arn.rsplit(':').next() {
                    Some(dlq) if !dlq.is_empty() => Some(queue_url(&client, dlq).await?),
                    _ => None,
                }
            }
            None => None,
        };
        Ok(Self {
            client,
            fifo: name.ends_with(".fifo"),
            name: name.to_owned(),
            url,
            dead_letter_url,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn dead_letter_url(&self) -> Option<&str> {
        self.dead_letter_url.as_deref()
    }
}

async fn queue_url(client: &aws_sdk_sqs::Client, name: &str) -> Result<String> {
    match client.get_queue_url().queue_name(name).send().await {
        Ok(output) => Ok(output.queue_url().unwrap_or_default().to_owned()),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_queue_does_not_exist()) =>
        {
            Err(BusError::Missing {
                kind: "SQS queue",
                name: name.to_owned(),
            })
        }
        Err(error) => Err(aws("sqs", "GetQueueUrl")(error)),
    }
}

async fn queue_arn(client: &aws_sdk_sqs::Client, url: &str) -> Result<String> {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws("sqs", "GetQueueAttributes"))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| BusError::Aws {
            service: "sqs",
            operation: "GetQueueAttributes",
            message: format!("no QueueArn for {url}"),
        })
}

fn check_fifo_name(spec: &QueueSpec) -> Result<()> {
    if spec.fifo != spec.name.ends_with(".fifo") {
        return Err(BusError::Config(format!(
            "queue `{}`: a FIFO queue's name ends in `.fifo`, and only a FIFO queue's does",
            spec.name
        )));
    }
    Ok(())
}

/// The dead-letter queue's name: `orders` -> `orders-dlq`,
/// `orders.fifo` -> `orders-dlq.fifo`.
pub fn dead_letter_name(queue: &str) -> String {
    match queue.strip_suffix(".fifo") {
        Some(base) => format!("{base}-dlq.fifo"),
        None => format!("{queue}-dlq"),
    }
}

/// Creates (or updates) the dead-letter queue and then the queue of `spec`
/// with its redrive policy, visibility timeout and a policy that lets
/// `principal` from `source_arn` send to it.
async fn ensure_queue_pair(
    client: &aws_sdk_sqs::Client,
    spec: &QueueSpec,
    principal: &str,
    source_arn: &str,
) -> Result<SqsQueue> {
    let dlq_url = ensure_queue(client, &dead_letter_name(&spec.name), spec.fifo).await?;
    set_attributes(
        client,
        &dlq_url,
        // Dead letters wait for a person: keep them the longest SQS allows.
        [(
            QueueAttributeName::MessageRetentionPeriod,
            "1209600".to_owned(),
        )],
    )
    .await?;
    let dlq_arn = queue_arn(client, &dlq_url).await?;

    let url = ensure_queue(client, &spec.name, spec.fifo).await?;
    let arn = queue_arn(client, &url).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": spec.max_receives,
    });
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": principal },
            "Action": "sqs:SendMessage",
            "Resource": arn,
            "Condition": { "ArnEquals": { "aws:SourceArn": source_arn } },
        }],
    });
    set_attributes(
        client,
        &url,
        [
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
            (
                QueueAttributeName::VisibilityTimeout,
                whole_seconds(spec.visibility_timeout).to_string(),
            ),
            (QueueAttributeName::Policy, policy.to_string()),
        ],
    )
    .await?;
    Ok(SqsQueue {
        client: client.clone(),
        name: spec.name.clone(),
        url,
        dead_letter_url: Some(dlq_url),
        fifo: spec.fifo,
    })
}

/// Creates the queue with only the attributes that cannot change (so that
/// a second start finds it instead of failing on a difference) and
/// returns its URL.
async fn ensure_queue(client: &aws_sdk_sqs::Client, name: &str, fifo: bool) -> Result<String> {
    let mut create = client.create_queue().queue_name(name);
    if fifo {
        create = create.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let output = create.send().await.map_err(aws("sqs", "CreateQueue"))?;
    output
        .queue_url()
        .map(str::to_owned)
        .ok_or_else(|| BusError::Aws {
            service: "sqs",
            operation: "CreateQueue",
            message: format!("no URL for queue `{name}`"),
        })
}

async fn set_attributes(
    client: &aws_sdk_sqs::Client,
    url: &str,
    attributes: impl IntoIterator<Item = (QueueAttributeName, String)>,
) -> Result<()> {
    client
        .set_queue_attributes()
        .queue_url(url)
        .set_attributes(Some(attributes.into_iter().collect()))
        .send()
        .await
        .map_err(aws("sqs", "SetQueueAttributes"))?;
    Ok(())
}

/// SQS counts visibility in whole seconds, 0 to 12 hours; a fraction
/// rounds up so that a timeout never shrinks.
fn whole_seconds(duration: Duration) -> i32 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(secs.min(43_200)).unwrap_or(43_200)
}

#[async_trait::async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::try_from(max.clamp(1, MAX_BATCH)).unwrap_or(10))
            .wait_time_seconds(whole_seconds(wait).min(20))
            .visibility_timeout(whole_seconds(visibility))
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(aws("sqs", "ReceiveMessage"))?;
        let deliveries = output
            .messages()
            .iter()
            .map(|message| {
                let attributes: BTreeMap<String, String> = message
                    .message_attributes()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
                    .collect();
                let system = message.attributes();
                let get =
                    |name: &MessageSystemAttributeName| system.and_then(|a| a.get(name)).cloned();
                let body = message.body().unwrap_or_default().to_owned();
                Delivery {
                    message_id: message.message_id().unwrap_or_default().to_owned(),
                    receipt: message.receipt_handle().unwrap_or_default().to_owned(),
                    receive_count: get(&MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                    group: get(&MessageSystemAttributeName::MessageGroupId),
                    event: decode_message(&attributes, &body),
                    body,
                    attributes,
                }
            })
            .collect();
        Ok(deliveries)
    }

    async fn delete(&self, delivery: &Delivery) -> Result<()> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&delivery.receipt)
            .send()
            .await
            .map_err(aws("sqs", "DeleteMessage"))?;
        Ok(())
    }

    async fn set_visibility(&self, delivery: &Delivery, timeout: Duration) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&delivery.receipt)
            .visibility_timeout(whole_seconds(timeout))
            .send()
            .await
            .map_err(aws("sqs", "ChangeMessageVisibility"))?;
        Ok(())
    }

    /// SQS has no "move to the DLQ": the message is sent there as it came
    /// (body and attributes), then deleted here. A crash in between leaves
    /// it in both, never in neither.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<()> {
        let Some(dlq) = &self.dead_letter_url else {
            return Err(BusError::Config(format!(
                "queue `{}` has no dead-letter queue",
                self.name
            )));
        };
        let mut send = self
            .client
            .send_message()
            .queue_url(dlq)
            .message_body(&delivery.body);
        for (name, value) in &delivery.attributes {
            send = send.message_attributes(name, string_attribute(value)?);
        }
        // SQS allows 10 attributes; the reason goes only where there is room.
        if delivery.attributes.len() < 10 {
            let reason: String = reason.chars().take(1000).collect();
            send =
                send.message_attributes("cloudsec_dead_letter_reason", string_attribute(&reason)?);
        }
        if self.fifo {
            let group = delivery
                .group
                .clone()
                .unwrap_or_else(|| "dead-letters".into());
            send = send
                .message_group_id(group)
                .message_deduplication_id(delivery.message_id.clone());
        }
        send.send().await.map_err(aws("sqs", "SendMessage"))?;
        self.delete(delivery).await
    }

    /// SQS's approximate counts, visible plus in flight (delayed ones are
    /// not yet the subscriber's), of the queue and of its dead-letter queue
    /// (where someone inspecting a dead letter must not hide it).
    async fn depth(&self) -> Result<crate::transport::QueueDepth> {
        const COUNTS: [QueueAttributeName; 2] = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ];
        let messages = approximate(&self.client, &self.url, &COUNTS).await?;
        let dead_letters = match &self.dead_letter_url {
            Some(dlq) => Some(approximate(&self.client, dlq, &COUNTS).await?),
            None => None,
        };
        Ok(crate::transport::QueueDepth {
            messages: Some(messages),
            dead_letters,
        })
    }
}

/// The sum of the named numeric attributes of the queue at `url`.
async fn approximate(
    client: &aws_sdk_sqs::Client,
    url: &str,
    names: &[QueueAttributeName],
) -> Result<u64> {
    let mut request = client.get_queue_attributes().queue_url(url);
    for name in names {
        request = request.attribute_names(name.clone());
    }
    let output = request
        .send()
        .await
        .map_err(aws("sqs", "GetQueueAttributes"))?;
    let attributes = output.attributes();
    Ok(names
        .iter()
        .filter_map(|name| attributes?.get(name)?.parse::<u64>().ok())
        .sum())
}

fn string_attribute(value: &str) -> Result<aws_sdk_sqs::types::MessageAttributeValue> {
    aws_sdk_sqs::types::MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| BusError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_policies() {
        assert_eq!(dead_letter_name("audit"), "audit-dlq");
        assert_eq!(dead_letter_name("audit.fifo"), "audit-dlq.fifo");
        assert_eq!(rule_name("audit events"), "cloudsec-audit-events");
        assert_eq!(rule_name(&"x".repeat(100)).len(), 64);
        assert_eq!(filter_policy(&[]), None);
        assert_eq!(
            filter_policy(&["a.B".into()]).as_deref(),
            Some(r#"{"ce_type":["a.B"]}"#)
        );
        assert_eq!(event_pattern(&["a.B".into()]), r#"{"detail-type":["a.B"]}"#);
    }

    #[test]
    fn visibility_rounds_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
        assert_eq!(whole_seconds(Duration::from_secs(100_000)), 43_200);
    }
}
