//! The scenarios, each a function of a fresh [`Harness`].

use std::collections::HashSet;

use chrono::{DateTime, TimeZone, Utc};
use cloudsec_documents::entity::{document, document_label};
use cloudsec_proto::documents::v1 as pb;
use cloudsec_proto::documents::v1::document_service_client::DocumentServiceClient;
use cloudsec_proto::documents::v1::document_service_server::DocumentService;
use pb::Classification as C;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tonic::{Code, Request};
use uuid::Uuid;

use crate::support::{Harness, alice, as_user, doc, mallory, violations};

const MIB: usize = 1_048_576;

async fn create(h: &Harness, document: pb::Document) -> pb::Document {
    h.api
        .create_document(alice(pb::CreateDocumentRequest {
            document: Some(document),
        }))
        .await
        .expect("create")
        .into_inner()
}

async fn get_as(
    h: &Harness,
    request: fn(pb::GetDocumentRequest) -> Request<pb::GetDocumentRequest>,
    id: &str,
) -> Result<pb::Document, tonic::Status> {
    h.api
        .get_document(request(pb::GetDocumentRequest { id: id.into() }))
        .await
        .map(tonic::Response::into_inner)
}

async fn get(h: &Harness, id: &str) -> pb::Document {
    get_as(h, alice, id).await.expect("get")
}

async fn list(
    h: &Harness,
    request: pb::ListDocumentsRequest,
) -> Result<pb::ListDocumentsResponse, tonic::Status> {
    h.api
        .list_documents(alice(request))
        .await
        .map(tonic::Response::into_inner)
}

async fn update(
    h: &Harness,
    document: pb::Document,
    paths: &[&str],
) -> Result<pb::Document, tonic::Status> {
    h.api
        .update_document(alice(pb::UpdateDocumentRequest {
            document: Some(document),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn count(h: &Harness) -> u64 {
    document::Entity::find().count(&h.db).await.expect("count")
}

async fn label_rows(h: &Harness, id: &str) -> u64 {
    document_label::Entity::find()
        .filter(document_label::Column::DocumentId.eq(Uuid::parse_str(id).unwrap()))
        .count(&h.db)
        .await
        .expect("count labels")
}

fn assert_invalid(
    result: Result<impl std::fmt::Debug, tonic::Status>,
    fields: &[&str],
    what: &str,
) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    assert_eq!(violations(&status), fields, "{what}: {}", status.message());
}

fn time(t: &Option<prost_types::Timestamp>) -> (i64, i32) {
    let t = t.as_ref().expect("timestamp");
    (t.seconds, t.nanos)
}

pub(crate) async fn crud_round_trip(h: Harness) {
    let created = create(
        &h,
        doc("Plan", C::Internal, &[("env", "prod"), ("team", "blue")]),
    )
    .await;
    assert!(Uuid::parse_str(&created.id).is_ok());
    assert_eq!(created.tenant, "acme");
    assert_eq!(created.owner, "alice");
    assert_eq!(created.title, "Plan");
    assert_eq!(created.classification, C::Internal as i32);
    assert_eq!(created.labels.len(), 2);
    assert_eq!(created.content, "content of Plan");
    assert_eq!(created.content_type, "text/plain");
    assert_eq!(created.size_bytes, "content of Plan".len() as i64);
    assert!(!created.etag.is_empty());
    assert_eq!(created.create_time, created.update_time);
    assert_eq!(time(&created.create_time).1 % 1000, 0, "whole microseconds");

    let fetched = get(&h, &created.id).await;
    assert_eq!(fetched, created, "get returns what create returned");

    let page = list(&h, pb::ListDocumentsRequest::default()).await.unwrap();
    assert_eq!(page.documents.len(), 1);
    assert_eq!(page.next_page_token, "");
    let listed = &page.documents[0];
    assert_eq!(listed.id, created.id);
    assert_eq!(listed.labels, created.labels);
    assert_eq!(listed.size_bytes, created.size_bytes);
    assert_eq!(listed.content, "", "lists leave content out");

    let mut change = created.clone();
    change.title = "  Plan B  ".into();
    change.content = "new content, longer".into();
    change.labels.clear();
    change.labels.insert("env".into(), "dev".into());
    let updated = update(&h, change, &[]).await.expect("update");
    assert_eq!(updated.title, "Plan B");
    assert_eq!(updated.content, "new content, longer");
    assert_eq!(updated.size_bytes, 19);
    assert_eq!(updated.labels.len(), 1);
    assert_eq!(updated.labels["env"], "dev");
    assert_ne!(updated.etag, created.etag);
    assert_eq!(updated.create_time, created.create_time);
    assert!(time(&updated.update_time) >= time(&created.update_time));
    assert_eq!(get(&h, &created.id).await, updated);

    h.api
        .delete_document(alice(pb::DeleteDocumentRequest {
            id: created.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("delete");
    let status = get_as(&h, alice, &created.id).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let again = h
        .api
        .delete_document(alice(pb::DeleteDocumentRequest {
            id: created.id.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    assert_eq!(count(&h).await, 0);
}

pub(crate) async fn output_only_fields_are_ignored(h: Harness) {
    let mut sent = doc("Ignored", C::Public, &[]);
    let forged_id = Uuid::now_v7().to_string();
    sent.id = forged_id.clone();
    sent.tenant = "globex".into();
    sent.owner = "mallory".into();
    sent.size_bytes = 999;
    sent.etag = "chosen".into();
    sent.create_time = Some(prost_types::Timestamp {
        seconds: 1,
        nanos: 0,
    });
    let created = create(&h, sent).await;
    assert_ne!(created.id, forged_id);
    assert_eq!(created.tenant, "acme");
    assert_eq!(created.owner, "alice");
    assert_ne!(created.size_bytes, 999);
    assert_ne!(created.etag, "chosen");
    assert_ne!(time(&created.create_time).0, 1);

    // On update too: owner, tenant and times stay.
    let mut change = created.clone();
    change.owner = "mallory".into();
    change.tenant = "globex".into();
    change.size_bytes = 1;
    change.title = "Still ignored".into();
    let updated = update(&h, change, &["title"]).await.unwrap();
    assert_eq!(updated.owner, "alice");
    assert_eq!(updated.tenant, "acme");
    assert_eq!(updated.size_bytes, created.size_bytes);
    assert_eq!(updated.create_time, created.create_time);
}

pub(crate) async fn tenant_isolation(h: Harness) {
    let mine = create(&h, doc("Secret", C::Restricted, &[("env", "prod")])).await;

    let status = get_as(&h, mallory, &mine.id).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let missing = get_as(&h, mallory, &Uuid::now_v7().to_string())
        .await
        .unwrap_err();
    assert_eq!(
        status.message(),
        missing.message(),
        "indistinguishable from missing"
    );

    let mut change = mine.clone();
    change.title = "Pwned".into();
    let status = h
        .api
        .update_document(mallory(pb::UpdateDocumentRequest {
            document: Some(change.clone()),
            update_mask: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // Even with the right etag.
    change.etag = String::new();
    let status = h
        .api
        .update_document(mallory(pb::UpdateDocumentRequest {
            document: Some(change),
            update_mask: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    for etag in [String::new(), mine.etag.clone()] {
        let status = h
            .api
            .delete_document(mallory(pb::DeleteDocumentRequest {
                id: mine.id.clone(),
                etag,
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }

    for request in [
        pb::ListDocumentsRequest::default(),
        pb::ListDocumentsRequest {
            label: "env".into(),
            ..Default::default()
        },
        pb::ListDocumentsRequest {
            classification: C::Restricted as i32,
            ..Default::default()
        },
    ] {
        let page = h
            .api
            .list_documents(mallory(request))
            .await
            .unwrap()
            .into_inner();
        assert!(page.documents.is_empty());
        assert_eq!(page.next_page_token, "");
    }

    assert_eq!(get(&h, &mine.id).await, mine, "untouched");
}

pub(crate) async fn members_of_a_tenant_read_each_others_documents(h: Harness) {
    let mine = create(&h, doc("Shared", C::Internal, &[])).await;
    let read = h
        .api
        .get_document(as_user(
            "acme",
            "bob",
            pb::GetDocumentRequest {
                id: mine.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, mine);
    let page = h
        .api
        .list_documents(as_user("acme", "bob", pb::ListDocumentsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.documents.len(), 1);
}

pub(crate) async fn etag_conflicts_abort_and_change_nothing(h: Harness) {
    let original = create(&h, doc("Versioned", C::Internal, &[("v", "1")])).await;
    let mut first = original.clone();
    first.title = "First writer".into();
    let after_first = update(&h, first, &["title"]).await.expect("first update");

    // A second writer still holding the original etag loses.
    let mut stale = original.clone();
    stale.title = "Second writer".into();
    stale.labels.clear();
    let status = update(&h, stale, &[]).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(
        status.message(),
        "etag mismatch: the document changed since it was read"
    );
    assert_eq!(get(&h, &original.id).await, after_first, "nothing changed");
    assert_eq!(label_rows(&h, &original.id).await, 1);

    let status = h
        .api
        .delete_document(alice(pb::DeleteDocumentRequest {
            id: original.id.clone(),
            etag: original.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(get(&h, &original.id).await, after_first, "still there");

    // The current etag wins, and an empty one means "any version".
    let mut current = after_first.clone();
    current.title = "Third writer".into();
    let after_third = update(&h, current, &["title"]).await.expect("current etag");
    let mut blind = after_third.clone();
    blind.etag = String::new();
    blind.content_type = "text/markdown".into();
    let after_blind = update(&h, blind, &["content_type"]).await.expect("no etag");
    assert_eq!(after_blind.content_type, "text/markdown");

    h.api
        .delete_document(alice(pb::DeleteDocumentRequest {
            id: original.id.clone(),
            etag: after_blind.etag.clone(),
        }))
        .await
        .expect("delete with the current etag");
    assert_eq!(count(&h).await, 0);
}

pub(crate) async fn update_mask_changes_only_named_fields(h: Harness) {
    let original = create(&h, doc("Masked", C::Internal, &[("a", "1"), ("b", "2")])).await;
    let mut change = original.clone();
    change.title = "Renamed".into();
    change.classification = C::Unspecified as i32; // not in the mask: not checked
    change.content = "ignored".into();
    change.labels.clear();
    let updated = update(&h, change, &["title"]).await.unwrap();
    assert_eq!(updated.title, "Renamed");
    assert_eq!(updated.classification, original.classification);
    assert_eq!(updated.content, original.content);
    assert_eq!(updated.labels, original.labels);

    let mut change = updated.clone();
    change.labels.clear();
    change.labels.insert("c".into(), "3".into());
    change.classification = C::Confidential as i32;
    change.content = "x".repeat(10);
    let updated = update(&h, change, &["labels", "classification", "content"])
        .await
        .unwrap();
    assert_eq!(updated.title, "Renamed");
    assert_eq!(updated.classification, C::Confidential as i32);
    assert_eq!(updated.size_bytes, 10);
    assert_eq!(updated.labels.len(), 1);
    assert_eq!(label_rows(&h, &original.id).await, 1);

    // Clearing the content type resets it to the default.
    let mut change = updated.clone();
    change.content_type = String::new();
    let updated = update(&h, change, &["content_type"]).await.unwrap();
    assert_eq!(updated.content_type, "text/plain");
}

/// Follows `next_page_token` from `first` to the end, returning each page.
async fn all_pages(h: &Harness, first: pb::ListDocumentsRequest) -> Vec<Vec<pb::Document>> {
    let mut pages = Vec::new();
    let mut request = first;
    loop {
        let page = list(h, request.clone()).await.expect("list page");
        pages.push(page.documents);
        if page.next_page_token.is_empty() {
            return pages;
        }
        assert!(pages.len() < 50, "runaway pagination");
        request.page_token = page.next_page_token;
    }
}

fn assert_newest_first(documents: &[pb::Document]) {
    let keys: Vec<((i64, i32), Uuid)> = documents
        .iter()
        .map(|d| (time(&d.create_time), Uuid::parse_str(&d.id).unwrap()))
        .collect();
    for pair in keys.windows(2) {
        assert!(pair[0] > pair[1], "not newest first: {pair:?}");
    }
}

pub(crate) async fn pagination_with_filters(h: Harness) {
    let mut created = Vec::new();
    for i in 0..36 {
        let classification = if i % 2 == 0 {
            C::Confidential
        } else {
            C::Public
        };
        let team = if i % 3 == 0 { "blue" } else { "red" };
        created.push(
            create(
                &h,
                doc(
                    &format!("Doc {i}"),
                    classification,
                    &[("team", team), ("env", "prod")],
                ),
            )
            .await,
        );
    }
    let ids = |pred: &dyn Fn(usize) -> bool| -> HashSet<String> {
        created
            .iter()
            .enumerate()
            .filter(|(i, _)| pred(*i))
            .map(|(_, d)| d.id.clone())
            .collect()
    };

    let cases: Vec<(pb::ListDocumentsRequest, Vec<usize>, HashSet<String>)> = vec![
        (
            pb::ListDocumentsRequest {
                page_size: 2,
                classification: C::Confidential as i32,
                label: "team=blue".into(),
                ..Default::default()
            },
            vec![2, 2, 2],
            ids(&|i| i % 6 == 0),
        ),
        (
            pb::ListDocumentsRequest {
                page_size: 15,
                ..Default::default()
            },
            vec![15, 15, 6],
            ids(&|_| true),
        ),
        (
            pb::ListDocumentsRequest {
                page_size: 7,
                classification: C::Public as i32,
                ..Default::default()
            },
            vec![7, 7, 4],
            ids(&|i| i % 2 == 1),
        ),
        (
            pb::ListDocumentsRequest {
                page_size: 5,
                label: "team=red".into(),
                ..Default::default()
            },
            vec![5, 5, 5, 5, 4],
            ids(&|i| i % 3 != 0),
        ),
        (
            pb::ListDocumentsRequest {
                page_size: 0,
                label: "env".into(),
                ..Default::default()
            },
            vec![20, 16],
            ids(&|_| true),
        ),
        (
            pb::ListDocumentsRequest {
                label: "team=green".into(),
                ..Default::default()
            },
            vec![0],
            HashSet::new(),
        ),
        (
            pb::ListDocumentsRequest {
                label: "missing".into(),
                ..Default::default()
            },
            vec![0],
            HashSet::new(),
        ),
    ];
    for (request, sizes, expected) in cases {
        let pages = all_pages(&h, request.clone()).await;
        let got: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(got, sizes, "{request:?}");
        let flat: Vec<pb::Document> = pages.into_iter().flatten().collect();
        let seen: HashSet<String> = flat.iter().map(|d| d.id.clone()).collect();
        assert_eq!(seen.len(), flat.len(), "no duplicates: {request:?}");
        assert_eq!(seen, expected, "{request:?}");
        assert_newest_first(&flat);
    }

    // Newest first means the reverse of creation order here.
    let everything: Vec<String> = all_pages(
        &h,
        pb::ListDocumentsRequest {
            page_size: 100,
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .flatten()
    .map(|d| d.id)
    .collect();
    let mut expected: Vec<String> = created.iter().map(|d| d.id.clone()).collect();
    expected.reverse();
    assert_eq!(everything, expected);
}

pub(crate) async fn page_tokens_are_bound_to_tenant_and_filters(h: Harness) {
    for i in 0..5 {
        create(
            &h,
            doc(&format!("Doc {i}"), C::Confidential, &[("team", "blue")]),
        )
        .await;
    }
    let filtered = pb::ListDocumentsRequest {
        page_size: 2,
        classification: C::Confidential as i32,
        label: "team=blue".into(),
        ..Default::default()
    };
    let first = list(&h, filtered.clone()).await.unwrap();
    let token = first.next_page_token.clone();
    assert!(!token.is_empty());
    assert!(!token.contains("acme"), "opaque");

    // It works for the query it came from.
    let second = list(
        &h,
        pb::ListDocumentsRequest {
            page_token: token.clone(),
            ..filtered.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(second.documents.len(), 2);

    let with = |f: &dyn Fn(&mut pb::ListDocumentsRequest)| {
        let mut r = pb::ListDocumentsRequest {
            page_token: token.clone(),
            ..filtered.clone()
        };
        f(&mut r);
        r
    };
    let misuses = [
        (
            "no filters",
            with(&|r| {
                r.classification = 0;
                r.label.clear();
            }),
        ),
        (
            "other classification",
            with(&|r| r.classification = C::Public as i32),
        ),
        ("other label value", with(&|r| r.label = "team=red".into())),
        ("label key only", with(&|r| r.label = "team".into())),
        (
            "forged",
            with(&|r| r.page_token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        ),
        ("garbage", with(&|r| r.page_token = "not a token!".into())),
        ("truncated", with(&|r| r.page_token.truncate(20))),
        (
            "tampered",
            with(&|r| {
                let mut bytes = r.page_token.clone().into_bytes();
                let i = bytes.len() / 3;
                bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
                r.page_token = String::from_utf8(bytes).unwrap();
            }),
        ),
    ];
    for (what, request) in misuses {
        let status = list(&h, request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}");
        assert_eq!(violations(&status), ["page_token"], "{what}");
        assert!(
            status.message().contains("invalid page_token"),
            "{what}: {}",
            status.message()
        );
    }

    // Another tenant cannot replay the token, even with the same filters.
    let status = h
        .api
        .list_documents(mallory(pb::ListDocumentsRequest {
            page_token: token,
            ..filtered
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status), ["page_token"]);
}

/// Rows written directly with chosen times: equal times (the id breaks the
/// tie) and fractions of different lengths, which SQLite stores as text.
pub(crate) async fn keyset_order_with_equal_and_ragged_timestamps(h: Harness) {
    let base = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let micros = |us: i64| base + chrono::Duration::microseconds(us);
    let times: Vec<DateTime<Utc>> = vec![
        base,
        micros(1),
        micros(100_000),
        micros(100_000),
        micros(100_000),
        micros(100_001),
        micros(120_000),
        micros(500_000),
        micros(999_999),
        micros(1_000_000),
        micros(10_000_000),
        micros(10_000_000),
    ];
    let mut rows = Vec::new();
    for (i, t) in times.iter().enumerate() {
        let id = Uuid::new_v4();
        document::Entity::insert(document::ActiveModel {
            id: Set(id),
            tenant: Set("acme".into()),
            owner: Set("alice".into()),
            title: Set(format!("Row {i}")),
            classification: Set("PUBLIC".into()),
            content: Set(String::new()),
            content_type: Set("text/plain".into()),
            size_bytes: Set(0),
            etag: Set(format!("e{i}")),
            create_time: Set(*t),
            update_time: Set(*t),
            // Rows as written before content moved to objects.
            ..Default::default()
        })
        .exec_without_returning(&h.db)
        .await
        .unwrap();
        rows.push((*t, id));
    }
    rows.sort();
    rows.reverse();
    let expected: Vec<String> = rows.iter().map(|(_, id)| id.to_string()).collect();

    for page_size in [1, 2, 5] {
        let pages = all_pages(
            &h,
            pb::ListDocumentsRequest {
                page_size,
                ..Default::default()
            },
        )
        .await;
        let got: Vec<String> = pages.into_iter().flatten().map(|d| d.id).collect();
        assert_eq!(got, expected, "page size {page_size} on {:?}", h.backend);
    }
    let one = get(&h, &expected[0]).await;
    assert_eq!(time(&one.create_time), (base.timestamp() + 10, 0));
}

fn valid() -> pb::Document {
    doc("Valid", C::Internal, &[("env", "prod")])
}

pub(crate) async fn create_validation_writes_nothing(h: Harness) {
    let long_key = "k".repeat(64);
    let cases: Vec<(&str, Option<pb::Document>, Vec<String>)> = vec![
        ("no document", None, vec!["document".into()]),
        (
            "empty title",
            Some(pb::Document {
                title: String::new(),
                ..valid()
            }),
            vec!["document.title".into()],
        ),
        (
            "blank title",
            Some(pb::Document {
                title: " \t ".into(),
                ..valid()
            }),
            vec!["document.title".into()],
        ),
        (
            "long title",
            Some(pb::Document {
                title: "t".repeat(201),
                ..valid()
            }),
            vec!["document.title".into()],
        ),
        (
            "no classification",
            Some(pb::Document {
                classification: 0,
                ..valid()
            }),
            vec!["document.classification".into()],
        ),
        (
            "unknown classification",
            Some(pb::Document {
                classification: 42,
                ..valid()
            }),
            vec!["document.classification".into()],
        ),
        (
            "too many labels",
            Some(pb::Document {
                labels: (0..33).map(|i| (format!("k{i}"), "v".into())).collect(),
                ..valid()
            }),
            vec!["document.labels".into()],
        ),
        (
            "uppercase key",
            Some(pb::Document {
                labels: [("Env".into(), "x".into())].into(),
                ..valid()
            }),
            vec!["document.labels[Env]".into()],
        ),
        (
            "empty key",
            Some(pb::Document {
                labels: [(String::new(), "x".into())].into(),
                ..valid()
            }),
            vec!["document.labels[]".into()],
        ),
        (
            "long key",
            Some(pb::Document {
                labels: [(long_key.clone(), "x".into())].into(),
                ..valid()
            }),
            vec![format!("document.labels[{long_key}]")],
        ),
        (
            "long value",
            Some(pb::Document {
                labels: [("env".into(), "v".repeat(64))].into(),
                ..valid()
            }),
            vec!["document.labels[env]".into()],
        ),
        (
            "big content",
            Some(pb::Document {
                content: "a".repeat(MIB + 1),
                ..valid()
            }),
            vec!["document.content".into()],
        ),
        (
            "bad content type",
            Some(pb::Document {
                content_type: "plain".into(),
                ..valid()
            }),
            vec!["document.content_type".into()],
        ),
        (
            "long content type",
            Some(pb::Document {
                content_type: format!("text/{}", "x".repeat(123)),
                ..valid()
            }),
            vec!["document.content_type".into()],
        ),
        (
            "several at once",
            Some(pb::Document {
                title: String::new(),
                classification: 0,
                content_type: "x".into(),
                ..valid()
            }),
            vec![
                "document.title".into(),
                "document.classification".into(),
                "document.content_type".into(),
            ],
        ),
    ];
    for (what, document, fields) in cases {
        let result = h
            .api
            .create_document(alice(pb::CreateDocumentRequest { document }))
            .await;
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        assert_invalid(result, &fields, what);
    }
    assert_eq!(count(&h).await, 0, "nothing written");
    assert_eq!(
        document_label::Entity::find().count(&h.db).await.unwrap(),
        0
    );

    // The limits themselves are fine.
    let edge = pb::Document {
        title: "t".repeat(200),
        labels: (0..32)
            .map(|i| (format!("k-{i}_x"), "v".repeat(63)))
            .collect(),
        content_type: "application/vnd.cloudsec+json; charset=utf-8".into(),
        ..valid()
    };
    let created = create(&h, edge).await;
    assert_eq!(created.labels.len(), 32);
    assert_eq!(label_rows(&h, &created.id).await, 32);
}

pub(crate) async fn update_validation_changes_nothing(h: Harness) {
    let original = create(&h, valid()).await;
    let with = |f: &dyn Fn(&mut pb::Document)| {
        let mut d = original.clone();
        f(&mut d);
        d
    };
    // (what, document, mask paths, violated fields)
    type Case = (
        &'static str,
        Option<pb::Document>,
        Vec<&'static str>,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "unknown path",
            Some(with(&|d| d.title = "New".into())),
            vec!["owner"],
            vec!["update_mask.paths[0]"],
        ),
        (
            "second path bad",
            Some(with(&|d| d.title = "New".into())),
            vec!["title", "labels.env"],
            vec!["update_mask.paths[1]"],
        ),
        (
            "output-only path",
            Some(original.clone()),
            vec!["etag"],
            vec!["update_mask.paths[0]"],
        ),
        (
            "empty title",
            Some(with(&|d| d.title = String::new())),
            vec!["title"],
            vec!["document.title"],
        ),
        (
            "bad id",
            Some(with(&|d| d.id = "nope".into())),
            vec!["title"],
            vec!["document.id"],
        ),
        (
            "no id",
            Some(with(&|d| d.id = String::new())),
            vec!["title"],
            vec!["document.id"],
        ),
        (
            "big content",
            Some(with(&|d| d.content = "a".repeat(MIB + 1))),
            vec!["content"],
            vec!["document.content"],
        ),
        (
            "all fields, no classification",
            Some(with(&|d| d.classification = 0)),
            vec![],
            vec!["document.classification"],
        ),
        (
            "bad label",
            Some(with(&|d| {
                d.labels.insert("BAD".into(), String::new());
            })),
            vec!["labels"],
            vec!["document.labels[BAD]"],
        ),
        ("no document", None, vec!["title"], vec!["document"]),
    ];
    for (what, document, paths, fields) in cases {
        let result = h
            .api
            .update_document(alice(pb::UpdateDocumentRequest {
                document,
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| p.to_string()).collect(),
                }),
            }))
            .await;
        assert_invalid(result, &fields, what);
    }
    assert_eq!(get(&h, &original.id).await, original, "nothing changed");
}

pub(crate) async fn list_validation(h: Harness) {
    create(&h, valid()).await;
    let cases: Vec<(&str, pb::ListDocumentsRequest, Vec<&str>)> = vec![
        (
            "negative page size",
            pb::ListDocumentsRequest {
                page_size: -1,
                ..Default::default()
            },
            vec!["page_size"],
        ),
        (
            "page size 101",
            pb::ListDocumentsRequest {
                page_size: 101,
                ..Default::default()
            },
            vec!["page_size"],
        ),
        (
            "unknown classification",
            pb::ListDocumentsRequest {
                classification: 99,
                ..Default::default()
            },
            vec!["classification"],
        ),
        (
            "bad label key",
            pb::ListDocumentsRequest {
                label: "Team=x".into(),
                ..Default::default()
            },
            vec!["label"],
        ),
        (
            "empty label key",
            pb::ListDocumentsRequest {
                label: "=x".into(),
                ..Default::default()
            },
            vec!["label"],
        ),
        (
            "several",
            pb::ListDocumentsRequest {
                page_size: 1000,
                label: "a b".into(),
                ..Default::default()
            },
            vec!["page_size", "label"],
        ),
    ];
    for (what, request, fields) in cases {
        assert_invalid(list(&h, request).await, &fields, what);
    }
    let page = list(
        &h,
        pb::ListDocumentsRequest {
            page_size: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(page.documents.len(), 1);
}

pub(crate) async fn bad_ids_are_invalid_arguments(h: Harness) {
    for id in ["", "nope", "123", "00000000-0000-0000-0000-00000000000g"] {
        assert_invalid(get_as(&h, alice, id).await, &["id"], id);
        let result = h
            .api
            .delete_document(alice(pb::DeleteDocumentRequest {
                id: id.into(),
                etag: String::new(),
            }))
            .await;
        assert_invalid(result, &["id"], id);
    }
    // A well-formed id that names nothing is simply not found.
    let status = get_as(&h, alice, &Uuid::now_v7().to_string())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

pub(crate) async fn missing_or_bad_tokens_are_unauthenticated(h: Harness) {
    let existing = create(&h, valid()).await;
    let other_key = cloudsec_runtime::token::Signer::generate().unwrap();
    let now = chrono::Utc::now().timestamp();
    let foreign = other_key
        .sign(&cloudsec_runtime::token::Claims {
            iss: crate::support::ISSUER.into(),
            sub: "alice".into(),
            aud: crate::support::AUDIENCE.into(),
            exp: now + 60,
            iat: now,
            nbf: None,
            jti: "j".into(),
            tenant: "acme".into(),
            scope: String::new(),
        })
        .unwrap();
    let foreign = format!("Bearer {foreign}");
    fn authorized<T>(message: T, authorization: Option<&str>) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    }
    for (what, auth) in [
        ("missing", None),
        ("garbage", Some("Bearer not-a-jwt")),
        ("basic", Some("Basic YWxpY2U6cHc=")),
        ("unknown key", Some(foreign.as_str())),
    ] {
        let create = authorized(
            pb::CreateDocumentRequest {
                document: Some(valid()),
            },
            auth,
        );
        let get = authorized(
            pb::GetDocumentRequest {
                id: existing.id.clone(),
            },
            auth,
        );
        let list = authorized(pb::ListDocumentsRequest::default(), auth);
        let update = authorized(
            pb::UpdateDocumentRequest {
                document: Some(pb::Document {
                    title: "Pwned".into(),
                    ..existing.clone()
                }),
                update_mask: None,
            },
            auth,
        );
        let delete = authorized(
            pb::DeleteDocumentRequest {
                id: existing.id.clone(),
                etag: String::new(),
            },
            auth,
        );

        let codes = [
            h.api
                .create_document(create)
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            h.api
                .get_document(get)
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            h.api
                .list_documents(list)
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            h.api
                .update_document(update)
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            h.api
                .delete_document(delete)
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
        ];
        assert_eq!(codes, [Code::Unauthenticated; 5], "{what}");
    }
    assert_eq!(count(&h).await, 1);
    assert_eq!(get(&h, &existing.id).await, existing);
}

pub(crate) async fn oversized_content_is_rejected(h: Harness) {
    let result = h
        .api
        .create_document(alice(pb::CreateDocumentRequest {
            document: Some(pb::Document {
                content: "a".repeat(MIB + 1),
                ..valid()
            }),
        }))
        .await;
    assert_invalid(result, &["document.content"], "1 MiB + 1");
    // Multi-byte characters count by bytes: 524,289 × 2 bytes.
    let result = h
        .api
        .create_document(alice(pb::CreateDocumentRequest {
            document: Some(pb::Document {
                content: "é".repeat(MIB / 2 + 1),
                ..valid()
            }),
        }))
        .await;
    assert_invalid(result, &["document.content"], "1 MiB + 2 of é");
    assert_eq!(count(&h).await, 0);

    let full = create(
        &h,
        pb::Document {
            content: "a".repeat(MIB),
            ..valid()
        },
    )
    .await;
    assert_eq!(full.size_bytes, MIB as i64);
    assert_eq!(get(&h, &full.id).await.content.len(), MIB);

    let result = update(
        &h,
        pb::Document {
            content: "b".repeat(MIB + 1),
            ..full.clone()
        },
        &["content"],
    )
    .await;
    assert_invalid(result, &["document.content"], "update 1 MiB + 1");
    assert_eq!(get(&h, &full.id).await, full);
}

pub(crate) async fn delete_removes_labels(h: Harness) {
    let keep = create(&h, doc("Keep", C::Public, &[("a", "1")])).await;
    let gone = create(
        &h,
        doc("Gone", C::Public, &[("a", "1"), ("b", "2"), ("c", "3")]),
    )
    .await;
    assert_eq!(label_rows(&h, &gone.id).await, 3);
    h.api
        .delete_document(alice(pb::DeleteDocumentRequest {
            id: gone.id.clone(),
            etag: gone.etag.clone(),
        }))
        .await
        .unwrap();
    assert_eq!(label_rows(&h, &gone.id).await, 0);
    assert_eq!(label_rows(&h, &keep.id).await, 1);
    let page = list(
        &h,
        pb::ListDocumentsRequest {
            label: "a=1".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(page.documents.len(), 1);
    assert_eq!(page.documents[0].id, keep.id);
}

/// The same adapter behind a real tonic server and client, over an
/// in-memory pipe: encoding, size limits and error details on the wire.
pub(crate) async fn over_the_wire(h: Harness) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = h.api.clone().into_server();
    let serving = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tokio_stream::once(Ok::<_, std::io::Error>(server_io)))
            .await
    });
    let mut client_io = Some(client_io);
    let channel = tonic::transport::Endpoint::try_from("http://in-memory.test")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let io = client_io.take();
            async move {
                io.map(hyper_util::rt::TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("the in-memory pipe is already taken"))
            }
        }))
        .await
        .unwrap();
    let mut client = DocumentServiceClient::new(channel).max_decoding_message_size(4 * MIB);

    let created = client
        .create_document(alice(pb::CreateDocumentRequest {
            document: Some(pb::Document {
                content: "a".repeat(MIB),
                ..valid()
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let fetched = client
        .get_document(alice(pb::GetDocumentRequest {
            id: created.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, created);

    let status = client
        .create_document(alice(pb::CreateDocumentRequest {
            document: Some(pb::Document {
                content: "a".repeat(MIB + 1),
                ..valid()
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status), ["document.content"]);

    // Far past any valid request: refused before it is decoded.
    let status = client
        .create_document(alice(pb::CreateDocumentRequest {
            document: Some(pb::Document {
                content: "a".repeat(3 * MIB),
                ..valid()
            }),
        }))
        .await
        .unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    assert_eq!(count(&h).await, 1);

    let status = client
        .list_documents(Request::new(pb::ListDocumentsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let page = client
        .list_documents(alice(pb::ListDocumentsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.documents.len(), 1);
    serving.abort();
}

/// The outbox's events, oldest first.
async fn outbox(h: &Harness) -> Vec<cloudsec_bus::Envelope> {
    use sea_orm::ConnectionTrait;
    let rows =
        h.db.query_all_raw(sea_orm::Statement::from_string(
            h.db.get_database_backend(),
            "SELECT envelope FROM bus_outbox ORDER BY seq",
        ))
        .await
        .expect("read the outbox");
    rows.iter()
        .map(|row| {
            let json: String = row.try_get("", "envelope").expect("envelope column");
            cloudsec_bus::Envelope::from_json(&json).expect("a valid envelope")
        })
        .collect()
}

pub(crate) async fn every_change_writes_its_event_atomically(h: Harness) {
    use cloudsec_proto::events::v1 as ev;
    let created = create(&h, doc("plan", C::Internal, &[("team", "red")])).await;
    let mut changed = created.clone();
    changed.title = "plan v2".into();
    changed.labels.insert("phase".into(), "2".into());
    let updated = update(&h, changed, &["title", "labels"])
        .await
        .expect("update");

    // Failed writes leave no event: a stale etag, another tenant, bad input.
    let mut stale = created.clone();
    stale.title = "lost".into();
    assert_eq!(
        update(&h, stale, &["title"]).await.unwrap_err().code(),
        Code::Aborted
    );
    let denied = h
        .api
        .delete_document(mallory(pb::DeleteDocumentRequest {
            id: created.id.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::NotFound);
    assert!(
        h.api
            .create_document(alice(pb::CreateDocumentRequest {
                document: Some(doc("", C::Public, &[])),
            }))
            .await
            .is_err()
    );
    assert_eq!(outbox(&h).await.len(), 2, "only the two changes so far");

    h.api
        .delete_document(alice(pb::DeleteDocumentRequest {
            id: created.id.clone(),
            etag: updated.etag.clone(),
        }))
        .await
        .expect("delete");

    let events = outbox(&h).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "cloudsec.events.v1.DocumentCreated",
            "cloudsec.events.v1.DocumentUpdated",
            "cloudsec.events.v1.DocumentDeleted",
        ]
    );
    for event in &events {
        assert_eq!(event.source, "/cloudsec/documents");
        assert_eq!(event.tenant, "acme");
        assert_eq!(event.subject.as_deref(), Some(created.id.as_str()));
    }
    let c: ev::DocumentCreated = events[0].decode().expect("DocumentCreated");
    assert_eq!(
        (c.actor.as_str(), c.title.as_str(), c.etag.as_str()),
        ("alice", "plan", created.etag.as_str())
    );
    assert_eq!(c.classification, C::Internal as i32);
    assert_eq!(c.labels.get("team").map(String::as_str), Some("red"));
    assert_eq!(c.size_bytes, created.size_bytes);
    let u: ev::DocumentUpdated = events[1].decode().expect("DocumentUpdated");
    assert_eq!(u.changed_fields, ["title", "labels"]);
    assert_eq!(
        (u.title.as_str(), u.etag.as_str()),
        ("plan v2", updated.etag.as_str())
    );
    assert_eq!(u.labels.len(), 2);
    let d: ev::DocumentDeleted = events[2].decode().expect("DocumentDeleted");
    assert_eq!(
        (d.document_id.as_str(), d.actor.as_str()),
        (created.id.as_str(), "alice")
    );
    // Events carry metadata only, never the content.
    for event in &events {
        let payload = String::from_utf8_lossy(&event.data);
        assert!(!payload.contains("content of plan"), "{payload}");
    }
}

/// RESTRICTED documents are for members of the `restricted` group and the
/// tenant's admins; to other members of the tenant they do not exist, and
/// those members cannot make one.
pub(crate) async fn restricted_documents_need_the_group(h: Harness) {
    use crate::support::{carol, dan};
    let secret = create(&h, doc("Merger", C::Restricted, &[])).await;
    let open = create(&h, doc("Menu", C::Internal, &[])).await;

    // Carol (acme, group "finance"): the restricted one is missing to her.
    let status = get_as(&h, carol, &secret.id).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(get_as(&h, carol, &open.id).await.unwrap().title, "Menu");
    let listed = h
        .api
        .list_documents(carol(pb::ListDocumentsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed.documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, [open.id.as_str()]);
    let restricted_only = h
        .api
        .list_documents(carol(pb::ListDocumentsRequest {
            classification: C::Restricted as i32,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(restricted_only.documents.is_empty());
    let mut change = secret.clone();
    change.title = "Leaked".into();
    let status = h
        .api
        .update_document(carol(pb::UpdateDocumentRequest {
            document: Some(change),
            update_mask: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = h
        .api
        .delete_document(carol(pb::DeleteDocumentRequest {
            id: secret.id.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // Nor may she make one, directly or by reclassifying.
    let status = h
        .api
        .create_document(carol(pb::CreateDocumentRequest {
            document: Some(doc("Mine", C::Restricted, &[])),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("restricted group"), "{status:?}");
    let mut reclass = open.clone();
    reclass.classification = C::Restricted as i32;
    let status = h
        .api
        .update_document(carol(pb::UpdateDocumentRequest {
            document: Some(reclass),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["classification".into()],
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(get(&h, &secret.id).await.title, "Merger", "unchanged");

    // Dan, the tenant admin, manages every document of the tenant.
    assert_eq!(get_as(&h, dan, &secret.id).await.unwrap().title, "Merger");
    let mut change = get(&h, &secret.id).await;
    change.title = "Merger (final)".into();
    h.api
        .update_document(dan(pb::UpdateDocumentRequest {
            document: Some(change),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into()],
            }),
        }))
        .await
        .expect("an admin updates a restricted document");
    h.api
        .delete_document(dan(pb::DeleteDocumentRequest {
            id: secret.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("an admin deletes it");
    // Nobody crosses tenants.
    assert_eq!(
        get_as(&h, crate::support::mallory, &open.id)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}
