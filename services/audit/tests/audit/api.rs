//! The gRPC API of a running service: who may call it, what it shows,
//! pages, filters and verification.

use cloudsec_proto::audit::v1 as pb;
use prost_types::value::Kind;
use tonic::{Code, Request};

use crate::support::{
    CREATED, Harness, Service, UPDATED, admin, created, deleted, member, signed_up, updated,
    violations, with_token,
};

fn list() -> pb::ListAuditRecordsRequest {
    pb::ListAuditRecordsRequest::default()
}

async fn list_as(
    service: &Service,
    request: Request<pb::ListAuditRecordsRequest>,
) -> Result<pb::ListAuditRecordsResponse, tonic::Status> {
    service
        .client
        .clone()
        .list_audit_records(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn verify_as(
    service: &Service,
    request: Request<pb::VerifyAuditChainRequest>,
) -> Result<pb::VerifyAuditChainResponse, tonic::Status> {
    service
        .client
        .clone()
        .verify_audit_chain(request)
        .await
        .map(tonic::Response::into_inner)
}

fn string_field(record: &pb::AuditRecord, key: &str) -> Option<String> {
    match &record.summary.as_ref()?.fields.get(key)?.kind {
        Some(Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

pub(crate) async fn admins_list_their_own_tenants_records(h: Harness) {
    let service = h.start().await;
    let acme = [created("acme", "d1"), updated("acme", "d1")];
    let globex = [signed_up("globex", "u1")];
    service.publish_until(&acme, 2).await;
    service.publish_until(&globex, 3).await;

    let page = list_as(&service, admin("acme", list())).await.unwrap();
    assert_eq!(page.next_page_token, "");
    assert_eq!(page.records.len(), 2);
    let seqs: Vec<i64> = page.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2], "oldest first");
    assert_eq!(page.records[1].prev_hash, page.records[0].hash);
    let first = page
        .records
        .iter()
        .find(|r| r.event_id == acme[0].id)
        .expect("the created event is listed");
    assert_eq!(first.tenant, "acme");
    assert_eq!(first.event_type, CREATED);
    assert_eq!(first.source, "/cloudsec/documents");
    assert_eq!(first.subject, "d1");
    assert_eq!(first.actor, "alice");
    assert_eq!(first.hash.len(), 64);
    let occur = first.occur_time.as_ref().unwrap();
    assert_eq!(occur.seconds, acme[0].time.timestamp());
    assert_eq!(occur.nanos as u32, acme[0].time.timestamp_subsec_nanos());
    assert!(first.record_time.is_some());
    assert_eq!(string_field(first, "title").as_deref(), Some("title of d1"));
    assert_eq!(string_field(first, "@type").as_deref(), Some(CREATED));

    // Another tenant's admin sees that tenant's chain alone.
    let theirs = list_as(&service, admin("globex", list())).await.unwrap();
    assert_eq!(theirs.records.len(), 1);
    assert_eq!(theirs.records[0].event_id, globex[0].id);
    assert_eq!(theirs.records[0].seq, 1);
    assert!(theirs.records.iter().all(|r| r.tenant == "globex"));
    let verdict = verify_as(&service, admin("globex", pb::VerifyAuditChainRequest {}))
        .await
        .unwrap();
    assert_eq!(verdict.records_checked, 1);

    // A tenant with no events has an empty, valid log.
    let none = list_as(&service, admin("initech", list())).await.unwrap();
    assert!(none.records.is_empty());
    service.stop().await;
}

pub(crate) async fn non_admins_and_anonymous_callers_are_refused(h: Harness) {
    let service = h.start().await;
    service.publish_until(&[created("acme", "d1")], 1).await;

    let status = list_as(&service, member("acme", list())).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("tenant:admin"), "{status:?}");
    let status = verify_as(&service, member("acme", pb::VerifyAuditChainRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // A scope that merely contains the admin one is not it.
    let sneaky = crate::support::token("acme", "eve", "documents tenant:administrator");
    let status = list_as(&service, with_token(&sneaky, list()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let status = list_as(&service, Request::new(list())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = verify_as(&service, Request::new(pb::VerifyAuditChainRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = list_as(&service, with_token("not.a.token", list()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    service.stop().await;
}

pub(crate) async fn pages_and_filters(h: Harness) {
    let service = h.start().await;
    let events = [
        created("acme", "d1"),
        updated("acme", "d1"),
        created("acme", "d2"),
        updated("acme", "d1"),
        updated("acme", "d2"),
        deleted("acme", "d1"),
        created("acme", "d3"),
    ];
    service.publish_until(&events, 7).await;

    let mut seqs = Vec::new();
    let mut sizes = Vec::new();
    let mut token = String::new();
    loop {
        let page = list_as(
            &service,
            admin(
                "acme",
                pb::ListAuditRecordsRequest {
                    page_size: 3,
                    page_token: token.clone(),
                    ..list()
                },
            ),
        )
        .await
        .unwrap();
        sizes.push(page.records.len());
        seqs.extend(page.records.iter().map(|r| r.seq));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());

    // Filters, each on its own and together, paged.
    let filtered = |page_size, page_token: &str, event_type: &str, subject: &str| {
        admin(
            "acme",
            pb::ListAuditRecordsRequest {
                page_size,
                page_token: page_token.into(),
                event_type: event_type.into(),
                subject: subject.into(),
            },
        )
    };
    let page = list_as(&service, filtered(0, "", UPDATED, ""))
        .await
        .unwrap();
    assert_eq!(page.records.len(), 3);
    assert!(page.records.iter().all(|r| r.event_type == UPDATED));
    let page = list_as(&service, filtered(0, "", "", "d1")).await.unwrap();
    assert_eq!(page.records.len(), 4);
    assert!(page.records.iter().all(|r| r.subject == "d1"));
    let first = list_as(&service, filtered(1, "", UPDATED, "d1"))
        .await
        .unwrap();
    assert_eq!(first.records.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let second = list_as(&service, filtered(1, &first.next_page_token, UPDATED, "d1"))
        .await
        .unwrap();
    assert_eq!(second.records.len(), 1);
    assert!(second.records[0].seq > first.records[0].seq);
    assert_eq!(second.records[0].subject, "d1");
    assert_eq!(second.next_page_token, "", "two d1 updates in all");

    // A token works only with the filters and tenant it was made for.
    let status = list_as(&service, filtered(1, &first.next_page_token, UPDATED, "d2"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status), ["page_token"]);
    let status = list_as(
        &service,
        admin(
            "globex",
            pb::ListAuditRecordsRequest {
                page_size: 1,
                page_token: first.next_page_token.clone(),
                event_type: UPDATED.into(),
                subject: "d1".into(),
            },
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status), ["page_token"]);
    service.stop().await;
}

pub(crate) async fn bad_list_requests_are_invalid_arguments(h: Harness) {
    let service = h.start().await;
    service.publish_until(&[created("acme", "d1")], 1).await;
    let bad = |request: pb::ListAuditRecordsRequest| admin("acme", request);
    for (request, fields) in [
        (
            pb::ListAuditRecordsRequest {
                page_size: 501,
                ..list()
            },
            vec!["page_size"],
        ),
        (
            pb::ListAuditRecordsRequest {
                page_size: -1,
                ..list()
            },
            vec!["page_size"],
        ),
        (
            pb::ListAuditRecordsRequest {
                page_token: "forged-token".into(),
                ..list()
            },
            vec!["page_token"],
        ),
        (
            pb::ListAuditRecordsRequest {
                // Well-formed base64 of the right length, made up.
                page_token: "A".repeat(98),
                ..list()
            },
            vec!["page_token"],
        ),
        (
            pb::ListAuditRecordsRequest {
                subject: "s".repeat(257),
                event_type: "t".repeat(257),
                ..list()
            },
            vec!["event_type", "subject"],
        ),
    ] {
        let status = list_as(&service, bad(request.clone())).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        assert_eq!(violations(&status), fields, "{request:?}");
    }
    let largest = list_as(
        &service,
        bad(pb::ListAuditRecordsRequest {
            page_size: 500,
            ..list()
        }),
    )
    .await
    .unwrap();
    assert_eq!(largest.records.len(), 1);
    service.stop().await;
}

pub(crate) async fn verification_over_grpc_reports_tampering(h: Harness) {
    let service = h.start().await;
    let events = [
        created("acme", "d1"),
        updated("acme", "d1"),
        deleted("acme", "d1"),
        signed_up("globex", "u1"),
    ];
    service.publish_until(&events, 4).await;

    let verdict = verify_as(&service, admin("acme", pb::VerifyAuditChainRequest {}))
        .await
        .unwrap();
    assert!(verdict.ok, "{verdict:?}");
    assert_eq!(verdict.records_checked, 3);
    assert_eq!(verdict.first_invalid_seq, 0);
    assert_eq!(verdict.head_seq, 3);
    let listed = list_as(&service, admin("acme", list())).await.unwrap();
    assert_eq!(verdict.head_hash, listed.records[2].hash);

    assert_eq!(
        h.sql("UPDATE audit_record SET subject = 'other' WHERE tenant = 'acme' AND seq = 2")
            .await,
        1
    );
    let verdict = verify_as(&service, admin("acme", pb::VerifyAuditChainRequest {}))
        .await
        .unwrap();
    assert!(!verdict.ok);
    assert_eq!(verdict.first_invalid_seq, 2);
    assert_eq!(verdict.records_checked, 2);
    assert!(verdict.reason.contains("hash"), "{verdict:?}");
    assert_eq!(service.log.metrics().verify_failures(), 1);

    // Tampering with one tenant's chain says nothing about another's.
    let theirs = verify_as(&service, admin("globex", pb::VerifyAuditChainRequest {}))
        .await
        .unwrap();
    assert!(theirs.ok, "{theirs:?}");
    service.stop().await;
}
