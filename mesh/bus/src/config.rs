//! The bus as configuration: which transport a service publishes to and
//! its subscribers read from, and how its relay paces itself.
//!
//! ```toml
//! [events]
//! transport = "embedded"            # embedded | sns | eventbridge
//! database_url = "sqlite://bus.db"  # embedded: the shared bus database
//! topic = "cloudsec-events"         # sns (".fifo" suffix for FIFO)
//! event_bus = "cloudsec-events"     # eventbridge
//! provisioning = "create"           # create | existing
//! [events.aws]
//! region = "eu-west-1"
//! [events.relay]
//! poll_interval = "1s"
//! ```

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use serde::Deserialize;

use crate::error::{BusError, Result};
use crate::relay::RelayConfig;
use crate::transport::aws::{
    AwsClients, AwsSettings, EventBridgePublisher, SnsPublisher, event_bus,
    eventbridge_subscription, sdk_config, sns_subscription, sns_topic,
};
use crate::transport::embedded::EmbeddedBus;
use crate::transport::{Provisioning, Publisher, Queue, QueueSpec};

/// Where events go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// Durable queues in a database (`cloudsec up`, tests, small installs).
    #[default]
    Embedded,
    /// An SNS topic fanning out to one SQS queue per subscriber.
    Sns,
    /// An EventBridge bus with rules that target SQS queues.
    Eventbridge,
}

/// The SNS topic's and the EventBridge bus's name unless configured
/// (`terraform/tools/plan_checks.py` reads it from here, so the estate's
/// names follow the code's).
pub const DEFAULT_NAME: &str = "cloudsec-events";

/// The `[events]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    #[serde(default)]
    pub transport: TransportKind,
    /// Embedded: the database holding the queues, shared by every producer
    /// and subscriber. Absent, a service uses its own database, which only
    /// subscribers in the same process can then reach.
    pub database_url: Option<cloudsec_runtime::db::DatabaseUrl>,
    /// SNS: the topic's name; a name ending in `.fifo` makes a FIFO topic
    /// with the aggregate id as message group.
    pub topic: String,
    /// EventBridge: the bus's name (`default` is the account's own).
    pub event_bus: String,
    /// Create the topic, bus, queues and subscriptions at start, or only
    /// use existing ones (production, where Terraform owns them).
    #[serde(default)]
    pub provisioning: Provisioning,
    #[serde(default)]
    pub aws: AwsSettings,
    #[serde(default)]
    pub relay: RelayConfig,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            transport: TransportKind::default(),
            database_url: None,
            topic: DEFAULT_NAME.to_owned(),
            event_bus: DEFAULT_NAME.to_owned(),
            provisioning: Provisioning::default(),
            aws: AwsSettings::default(),
            relay: RelayConfig::default(),
        }
    }
}

/// A connected bus: a publisher for relays and queues for subscribers.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Bus {
    inner: Inner,
}

#[derive(Clone, Debug)]
enum Inner {
    Embedded(EmbeddedBus),
    Sns {
        clients: AwsClients,
        topic: SnsPublisher,
    },
    Eventbridge {
        clients: AwsClients,
        bus: EventBridgePublisher,
    },
}

impl Bus {
    /// Connects to the configured transport and, in `create` mode, makes
    /// the topic or bus. `own_db` is the embedded bus's database when the
    /// configuration names none (its bus migrations must have run).
    pub async fn connect(config: &BusConfig, own_db: Option<&DatabaseConnection>) -> Result<Self> {
        let inner = match config.transport {
            TransportKind::Embedded => {
                let db = match (&config.database_url, own_db) {
                    (Some(url), _) => cloudsec_runtime::db::connect_to::<crate::Migrator>(url)
                        .await
                        .map_err(|e| BusError::Config(format!("events.database_url: {e}")))?,
                    (None, Some(db)) => db.clone(),
                    (None, None) => {
                        return Err(BusError::Config(
                            "events.database_url is required for the embedded bus".into(),
                        ));
                    }
                };
                Inner::Embedded(EmbeddedBus::new(db))
            }
            TransportKind::Sns => {
                let clients = AwsClients::new(&sdk_config(&config.aws, None).await);
                let topic = sns_topic(&clients.sns, &config.topic, config.provisioning).await?;
                Inner::Sns { clients, topic }
            }
            TransportKind::Eventbridge => {
                let clients = AwsClients::new(&sdk_config(&config.aws, None).await);
                let bus =
                    event_bus(&clients.eventbridge, &config.event_bus, config.provisioning).await?;
                Inner::Eventbridge { clients, bus }
            }
        };
        Ok(Self { inner })
    }

    /// The bus a service publishes to: `shared` when the process already
    /// connected one (so that in-process subscribers wake at commit),
    /// otherwise the configured transport, with the service's own database
    /// as the embedded bus's default.
    pub async fn for_service(
        config: &BusConfig,
        shared: Option<&Bus>,
        own_db: &DatabaseConnection,
    ) -> Result<Self> {
        match shared {
            Some(bus) => Ok(bus.clone()),
            None => Self::connect(config, Some(own_db)).await,
        }
    }

    /// A bus over an embedded database that is already open.
    pub fn embedded(bus: EmbeddedBus) -> Self {
        Self {
            inner: Inner::Embedded(bus),
        }
    }

    /// What relays publish through.
    pub fn publisher(&self) -> Arc<dyn Publisher> {
        match &self.inner {
            Inner::Embedded(bus) => Arc::new(bus.clone()),
            Inner::Sns { topic, .. } => Arc::new(topic.clone()),
            Inner::Eventbridge { bus, .. } => Arc::new(bus.clone()),
        }
    }

    /// The queue of `spec`, subscribed to the bus: created (with its
    /// dead-letter queue, subscription or rule) in `create` mode, looked
    /// up in `existing` mode.
    pub async fn queue(&self, spec: &QueueSpec, mode: Provisioning) -> Result<Arc<dyn Queue>> {
        Ok(match &self.inner {
            Inner::Embedded(bus) => Arc::new(bus.provision(spec, mode).await?),
            Inner::Sns { clients, topic } => {
                Arc::new(sns_subscription(clients, topic, spec, mode).await?)
            }
            Inner::Eventbridge { clients, bus } => {
                Arc::new(eventbridge_subscription(clients, bus, spec, mode).await?)
            }
        })
    }

    /// The embedded bus, when that is the transport (for dead-letter
    /// inspection and redrive).
    pub fn as_embedded(&self) -> Option<&EmbeddedBus> {
        match &self.inner {
            Inner::Embedded(bus) => Some(bus),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn defaults_and_unknown_keys() {
        let config: BusConfig = cloudsec_runtime::config::load(Some(""), &BTreeMap::new()).unwrap();
        assert_eq!(config.transport, TransportKind::Embedded);
        assert!(config.database_url.is_none());
        assert_eq!(config.topic, "cloudsec-events");
        assert_eq!(config.provisioning, Provisioning::Create);

        let config: BusConfig = cloudsec_runtime::config::load(
            Some("transport = \"sns\"\ntopic = \"t.fifo\"\nprovisioning = \"existing\"\n[aws]\nregion = \"eu-west-1\"\n[relay]\npoll_interval = \"250ms\"\n"),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(config.transport, TransportKind::Sns);
        assert_eq!(config.provisioning, Provisioning::Existing);
        assert_eq!(config.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            config.relay.poll_interval,
            std::time::Duration::from_millis(250)
        );

        let err = cloudsec_runtime::config::load::<BusConfig>(
            Some("transport = \"kafka\"\n"),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(err.key, "transport");
    }

    #[tokio::test]
    async fn embedded_needs_a_database() {
        let err = Bus::connect(&BusConfig::default(), None).await.unwrap_err();
        assert!(err.to_string().contains("events.database_url"), "{err}");
    }
}
