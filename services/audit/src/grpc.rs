//! The thin gRPC adapter: authenticate, demand the tenant admin scope,
//! validate, call the log, and copy the result back.

use std::sync::Arc;

use cloudsec_proto::audit::v1 as pb;
use cloudsec_proto::audit::v1::audit_service_server::{AuditService, AuditServiceServer};
use cloudsec_runtime::token::TokenVerifier;
use tonic::{Request, Response, Status};

use crate::READ_SCOPE;
use crate::chain::AuditRecord;
use crate::error::AuditError;
use crate::store::{AuditLog, ListParams, ListQuery};

/// Requests carry a page token and two short filters at most.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// `AuditService` over an [`AuditLog`], checking every call's token.
#[derive(Debug, Clone)]
pub struct AuditGrpc {
    log: AuditLog,
    verifier: Arc<TokenVerifier>,
}

impl AuditGrpc {
    pub fn new(log: AuditLog, verifier: Arc<TokenVerifier>) -> Self {
        Self { log, verifier }
    }

    /// The tonic service, with the request size limit set.
    pub fn into_server(self) -> AuditServiceServer<Self> {
        AuditServiceServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    /// The caller's tenant, if the token is valid and carries the admin
    /// scope or `audit:read`. A valid token without either is
    /// PermissionDenied, not Unauthenticated: the caller is known, just not
    /// allowed.
    async fn admin_tenant<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let claims = self.verifier.authenticate(request).await?;
        if !(claims.is_tenant_admin() || claims.has_scope(READ_SCOPE)) {
            tracing::info!(user = %claims.sub, tenant = %claims.tenant, "audit access refused: not a tenant admin");
            return Err(AuditError::NotAdmin.into());
        }
        Ok(claims.tenant)
    }
}

#[tonic::async_trait]
impl AuditService for AuditGrpc {
    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        let tenant = self.admin_tenant(&request).await?;
        let request = request.into_inner();
        let params = ListParams {
            page_size: request.page_size,
            page_token: request.page_token,
            event_type: request.event_type,
            subject: request.subject,
        };
        let query = ListQuery::validate(params, &tenant, self.log.page_tokens())
            .map_err(AuditError::from)?;
        let page = self.log.list(&tenant, &query).await?;
        Ok(Response::new(pb::ListAuditRecordsResponse {
            records: page.records.into_iter().map(to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn verify_audit_chain(
        &self,
        request: Request<pb::VerifyAuditChainRequest>,
    ) -> Result<Response<pb::VerifyAuditChainResponse>, Status> {
        let tenant = self.admin_tenant(&request).await?;
        let verdict = self.log.verify(&tenant).await?;
        Ok(Response::new(pb::VerifyAuditChainResponse {
            ok: verdict.ok,
            records_checked: verdict.records_checked,
            first_invalid_seq: verdict.first_invalid_seq,
            reason: verdict.reason,
            head_seq: verdict.head_seq,
            head_hash: verdict.head_hash,
        }))
    }
}

fn to_proto(record: AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        summary: Some(summary_struct(&record.summary)),
        tenant: record.tenant,
        seq: record.seq,
        event_id: record.event_id,
        event_type: record.event_type,
        source: record.source,
        subject: record.subject,
        actor: record.actor,
        occur_time: Some(timestamp(record.occur_time)),
        record_time: Some(timestamp(record.record_time)),
        prev_hash: record.prev_hash,
        hash: record.hash,
    }
}

fn timestamp(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        // Below one billion by construction, so the cast is lossless.
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// The stored JSON as a `Struct`. A summary that is not a JSON object can
/// only come from an edit outside the service; it is shown as `@raw` so
/// the record stays listable and the edit visible.
fn summary_struct(json: &str) -> prost_types::Struct {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(fields)) => prost_types::Struct {
            fields: fields.into_iter().map(|(k, v)| (k, value(v))).collect(),
        },
        _ => prost_types::Struct {
            fields: [(
                "@raw".to_owned(),
                value(serde_json::Value::String(json.to_owned())),
            )]
            .into(),
        },
    }
}

fn value(json: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(value).collect(),
        }),
        serde_json::Value::Object(fields) => Kind::StructValue(prost_types::Struct {
            fields: fields.into_iter().map(|(k, v)| (k, value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::value::Kind;

    #[test]
    fn summaries_become_structs() {
        let summary =
            summary_struct(r#"{"@type":"t","labels":{"a":"b"},"n":1,"ok":true,"l":[null]}"#);
        assert_eq!(
            summary.fields["@type"].kind,
            Some(Kind::StringValue("t".into()))
        );
        assert_eq!(summary.fields["n"].kind, Some(Kind::NumberValue(1.0)));
        assert_eq!(summary.fields["ok"].kind, Some(Kind::BoolValue(true)));
        let Some(Kind::StructValue(labels)) = &summary.fields["labels"].kind else {
            panic!("labels: {summary:?}");
        };
        assert_eq!(labels.fields["a"].kind, Some(Kind::StringValue("b".into())));
        let Some(Kind::ListValue(list)) = &summary.fields["l"].kind else {
            panic!("l: {summary:?}");
        };
        assert_eq!(list.values[0].kind, Some(Kind::NullValue(0)));
    }

    #[test]
    fn edited_summaries_are_shown_raw() {
        let summary = summary_struct("not json");
        assert_eq!(
            summary.fields["@raw"].kind,
            Some(Kind::StringValue("not json".into()))
        );
    }
}
