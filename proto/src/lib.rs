//! cloudsec's protobuf contracts.
//!
//! The `.proto` files under `proto/cloudsec/<service>/v1/` are the source of
//! truth. This crate compiles them with protox at build time and exposes:
//! - the generated messages, clients and servers, one module per package;
//! - [`DomainEvent`] for every message marked as a domain event;
//! - [`FILE_DESCRIPTOR_SET`], the encoded descriptor set (imports and
//!   extension options included) that reflection and the gateway read.

#![allow(unreachable_pub, missing_debug_implementations)]
#![allow(clippy::all)]

/// A protobuf message that is published as a domain event. The build
/// implements it for every message of the contracts marked
/// `(cloudsec.api.v1.event_aggregate)`; nothing else implements it.
pub trait DomainEvent: prost::Message + Default {
    /// The CloudEvents `type`: the message's full protobuf name.
    const TYPE: &'static str;

    /// The id of the aggregate the event is about; the envelope's `subject`,
    /// the unit of ordering and the FIFO message group.
    fn aggregate_id(&self) -> &str;

    /// The tenant the event belongs to.
    fn tenant(&self) -> &str;
}

include!(concat!(env!("OUT_DIR"), "/domain_events.rs"));

/// The encoded `FileDescriptorSet` of every contract and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cloudsec_descriptor.bin"));

pub mod google {
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
    }
}

/// cloudsec's own options (`cloudsec.api.v1.required_scopes`,
/// `cloudsec.api.v1.field_rules`), read by the gateway.
pub mod api {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/cloudsec.api.v1.rs"));
    }
}

pub mod audit {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/cloudsec.audit.v1.rs"));
    }
}

pub mod auth {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/cloudsec.auth.v1.rs"));
    }
}

pub mod documents {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/cloudsec.documents.v1.rs"));
    }
}

pub mod events {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/cloudsec.events.v1.rs"));
    }
}
