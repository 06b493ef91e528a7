//! The thin gRPC adapter: authenticate, copy the request into domain
//! input, validate, call the store, and copy the result back.

use std::sync::Arc;

use cloudsec_proto::documents::v1 as pb;
use cloudsec_proto::documents::v1::document_service_server::{
    DocumentService, DocumentServiceServer,
};
use cloudsec_runtime::token::TokenVerifier;
use tonic::{Request, Response, Status};

use crate::domain::{
    self, Caller, DocumentFields, DocumentPatch, ListParams, ListQuery, NewDocument, UpdateParams,
};
use crate::error::DocumentsError;
use crate::store::Store;

/// The largest request accepted: 1 MiB of content plus generous room for
/// the other fields. Bigger requests are refused before they are decoded.
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// `DocumentService` over a [`Store`], checking every call's token.
#[derive(Debug, Clone)]
pub struct DocumentsGrpc {
    store: Store,
    verifier: Arc<TokenVerifier>,
    /// Members of this group (and tenant admins) see restricted documents.
    restricted_group: String,
}

impl DocumentsGrpc {
    pub fn new(store: Store, verifier: Arc<TokenVerifier>) -> Self {
        Self {
            store,
            verifier,
            restricted_group: crate::config::DEFAULT_RESTRICTED_GROUP.to_owned(),
        }
    }

    /// Another group than `restricted` for restricted documents.
    pub fn with_restricted_group(mut self, group: &str) -> Self {
        self.restricted_group = group.to_owned();
        self
    }

    /// The tonic service, with the request size limit set.
    pub fn into_server(self) -> DocumentServiceServer<Self> {
        DocumentServiceServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let token = cloudsec_runtime::token::bearer(request.metadata())
            .ok_or(cloudsec_runtime::token::TokenError::Missing)?;
        let claims = self.verifier.verify_access(token).await?;
        tracing::Span::current().record("sub", claims.base.sub.as_str());
        let admin = claims.base.is_tenant_admin();
        let member = claims.groups.contains(&self.restricted_group);
        Ok(Caller {
            tenant: claims.base.tenant,
            user: claims.base.sub,
            restricted: admin || member,
        })
    }
}

fn fields(document: pb::Document) -> DocumentFields {
    // Output-only fields (id, tenant, owner, times, size) are dropped here.
    DocumentFields {
        title: document.title,
        classification: document.classification,
        labels: document.labels,
        content: document.content,
        content_type: document.content_type,
    }
}

fn timestamp(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        // Below one billion by construction, so the cast is lossless.
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn to_proto(document: domain::Document) -> pb::Document {
    pb::Document {
        id: document.id.to_string(),
        tenant: document.tenant,
        owner: document.owner,
        title: document.title,
        classification: document.classification.number(),
        labels: document.labels.into_iter().collect(),
        content: document.content.unwrap_or_default(),
        content_type: document.content_type,
        create_time: Some(timestamp(document.create_time)),
        update_time: Some(timestamp(document.update_time)),
        etag: document.etag,
        size_bytes: document.size_bytes,
    }
}

fn invalid(violations: cloudsec_runtime::FieldViolations) -> Status {
    DocumentsError::from(violations).into()
}

#[tonic::async_trait]
impl DocumentService for DocumentsGrpc {
    async fn create_document(
        &self,
        request: Request<pb::CreateDocumentRequest>,
    ) -> Result<Response<pb::Document>, Status> {
        let caller = self.caller(&request).await?;
        let new =
            NewDocument::validate(request.into_inner().document.map(fields)).map_err(invalid)?;
        let document = self.store.create(&caller, new).await?;
        Ok(Response::new(to_proto(document)))
    }

    async fn get_document(
        &self,
        request: Request<pb::GetDocumentRequest>,
    ) -> Result<Response<pb::Document>, Status> {
        let caller = self.caller(&request).await?;
        let id = domain::validate_id(&request.get_ref().id).map_err(invalid)?;
        let document = self.store.get(&caller, id).await?;
        Ok(Response::new(to_proto(document)))
    }

    async fn list_documents(
        &self,
        request: Request<pb::ListDocumentsRequest>,
    ) -> Result<Response<pb::ListDocumentsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let request = request.into_inner();
        let params = ListParams {
            page_size: request.page_size,
            page_token: request.page_token,
            classification: request.classification,
            label: request.label,
        };
        let query = ListQuery::validate(params, &caller.tenant, self.store.page_tokens())
            .map_err(invalid)?;
        let page = self.store.list(&caller, query).await?;
        Ok(Response::new(pb::ListDocumentsResponse {
            documents: page.documents.into_iter().map(to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn update_document(
        &self,
        request: Request<pb::UpdateDocumentRequest>,
    ) -> Result<Response<pb::Document>, Status> {
        let caller = self.caller(&request).await?;
        let request = request.into_inner();
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let params = request.document.map(|mut document| UpdateParams {
            id: std::mem::take(&mut document.id),
            etag: std::mem::take(&mut document.etag),
            fields: fields(document),
            paths,
        });
        let patch = DocumentPatch::validate(params).map_err(invalid)?;
        let document = self.store.update(&caller, patch).await?;
        Ok(Response::new(to_proto(document)))
    }

    async fn delete_document(
        &self,
        request: Request<pb::DeleteDocumentRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = self.caller(&request).await?;
        let request = request.into_inner();
        let (id, if_match) = domain::validate_delete(&request.id, request.etag).map_err(invalid)?;
        self.store.delete(&caller, id, if_match).await?;
        Ok(Response::new(()))
    }
}
