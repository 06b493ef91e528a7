//! A new RPC with an annotation appears on REST without touching gateway/:
//! the test contract `tests/proto/cloudsec/echo/v1/echo.proto` is compiled
//! here at run time, served by a generic echo server over mTLS, and reached
//! through the gateway with plain HTTP/JSON.

// clippy.toml allows unwrap in `#[test]` functions only; the harness is
// test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{CLIENT_TRACEPARENT, Harness, Options, chunked_post, parts, request_of};
use cloudsec_gateway::{GatewayConfig, RoutePolicy};
use serde_json::json;

#[tokio::test]
async fn annotated_rpcs_appear_on_rest() {
    let h = Harness::start(false).await;

    for route in [
        "GET /v1/items/{id} -> cloudsec.echo.v1.EchoService/GetItem",
        "GET /v1/shelves/{shelf}/items/{id} -> cloudsec.echo.v1.EchoService/GetItem",
        "POST /v1/items -> cloudsec.echo.v1.EchoService/CreateItem",
        "PATCH /v1/items/{item.id} -> cloudsec.echo.v1.EchoService/UpdateItem",
        "DELETE /v1/items/{id} -> cloudsec.echo.v1.EchoService/DeleteItem",
        "POST /v1/items/{id}:archive -> cloudsec.echo.v1.EchoService/ArchiveItem",
        "GET /v1/files/{path=**} -> cloudsec.echo.v1.EchoService/GetFile",
    ] {
        assert!(
            h.routes.contains(&route.to_owned()),
            "{route} not in {:#?}",
            h.routes
        );
    }
    assert!(!h.routes.iter().any(|r| r.contains("Hidden")));
    // The platform's services have no upstream here, so no routes.
    assert!(!h.routes.iter().any(|r| r.contains("DocumentService")));

    // GET: path variable, query parameters of every kind, the
    // authorization header and the client's request id.
    let response = h
        .http
        .get(h.url(
            "/v1/items/it%2F1?page_size=5&tags=a&tags=b%20c&kind=KIND_SMALL&filter.owner=ann&filter.minSize=3&verbose=true&max_bytes=9007199254740993",
        ))
        .header("authorization", "Bearer t0ken")
        .header("x-request-id", "client-id.42")
        .header("traceparent", CLIENT_TRACEPARENT)
        .send()
        .await
        .unwrap();
    let (status, request_id, reply) = parts(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(request_id.as_deref(), Some("client-id.42"));
    assert_eq!(reply["method"], "GetItem");
    assert_eq!(reply["big"], "9007199254740993");
    assert_eq!(reply["kind"], "KIND_LARGE");
    assert_eq!(reply["item"]["sizeBytes"], "9007199254740993");
    assert_eq!(reply["metadata"]["authorization"], "Bearer t0ken");
    assert_eq!(reply["metadata"]["x-request-id"], "client-id.42");
    assert!(reply["metadata"]["grpc-timeout"].is_string(), "{reply}");
    // The gateway's span continues the client's trace and is the parent
    // the service sees.
    let traceparent = reply["metadata"]["traceparent"].as_str().unwrap();
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!(fields[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(fields[2], "00f067aa0ba902b7");
    assert_eq!(
        request_of(&reply),
        json!({
            "id": "it/1", "pageSize": 5, "tags": ["a", "b c"], "kind": "KIND_SMALL",
            "filter": {"owner": "ann", "minSize": 3}, "verbose": true,
            "maxBytes": "9007199254740993",
        })
    );

    // An additional binding, and a generated request id when the client's
    // is not sane.
    let response = h
        .http
        .get(h.url("/v1/shelves/s1/items/i2"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let (status, request_id, reply) = parts(response).await;
    assert_eq!(status, 200);
    let request_id = request_id.unwrap();
    assert_ne!(request_id, "bad id with spaces");
    assert_eq!(reply["metadata"]["x-request-id"], request_id.as_str());
    assert_eq!(request_of(&reply), json!({"id": "i2", "shelf": "s1"}));

    // POST with body "*"; int64 accepted as a string, enum by name, bytes.
    let response = h
        .http
        .post(h.url("/v1/items"))
        .json(&json!({
            "item": {"title": "t", "sizeBytes": "12", "kind": "KIND_SMALL", "labels": ["x"], "content": "aGk="},
            "note": "n",
        }))
        .send()
        .await
        .unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["method"], "CreateItem");
    assert_eq!(
        reply["item"],
        json!({"title": "t", "sizeBytes": "12", "kind": "KIND_SMALL", "labels": ["x"], "content": "aGk="})
    );

    // An empty body on a body RPC is `{}`.
    let response = h.http.post(h.url("/v1/items")).send().await.unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(request_of(&reply), json!({}));

    // PATCH: nested path variable, body field, a FieldMask from the query.
    let response = h
        .http
        .patch(h.url("/v1/items/p-7?update_mask=title,sizeBytes"))
        .json(&json!({"title": "new", "sizeBytes": 3}))
        .send()
        .await
        .unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["method"], "UpdateItem");
    assert_eq!(
        request_of(&reply),
        json!({"item": {"id": "p-7", "title": "new", "sizeBytes": "3"}, "updateMask": "title,sizeBytes"})
    );

    // DELETE.
    let response = h.http.delete(h.url("/v1/items/d1")).send().await.unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(reply["method"], "DeleteItem");
    assert_eq!(request_of(&reply), json!({"id": "d1"}));

    // A custom `:verb` method.
    let response = h
        .http
        .post(h.url("/v1/items/a1:archive"))
        .json(&json!({"reason": "old"}))
        .send()
        .await
        .unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["method"], "ArchiveItem");
    assert_eq!(request_of(&reply), json!({"id": "a1", "reason": "old"}));

    // `**` takes the rest of the path.
    let response = h
        .http
        .get(h.url("/v1/files/a/b/c.txt"))
        .send()
        .await
        .unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(request_of(&reply), json!({"path": "a/b/c.txt"}));

    // response_body: only the item comes back.
    let response = h.http.get(h.url("/v1/items/r1/item")).send().await.unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(reply, json!({"id": "r1", "sizeBytes": "9007199254740993"}));

    // The admin port counts requests by route template, never raw path.
    let metrics = h
        .http
        .get(format!("http://{}/metrics", h.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("gateway_request_total"), "{metrics}");
    assert!(
        metrics.contains(r#"route="/v1/items/{id}""#) && metrics.contains(r#"method="GET""#),
        "{metrics}"
    );
    assert!(metrics.contains("gateway_response_total"), "{metrics}");
    assert!(
        metrics.contains("gateway_response_latency_seconds"),
        "{metrics}"
    );
    assert!(!metrics.contains("it%2F1"), "{metrics}");

    h.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_json_error() {
    let h = Harness::start(false).await;

    async fn expect(response: reqwest::Response, status: u16, code: i64, needle: &str) {
        let (actual, request_id, body) = parts(response).await;
        assert_eq!(actual, status, "{body}");
        assert!(request_id.is_some());
        assert_eq!(body["code"], code, "{body}");
        assert!(body["details"].is_array(), "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "`{needle}` not in `{message}`");
    }
    let post = |path: &str, body: &'static str| {
        h.http
            .post(h.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // Malformed JSON names the line and column.
    expect(
        post("/v1/items", "{\"note\": ").await.unwrap(),
        400,
        3,
        "line 1",
    )
    .await;
    // White space alone is not JSON (only an empty body means `{}`).
    expect(post("/v1/items", " ").await.unwrap(), 400, 3, "EOF").await;
    // Unknown field.
    expect(
        post("/v1/items", r#"{"bogus": 1}"#).await.unwrap(),
        400,
        3,
        "bogus",
    )
    .await;
    // Wrong type.
    expect(
        post("/v1/items", r#"{"item": {"sizeBytes": true}}"#)
            .await
            .unwrap(),
        400,
        3,
        "invalid",
    )
    .await;
    // Bad enum name in a query parameter.
    let response = h
        .http
        .get(h.url("/v1/items/x?kind=KIND_HUGE"))
        .send()
        .await
        .unwrap();
    expect(response, 400, 3, "kind").await;
    // Unknown query parameter.
    let response = h
        .http
        .get(h.url("/v1/items/x?colour=red"))
        .send()
        .await
        .unwrap();
    expect(response, 400, 3, "colour").await;
    // Wrong type in a query parameter.
    let response = h
        .http
        .get(h.url("/v1/items/x?page_size=ten"))
        .send()
        .await
        .unwrap();
    expect(response, 400, 3, "page_size").await;
    // Oversized body, announced by Content-Length.
    let big = format!(r#"{{"note": "{}"}}"#, "x".repeat(70 * 1024));
    let response = h
        .http
        .post(h.url("/v1/items"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    expect(response, 413, 3, "larger than").await;
    // Oversized body, chunked without a length: cut off while reading.
    let status_line = chunked_post(&h.base, "/v1/items", big.as_bytes()).await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    // Wrong content type.
    let response = h
        .http
        .post(h.url("/v1/items"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect(response, 415, 3, "text/plain").await;
    // No route.
    let response = h.http.get(h.url("/v2/nothing")).send().await.unwrap();
    expect(response, 404, 5, "/v2/nothing").await;
    // Wrong method: 405 with Allow.
    let response = h.http.put(h.url("/v1/items/x")).send().await.unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(
        allow.contains("GET") && allow.contains("PATCH") && allow.contains("DELETE"),
        "{allow}"
    );
    expect(response, 405, 12, "PUT").await;

    // Rejections are counted under one label, not per raw path.
    let metrics = h
        .http
        .get(format!("http://{}/metrics", h.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(r#"route="unmatched""#), "{metrics}");
    assert!(!metrics.contains("/v2/nothing"), "{metrics}");

    h.stop().await;
}

#[tokio::test]
async fn upstream_errors_keep_their_code_and_details() {
    let h = Harness::start(false).await;
    let response = h
        .http
        .post(h.url("/v1/items:fail"))
        .json(&json!({"item": {"title": ""}}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], 3);
    assert_eq!(body["message"], "invalid item");
    let details = body["details"].as_array().unwrap();
    let bad_request = details
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(
        bad_request["fieldViolations"],
        json!([{"field": "item.title", "description": "must not be empty"}])
    );
    let info = details
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(info["reason"], "EMPTY_TITLE");
    h.stop().await;
}

#[tokio::test]
async fn unreachable_upstream_is_503() {
    let h = Harness::start(true).await;
    let response = h.http.get(h.url("/v1/items/x")).send().await.unwrap();
    let (status, request_id, body) = parts(response).await;
    assert_eq!(status, 503, "{body}");
    assert!(request_id.is_some());
    assert_eq!(body["code"], 14);
    // The transport's own error text stays in the log.
    assert!(!body["message"].as_str().unwrap().contains("tcp"), "{body}");
    h.stop().await;
}

#[tokio::test]
async fn well_known_types_round_trip_in_bodies_and_queries() {
    let h = Harness::start(false).await;
    let all = json!({
        "time": "2025-01-02T03:04:05.123Z",
        "duration": "1.500s",
        "mask": "title,sizeBytes",
        "int64Value": "9007199254740993",
        "uint64Value": "18446744073709551615",
        "int32Value": -7,
        "uint32Value": 7,
        "boolValue": false,
        "stringValue": "",
        "bytesValue": "aGk=",
        "doubleValue": 0.25,
        "floatValue": 1.5,
        "structValue": {"a": [1.5, "b", null, {"c": true}]},
        "value": "any JSON",
        "listValue": [2.5, "two"],
        "empty": {},
        "any": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "2s"},
        "times": ["2025-01-02T03:04:05Z", "1970-01-01T00:00:00Z"],
    });
    let response = h
        .http
        .post(h.url("/v1/well-known"))
        .json(&all)
        .send()
        .await
        .unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(request_of(&reply), all);

    // The same types as query parameters, in their JSON string forms.
    let query = "time=2025-01-02T03:04:05.123Z&duration=1.5s&mask=title,sizeBytes\
        &int64Value=9007199254740993&uint64_value=18446744073709551615&int32Value=-7\
        &uint32Value=7&boolValue=true&stringValue=s&bytesValue=aGk%3D&doubleValue=0.25\
        &floatValue=1.5&value=%22text%22&times=2025-01-02T03:04:05Z&times=1970-01-01T00:00:00Z";
    let response = h
        .http
        .get(h.url(&format!("/v1/well-known?{query}")))
        .send()
        .await
        .unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        request_of(&reply),
        json!({
            "time": "2025-01-02T03:04:05.123Z", "duration": "1.500s", "mask": "title,sizeBytes",
            "int64Value": "9007199254740993", "uint64Value": "18446744073709551615",
            "int32Value": -7, "uint32Value": 7, "boolValue": true, "stringValue": "s",
            "bytesValue": "aGk=", "doubleValue": 0.25, "floatValue": 1.5, "value": "text",
            "times": ["2025-01-02T03:04:05Z", "1970-01-01T00:00:00Z"],
        })
    );
    // A bad value names the field.
    let response = h
        .http
        .get(h.url("/v1/well-known?duration=soon"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("duration"),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn grpc_metadata_headers_go_both_ways() {
    let h = Harness::start(false).await;
    let response = h
        .http
        .get(h.url("/v1/items/x"))
        .header("grpc-metadata-tenant-hint", "acme")
        .header("grpc-metadata-authorization", "Bearer forged")
        .header("grpc-metadata-x-cloudsec-client-ip", "6.6.6.6")
        .header("connection", "keep-alive")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-metadata-x-served-by"], "echo");
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(reply["metadata"]["tenant-hint"], "acme");
    assert!(reply["metadata"].get("authorization").is_none(), "{reply}");
    // The client address is the gateway's to say, never the client's.
    assert_eq!(
        reply["metadata"]["x-cloudsec-client-ip"], "127.0.0.1",
        "{reply}"
    );
    h.stop().await;
}

fn lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn server_streams_as_ndjson_or_server_sent_events() {
    let h = Harness::start(false).await;
    assert!(
        h.routes
            .contains(&"GET /v1/items:watch -> cloudsec.echo.v1.EchoService/WatchItems".to_owned()),
        "{:#?}",
        h.routes
    );

    // Newline-delimited JSON by default, one `result` per message.
    let response = h
        .http
        .get(h.url("/v1/items:watch?count=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    assert!(response.headers().contains_key("x-request-id"));
    let text = response.text().await.unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    let got = lines(&text);
    assert_eq!(got.len(), 3, "{text}");
    assert_eq!(
        got[0],
        json!({"result": {"id": "i0", "title": "title 0", "sizeBytes": "9007199254740993"}})
    );
    assert_eq!(got[2]["result"]["id"], "i2");

    // A failure after the status went out ends the stream with an error.
    let text = h
        .http
        .get(h.url("/v1/items:watch?count=2&fail=true"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let got = lines(&text);
    assert_eq!(got.len(), 3, "{text}");
    assert_eq!(got[1]["result"]["id"], "i1");
    assert_eq!(
        got[2],
        json!({"error": {"code": 9, "message": "watch broken", "details": []}})
    );

    // A failure before the first message is an ordinary error response.
    let response = h
        .http
        .get(h.url("/v1/items:watch?missing=true"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(response).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["message"], "nothing to watch");

    // Server-Sent Events when the client accepts them.
    let response = h
        .http
        .get(h.url("/v1/items:watch?count=2&fail=true"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let text = response.text().await.unwrap();
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(events.len(), 3, "{text:?}");
    let data: serde_json::Value =
        serde_json::from_str(events[0].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(data["id"], "i0");
    let error = events[2].strip_prefix("event: error\ndata: ").unwrap();
    let error: serde_json::Value = serde_json::from_str(error).unwrap();
    assert_eq!(error["code"], 9);

    // response_body applies to every message.
    let text = h
        .http
        .get(h.url("/v1/items:watchTitles?count=2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "{\"result\":\"title 0\"}\n{\"result\":\"title 1\"}\n");

    // Messages go out as they come: the first arrives while the service
    // is still pausing before the second.
    let mut response = h
        .http
        .get(h.url("/v1/items:watch?count=2&pause_ms=3000"))
        .send()
        .await
        .unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(2), response.chunk())
        .await
        .expect("the first message was held back")
        .unwrap()
        .unwrap();
    let first = String::from_utf8(first.to_vec()).unwrap();
    assert!(
        first.contains("\"i0\"") && !first.contains("\"i1\""),
        "{first}"
    );
    drop(response);

    // The request is validated like any other.
    let response = h
        .http
        .get(h.url("/v1/items:watch?count=101"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("count"),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn patch_without_a_mask_takes_it_from_the_body() {
    let h = Harness::start(false).await;
    let response = h
        .http
        .patch(h.url("/v1/items/p-8"))
        .json(&json!({"title": "new", "owner": {"displayName": "Ann"}, "etag": "e1", "createTime": "2025-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200, "{reply}");
    // Nested keys become dotted paths; the path's id, the etag and an
    // output-only field are not changes. The required `owner.id` is not
    // checked, as the mask does not name it.
    assert_eq!(
        request_of(&reply),
        json!({
            "item": {"id": "p-8", "title": "new", "owner": {"displayName": "Ann"}, "etag": "e1", "createTime": "2025-01-01T00:00:00Z"},
            "updateMask": "owner.displayName,title",
        })
    );

    // What the mask names is validated, nested rules included.
    let response = h
        .http
        .patch(h.url("/v1/items/p-8"))
        .json(&json!({"owner": {"displayName": "A"}}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["details"][0]["fieldViolations"],
        json!([{"field": "item.owner.display_name", "description": "must be at least 2 characters"}])
    );
    h.stop().await;
}

fn overrides(pairs: &[(&str, u16)]) -> RoutePolicy {
    RoutePolicy {
        status_overrides: Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()),
        ..RoutePolicy::default()
    }
}

#[tokio::test]
async fn status_overrides_replace_the_table_per_method() {
    let h = Harness::with(Options {
        configure: Box::new(|c: &mut GatewayConfig| {
            let echo = "cloudsec.echo.v1.EchoService";
            c.routes.insert(
                format!("{echo}/DeleteItem"),
                overrides(&[("NOT_FOUND", 200)]),
            );
            c.routes
                .insert(format!("{echo}/GetItem"), overrides(&[("NOT_FOUND", 410)]));
            c.routes
                .insert(format!("{echo}/CreateItem"), overrides(&[("OK", 201)]));
            c.routes
                .insert(format!("{echo}/ArchiveItem"), overrides(&[("OK", 204)]));
        }),
        ..Options::default()
    })
    .await;

    // Deleting what is not there succeeds, with an empty object.
    let response = h
        .http
        .delete(h.url("/v1/items/missing"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({}));

    // Another status for an error keeps the error body.
    let response = h.http.get(h.url("/v1/items/missing")).send().await.unwrap();
    let (status, _, body) = parts(response).await;
    assert_eq!(status, 410);
    assert_eq!(body["code"], 5);
    assert_eq!(body["message"], "no such item");

    // Methods without overrides follow the table.
    let response = h
        .http
        .get(h.url("/v1/items/missing/item"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // OK may become another success status, with the reply...
    let response = h
        .http
        .post(h.url("/v1/items"))
        .json(&json!({"note": "n"}))
        .send()
        .await
        .unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 201);
    assert_eq!(reply["method"], "CreateItem");
    // ... or 204, which has no body.
    let response = h
        .http
        .post(h.url("/v1/items/a1:archive"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(response.headers().get("content-type").is_none());
    assert!(response.bytes().await.unwrap().is_empty());

    // The gateway's own answers are never overridden.
    let response = h
        .http
        .delete(h.url("/v1/items/x?bogus=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    h.stop().await;
}
