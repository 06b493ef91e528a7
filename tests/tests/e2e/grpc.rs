//! The same flows over mTLS gRPC, straight to the services.

use cloudsec_proto::auth::v1::auth_service_client::AuthServiceClient;
use cloudsec_proto::auth::v1::{LoginRequest, SignUpRequest};
use cloudsec_proto::documents::v1::document_service_client::DocumentServiceClient;
use cloudsec_proto::documents::v1::{
    Classification, CreateDocumentRequest, DeleteDocumentRequest, Document, GetDocumentRequest,
    ListDocumentsRequest, UpdateDocumentRequest,
};
use cloudsec_tests::Sandbox;
use tonic::Code;

fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn grpc_user(sb: &Sandbox) -> (String, String) {
    let mut auth = AuthServiceClient::new(sb.channel("auth"));
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let email = format!("grpc-{}@example.com", &suffix[..10]);
    let signed_up = auth
        .sign_up(SignUpRequest {
            email: email.clone(),
            password: "correct horse battery staple".into(),
            tenant: format!("g-{}", &suffix[..10]),
        })
        .await
        .expect("sign up")
        .into_inner();
    // The code reaches the sandbox over the bus, as a mailer gets it.
    let code = sb
        .code(
            &email,
            cloudsec_proto::events::v1::ConfirmationPurpose::SignUp,
        )
        .await;
    auth.confirm_sign_up(cloudsec_proto::auth::v1::ConfirmSignUpRequest {
        email: email.clone(),
        code,
    })
    .await
    .expect("confirm sign-up");
    let login = auth
        .login(LoginRequest {
            email,
            password: "correct horse battery staple".into(),
            client_id: String::new(),
        })
        .await
        .expect("login")
        .into_inner();
    assert_eq!(login.token_type, "Bearer");
    assert!(login.expires_in > 0);
    (signed_up.user_id, login.access_token)
}

pub(crate) async fn document_lifecycle(sb: &Sandbox) {
    let (user_id, token) = grpc_user(sb).await;
    let mut docs = DocumentServiceClient::new(sb.channel("documents"));
    let created = docs
        .create_document(authed(
            CreateDocumentRequest {
                document: Some(Document {
                    title: "grpc doc".into(),
                    classification: Classification::Internal as i32,
                    content: "hello".into(),
                    ..Default::default()
                }),
            },
            &token,
        ))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.owner, user_id);
    assert_eq!(created.size_bytes, 5);

    let got = docs
        .get_document(authed(
            GetDocumentRequest {
                id: created.id.clone(),
            },
            &token,
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, created);

    let updated = docs
        .update_document(authed(
            UpdateDocumentRequest {
                document: Some(Document {
                    id: created.id.clone(),
                    content: "hello again".into(),
                    etag: created.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types_mask(&["content"])),
            },
            &token,
        ))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.content, "hello again");
    assert_eq!(updated.title, "grpc doc");

    // The stale etag now conflicts.
    let stale = docs
        .update_document(authed(
            UpdateDocumentRequest {
                document: Some(Document {
                    id: created.id.clone(),
                    title: "x".into(),
                    etag: created.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types_mask(&["title"])),
            },
            &token,
        ))
        .await
        .expect_err("stale etag");
    assert_eq!(stale.code(), Code::Aborted);

    let listed = docs
        .list_documents(authed(ListDocumentsRequest::default(), &token))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.documents.len(), 1);
    assert!(listed.next_page_token.is_empty());

    docs.delete_document(authed(
        DeleteDocumentRequest {
            id: created.id.clone(),
            etag: updated.etag,
        },
        &token,
    ))
    .await
    .expect("delete");
    let gone = docs
        .get_document(authed(GetDocumentRequest { id: created.id }, &token))
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);
}

fn prost_types_mask(paths: &[&str]) -> prost_types::FieldMask {
    prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    }
}

pub(crate) async fn tenants_are_isolated(sb: &Sandbox) {
    let (_, alice) = grpc_user(sb).await;
    let (_, mallory) = grpc_user(sb).await;
    let mut docs = DocumentServiceClient::new(sb.channel("documents"));
    let created = docs
        .create_document(authed(
            CreateDocumentRequest {
                document: Some(Document {
                    title: "alice's".into(),
                    classification: Classification::Restricted as i32,
                    ..Default::default()
                }),
            },
            &alice,
        ))
        .await
        .expect("create")
        .into_inner();
    let err = docs
        .get_document(authed(
            GetDocumentRequest {
                id: created.id.clone(),
            },
            &mallory,
        ))
        .await
        .expect_err("other tenant");
    assert_eq!(err.code(), Code::NotFound);
    let err = docs
        .delete_document(authed(
            DeleteDocumentRequest {
                id: created.id.clone(),
                etag: String::new(),
            },
            &mallory,
        ))
        .await
        .expect_err("other tenant");
    assert_eq!(err.code(), Code::NotFound);
    let listed = docs
        .list_documents(authed(ListDocumentsRequest::default(), &mallory))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.documents.is_empty());
    docs.get_document(authed(GetDocumentRequest { id: created.id }, &alice))
        .await
        .expect("still there for its tenant");
}
