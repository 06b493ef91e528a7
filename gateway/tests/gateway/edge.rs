//! The other edge controls through a running gateway: the JWT authorizer
//! (JWKS from the auth service or a URL), CORS, required-field
//! validation, trusted proxies and the served OpenAPI document.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Harness, Options, parts, request_of};
use cloudsec_gateway::{CorsConfig, GatewayConfig, JwtConfig, RoutePolicy, Throttle};
use cloudsec_proto::auth::v1::Jwks;
use cloudsec_runtime::token::{Claims, Signer};
use serde_json::{Value as Json, json};

const ISSUER: &str = "https://auth.test";
const AUDIENCE: &str = "cloudsec";

fn claims(scope: &str) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        iss: ISSUER.into(),
        sub: "user-1".into(),
        aud: AUDIENCE.into(),
        exp: now + 600,
        iat: now,
        nbf: Some(now),
        jti: uuid::Uuid::new_v4().to_string(),
        tenant: "t1".into(),
        scope: scope.into(),
    }
}

fn jwt_config() -> JwtConfig {
    JwtConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        ..JwtConfig::default()
    }
}

async fn get_with(h: &Harness, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = h.http.get(h.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn expect(response: reqwest::Response, status: u16, code: i64, needle: &str) -> Json {
    let (actual, _, body) = parts(response).await;
    assert_eq!(actual, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(needle), "`{needle}` not in `{message}`");
    body
}

#[tokio::test]
async fn the_jwt_authorizer_checks_tokens_and_scopes_at_the_edge() {
    let signer = Signer::generate().unwrap();
    let h = Harness::with(Options {
        auth: true,
        jwks: Jwks {
            keys: vec![signer.jwk().clone()],
        },
        configure: Box::new(|c: &mut GatewayConfig| {
            c.jwt = Some(JwtConfig {
                min_refresh_interval: Duration::ZERO,
                ..jwt_config()
            });
            c.routes.insert(
                "cloudsec.echo.v1.EchoService/DeleteItem".into(),
                RoutePolicy {
                    scopes: Some(vec!["items:delete".into()]),
                    ..RoutePolicy::default()
                },
            );
        }),
        ..Options::default()
    })
    .await;

    // No token, or not a token: 401 with a challenge.
    // RFC 6750: without credentials the challenge names no error.
    let response = get_with(&h, "/v1/items/x", None).await;
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"cloudsec\""
    );
    expect(response, 401, 16, "missing bearer token").await;
    let response = get_with(&h, "/v1/items/x", Some("garbage")).await;
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"cloudsec\", error=\"invalid_token\""
    );
    expect(response, 401, 16, "malformed").await;

    // A good token passes and still reaches the service.
    let token = signer.sign(&claims("documents")).unwrap();
    let (status, _, reply) = parts(get_with(&h, "/v1/items/x", Some(&token)).await).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["metadata"]["authorization"],
        format!("Bearer {token}")
    );

    // Each claim is checked.
    let now = chrono::Utc::now().timestamp();
    for (mutate, needle) in [
        (
            Box::new(|c: &mut Claims| c.exp = now - 60) as Box<dyn Fn(&mut Claims)>,
            "expired",
        ),
        (
            Box::new(|c: &mut Claims| c.nbf = Some(now + 600)),
            "not yet valid",
        ),
        (
            Box::new(|c: &mut Claims| c.aud = "other".into()),
            "audience",
        ),
        (
            Box::new(|c: &mut Claims| c.iss = "https://evil".into()),
            "issuer",
        ),
    ] {
        let mut c = claims("documents");
        mutate(&mut c);
        let token = signer.sign(&c).unwrap();
        expect(
            get_with(&h, "/v1/items/x", Some(&token)).await,
            401,
            16,
            needle,
        )
        .await;
    }
    // A key nobody published.
    let stranger = Signer::generate().unwrap();
    let token = stranger.sign(&claims("documents")).unwrap();
    expect(
        get_with(&h, "/v1/items/x", Some(&token)).await,
        401,
        16,
        "unknown key",
    )
    .await;

    // Scopes per route: 403 without, 200 with.
    let token = signer.sign(&claims("documents")).unwrap();
    let response = h
        .http
        .delete(h.url("/v1/items/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect(response, 403, 7, "items:delete").await;
    let token = signer.sign(&claims("documents items:delete")).unwrap();
    let response = h
        .http
        .delete(h.url("/v1/items/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Sign-up and the JWKS stay open.
    let response = h
        .http
        .post(h.url("/v1/auth:signUp"))
        .json(&json!({"email": "a@example.com", "password": "a long passphrase", "tenant": "acme"}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenant"], "acme");
    let (status, _, body) = parts(get_with(&h, "/.well-known/jwks.json", None).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["keys"][0]["kid"], signer.kid());

    // Rotation: a new key is fetched the first time a token names it.
    let rotated = Signer::generate().unwrap();
    h.jwks.lock().unwrap().keys.push(rotated.jwk().clone());
    let token = rotated.sign(&claims("documents")).unwrap();
    assert_eq!(
        get_with(&h, "/v1/items/x", Some(&token)).await.status(),
        200
    );

    let metrics = h.metrics().await;
    for reason in ["unauthenticated", "forbidden"] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{metrics}"
        );
    }
    h.stop().await;
}

/// Serves a JWKS document that the test can change.
async fn jwks_server(document: Arc<Mutex<Json>>) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { axum::Json(document.lock().unwrap().clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

fn jwk_json(signer: &Signer) -> Json {
    let jwk = signer.jwk();
    json!({"kty": jwk.kty, "kid": jwk.kid, "use": jwk.r#use, "alg": jwk.alg, "n": jwk.n, "e": jwk.e})
}

#[tokio::test]
async fn keys_from_a_jwks_url_are_refreshed_on_a_schedule() {
    let signer = Signer::generate().unwrap();
    let document = Arc::new(Mutex::new(json!({"keys": [jwk_json(&signer)]})));
    let (url, server) = jwks_server(document.clone()).await;
    let h = Harness::with(Options {
        configure: Box::new(move |c: &mut GatewayConfig| {
            c.jwt = Some(JwtConfig {
                jwks_url: Some(url),
                refresh_interval: Duration::from_millis(50),
                ..jwt_config()
            });
        }),
        ..Options::default()
    })
    .await;
    let token = signer.sign(&claims("")).unwrap();
    assert_eq!(
        get_with(&h, "/v1/items/x", Some(&token)).await.status(),
        200
    );

    // The key is withdrawn: after a scheduled refresh it no longer works.
    *document.lock().unwrap() = json!({"keys": []});
    let mut refused = false;
    for _ in 0..200 {
        if get_with(&h, "/v1/items/x", Some(&token)).await.status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(refused, "a withdrawn key was still accepted");
    server.abort();
    h.stop().await;
}

#[tokio::test]
async fn cors_preflights_are_answered_and_unlisted_origins_refused() {
    let h = Harness::with(Options {
        configure: Box::new(|c: &mut GatewayConfig| {
            c.cors = Some(CorsConfig::allowing(["https://app.example.com"]));
        }),
        ..Options::default()
    })
    .await;
    let preflight = |origin: &'static str, method: &'static str| {
        h.http
            .request(reqwest::Method::OPTIONS, h.url("/v1/items/x"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };

    let response = preflight("https://app.example.com", "DELETE")
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("DELETE") && methods.contains("GET") && methods.contains("PATCH"),
        "{methods}"
    );
    assert_eq!(
        headers["access-control-allow-headers"],
        "authorization, content-type"
    );
    assert!(headers.contains_key("access-control-max-age"));

    let response = preflight("https://evil.example.com", "GET").await.unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
    expect(response, 403, 7, "evil.example.com").await;
    let response = preflight("https://app.example.com", "PUT").await.unwrap();
    expect(response, 403, 7, "method").await;

    // Actual requests: headers for listed origins only.
    let response = h
        .http
        .get(h.url("/v1/items/x"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        response.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("x-request-id")
    );
    let response = h
        .http
        .get(h.url("/v1/items/x"))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
    assert!(h.metrics().await.contains(r#"reason="cors""#));
    h.stop().await;

    // Without `[gateway.cors]` nothing changes: OPTIONS is just a method.
    let h = Harness::start(false).await;
    let response = h
        .http
        .request(reqwest::Method::OPTIONS, h.url("/v1/items/x"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    h.stop().await;
}

#[tokio::test]
async fn required_fields_are_checked_before_the_call() {
    let h = Harness::start(false).await;
    let post = |body: Json| h.http.post(h.url("/v1/registrations")).json(&body).send();

    let body = expect(post(json!({})).await.unwrap(), 400, 3, "name").await;
    assert_eq!(
        body["details"][0]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    let fields: Vec<&str> = body["details"][0]["fieldViolations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "owner", "kind"]);

    let body = post(json!({
        "name": "n", "owner": {"displayName": "no id"}, "kind": "KIND_SMALL",
        "deputies": [{"id": "d1"}, {}],
    }))
    .await
    .unwrap();
    let body = expect(body, 400, 3, "owner.id").await;
    assert_eq!(
        body["details"][0]["fieldViolations"],
        json!([
            {"field": "owner.id", "description": "is required"},
            {"field": "deputies[1].id", "description": "is required"},
        ])
    );

    let (status, _, reply) = parts(
        post(json!({"name": "n", "owner": {"id": "o"}, "kind": "KIND_SMALL", "age": 0}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(request_of(&reply)["owner"]["id"], "o");
    assert!(h.metrics().await.contains(r#"reason="missing_required""#));
    h.stop().await;

    // Switched off, the service sees the request as sent.
    let h = Harness::with(Options {
        configure: Box::new(|c: &mut GatewayConfig| c.validate_requests = false),
        ..Options::default()
    })
    .await;
    let response = h
        .http
        .post(h.url("/v1/registrations"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    h.stop().await;
}

#[tokio::test]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let throttled = |trusted: bool| {
        move |c: &mut GatewayConfig| {
            c.client_ip_throttle = Some(Throttle {
                rate: 0.001,
                burst: 1,
            });
            if trusted {
                c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
            }
        }
    };
    let send = |h: &Harness, client: &'static str| {
        h.http
            .get(h.url("/v1/items/x"))
            .header("x-forwarded-for", client)
            .header("x-forwarded-proto", "https")
            .header("x-request-id", "client-chosen")
            .header("apigw-requestid", "Ab1cDeFgHiJkLmN=")
            .send()
    };

    // Behind a trusted proxy: each forwarded client has its own bucket,
    // and API Gateway's request id is the request id.
    let h = Harness::with(Options {
        configure: Box::new(throttled(true)),
        ..Options::default()
    })
    .await;
    let response = send(&h, "198.51.100.1").await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "Ab1cDeFgHiJkLmN=");
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(reply["metadata"]["x-request-id"], "Ab1cDeFgHiJkLmN=");
    assert_eq!(send(&h, "198.51.100.1").await.unwrap().status(), 429);
    assert_eq!(send(&h, "198.51.100.2").await.unwrap().status(), 200);
    h.stop().await;

    // From anyone else the headers mean nothing: one peer, one bucket.
    let h = Harness::with(Options {
        configure: Box::new(throttled(false)),
        ..Options::default()
    })
    .await;
    let response = send(&h, "198.51.100.1").await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen");
    assert_eq!(response.status(), 200);
    assert_eq!(send(&h, "198.51.100.2").await.unwrap().status(), 429);
    h.stop().await;
}

#[tokio::test]
async fn the_openapi_document_is_served() {
    let h = Harness::start(false).await;
    let (status, _, doc) = parts(h.http.get(h.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    // `/v1/items/{id}` and `/v1/items/{item.id}` are one path with one
    // parameter name; the update's own field is in `x-field-path`.
    assert!(!paths.contains_key("/v1/items/{item_id}"));
    let params = paths["/v1/items/{id}"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|op| op["parameters"].as_array().cloned().unwrap_or_default())
        .filter(|p| p["in"] == "path")
        .collect::<Vec<_>>();
    assert!(params.iter().all(|p| p["name"] == "id"), "{params:?}");
    assert!(
        params.iter().any(|p| p["x-field-path"] == "item.id"),
        "{params:?}"
    );
    for path in ["/v1/items/{id}", "/v1/files/{path}", "/v1/registrations"] {
        assert!(
            paths.contains_key(path),
            "{path} missing: {:?}",
            paths.keys()
        );
    }
    // Only services with an upstream are described.
    assert!(!paths.contains_key("/v1/documents"));
    let register = &doc["components"]["schemas"]["cloudsec.echo.v1.RegisterRequest"];
    assert_eq!(register["required"], json!(["name", "owner", "kind"]));
    assert_eq!(register["properties"]["age"]["x-proto3-optional"], true);
    let one_of = &register["allOf"][0]["oneOf"];
    assert_eq!(one_of.as_array().unwrap().len(), 3, "{register}");
    h.stop().await;

    let h = Harness::with(Options {
        configure: Box::new(|c: &mut GatewayConfig| c.serve_openapi = false),
        ..Options::default()
    })
    .await;
    assert_eq!(
        h.http
            .get(h.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    h.stop().await;
}

#[tokio::test]
async fn scopes_come_from_the_contract_and_the_configuration() {
    let signer = Signer::generate().unwrap();
    let h = Harness::with(Options {
        auth: true,
        jwks: Jwks {
            keys: vec![signer.jwk().clone()],
        },
        configure: Box::new(|c: &mut GatewayConfig| {
            c.jwt = Some(jwt_config());
            // ArchiveItem's contract demands `items:archive`; the
            // configuration adds one for CreateItem only.
            c.routes.insert(
                "cloudsec.echo.v1.EchoService/CreateItem".into(),
                RoutePolicy {
                    scopes: Some(vec!["items:create".into()]),
                    ..RoutePolicy::default()
                },
            );
            c.routes.insert(
                "cloudsec.echo.v1.EchoService/*".into(),
                RoutePolicy {
                    scopes: Some(vec!["echo".into()]),
                    ..RoutePolicy::default()
                },
            );
        }),
        ..Options::default()
    })
    .await;
    let archive = |scope: &str| {
        let token = signer.sign(&claims(scope)).unwrap();
        h.http
            .post(h.url("/v1/items/a1:archive"))
            .bearer_auth(token)
            .json(&json!({}))
            .send()
    };
    expect(archive("echo").await.unwrap(), 403, 7, "items:archive").await;
    // The configured scope is required as well as the contract's.
    expect(archive("items:archive").await.unwrap(), 403, 7, "echo").await;
    let (status, _, reply) = parts(archive("echo items:archive").await.unwrap()).await;
    assert_eq!(status, 200, "{reply}");

    // Without the option only the configuration counts.
    let token = signer.sign(&claims("echo")).unwrap();
    let response = h
        .http
        .post(h.url("/v1/items"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect(response, 403, 7, "items:create").await;
    let token = signer.sign(&claims("items:create")).unwrap();
    let response = h
        .http
        .post(h.url("/v1/items"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The OpenAPI document names the contract's scopes.
    let (_, _, doc) = parts(h.http.get(h.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(
        doc["paths"]["/v1/items/{id}:archive"]["post"]["x-required-scopes"],
        json!(["items:archive"])
    );
    h.stop().await;
}

#[tokio::test]
async fn field_rules_are_checked_before_the_call() {
    let h = Harness::start(false).await;
    let post = |body: Json| h.http.post(h.url("/v1/registrations")).json(&body).send();
    let valid =
        json!({"name": "reg-1", "owner": {"id": "o", "displayName": "Ann"}, "kind": "KIND_SMALL"});
    let (status, _, reply) = parts(post(valid.clone()).await.unwrap()).await;
    assert_eq!(status, 200, "{reply}");

    for (change, field, description) in [
        (
            json!({"name": "Reg 1"}),
            "name",
            "must match `^[a-z][a-z0-9-]*$`",
        ),
        (
            json!({"name": "a-name-that-is-too-long"}),
            "name",
            "must be at most 16 characters",
        ),
        (json!({"age": 151}), "age", "must be at most 150"),
        (json!({"age": -1}), "age", "must be at least 0"),
        (
            json!({"deputies": [{"id": "1"}, {"id": "2"}, {"id": "3"}, {"id": "4"}]}),
            "deputies",
            "must have at most 3 items",
        ),
        (
            json!({"tags": ["ok", "too-long"]}),
            "tags[1]",
            "must be at most 5 characters",
        ),
        (
            json!({"owner": {"id": "o", "displayName": "A"}}),
            "owner.display_name",
            "must be at least 2 characters",
        ),
    ] {
        let mut body = valid.clone();
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let body = expect(post(body).await.unwrap(), 400, 3, "invalid field").await;
        assert_eq!(
            body["details"][0]["fieldViolations"],
            json!([{"field": field, "description": description}]),
            "{change}"
        );
    }
    // Missing and invalid fields are reported together.
    let body = expect(
        post(json!({"name": "Bad", "owner": {"id": "o"}}))
            .await
            .unwrap(),
        400,
        3,
        "missing required field: kind; invalid field: name",
    )
    .await;
    assert_eq!(
        body["details"][0]["fieldViolations"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(h.metrics().await.contains(r#"reason="invalid_field""#));

    // The OpenAPI document carries the same constraints.
    let (_, _, doc) = parts(h.http.get(h.url("/openapi.json")).send().await.unwrap()).await;
    let schemas = &doc["components"]["schemas"];
    let register = &schemas["cloudsec.echo.v1.RegisterRequest"]["properties"];
    assert_eq!(register["name"]["maxLength"], 16);
    assert_eq!(register["name"]["pattern"], "^[a-z][a-z0-9-]*$");
    assert_eq!(register["deputies"]["maxItems"], 3);
    assert_eq!(register["age"]["minimum"], 0.0);
    assert_eq!(register["age"]["maximum"], 150.0);
    assert_eq!(register["tags"]["items"]["maxLength"], 5);
    // An optional string's rules apply once it is set: empty passes.
    let owner = &schemas["cloudsec.echo.v1.Owner"]["properties"];
    assert_eq!(owner["displayName"]["anyOf"][0]["maxLength"], 0);
    assert_eq!(owner["displayName"]["anyOf"][1]["minLength"], 2);
    // A streaming operation describes both framings.
    let watch = &doc["paths"]["/v1/items:watch"]["get"]["responses"]["200"]["content"];
    assert!(watch["application/x-ndjson"].is_object(), "{watch}");
    assert!(watch["text/event-stream"].is_object(), "{watch}");
    h.stop().await;
}
