//! offstage as an OAuth 2.1 resource server, against a local authorization server the test
//! starts with keys it makes: protected resource metadata, tokens checked for signature,
//! issuer, audience and expiry, key rotation, the subject as the job owner, and scopes.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair},
};
use axum::{Json, Router, extract::State, routing::get};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use offstage::config::OAuthConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::{TestServer, call, job_id, modern_client, structured};

const AUDIENCE: &str = "https://offstage.test/mcp";

/// A signing key and the JWK its issuer publishes.
struct Key {
    kid: &'static str,
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn ed25519(kid: &'static str) -> Key {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    Key {
        kid,
        algorithm: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}),
    }
}

fn p256(kid: &'static str) -> Key {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..65]));
    Key {
        kid,
        algorithm: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256"}),
    }
}

/// The authorization server: RFC 8414 metadata and a JWK set that can be rotated.
#[derive(Clone)]
struct Issuer {
    base: String,
    published: Arc<Mutex<Vec<Value>>>,
    key_fetches: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start(published: Vec<Value>) -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let issuer = Issuer {
            base,
            published: Arc::new(Mutex::new(published)),
            key_fetches: Arc::new(AtomicUsize::new(0)),
        };
        let app = Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(|State(issuer): State<Issuer>| async move {
                    Json(
                        json!({"issuer": issuer.base, "jwks_uri": format!("{}/jwks", issuer.base)}),
                    )
                }),
            )
            .route(
                "/jwks",
                get(|State(issuer): State<Issuer>| async move {
                    issuer.key_fetches.fetch_add(1, Ordering::SeqCst);
                    Json(json!({"keys": *issuer.published.lock().unwrap()}))
                }),
            )
            .with_state(issuer.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        issuer
    }

    fn mint(&self, key: &Key, claims: Value) -> String {
        let mut header = Header::new(key.algorithm);
        header.kid = Some(key.kid.to_owned());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let mut full = json!({"iss": self.base, "aud": AUDIENCE, "sub": "alice",
            "exp": now + 600, "iat": now, "scope": "offstage:tools"});
        for (name, value) in claims.as_object().unwrap() {
            full[name] = value.clone();
        }
        jsonwebtoken::encode(&header, &full, &key.encoding).unwrap()
    }
}

async fn server(issuer: &Issuer) -> TestServer {
    let base = issuer.base.clone();
    TestServer::start_with(move |config| {
        config.security.tokens = vec!["static-secret".to_owned()];
        config.security.oauth = Some(OAuthConfig {
            issuer: base,
            audience: AUDIENCE.to_owned(),
            jwks_url: None,
            tools_scope: "offstage:tools".to_owned(),
            operator_scope: "offstage:operator".to_owned(),
            keys_for: Duration::from_secs(600),
            leeway: Duration::from_secs(5),
            refetch_after: Duration::from_millis(500),
        });
    })
    .await
}

/// Status, `WWW-Authenticate` and error code of `GET path` with `token`.
async fn get_with(server: &TestServer, path: &str, token: &str) -> (u16, String, Value) {
    let response =
        reqwest::Client::new().get(server.http(path)).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, challenge, body)
}

#[tokio::test]
async fn the_resource_metadata_names_the_issuer_and_every_401_points_to_it() {
    let key = ed25519("k1");
    let issuer = Issuer::start(vec![key.jwk.clone()]).await;
    let server = server(&issuer).await;
    for path in
        ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"]
    {
        let metadata: Value = reqwest::get(server.http(path)).await.unwrap().json().await.unwrap();
        assert_eq!(metadata["resource"], AUDIENCE);
        assert_eq!(metadata["authorization_servers"], json!([issuer.base]));
        assert_eq!(metadata["scopes_supported"], json!(["offstage:tools", "offstage:operator"]));
    }
    let response = reqwest::Client::new().get(server.http("/v1/events")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    let expected =
        format!("resource_metadata=\"{}\"", server.http("/.well-known/oauth-protected-resource"));
    assert!(challenge.starts_with("Bearer ") && challenge.contains(&expected), "{challenge}");
    server.stop().await;
}

#[tokio::test]
async fn tokens_are_checked_for_signature_issuer_audience_and_time() {
    let key = ed25519("k1");
    let stranger = ed25519("k1"); // same kid, different key: a forgery
    let issuer = Issuer::start(vec![key.jwk.clone()]).await;
    let server = server(&issuer).await;
    let good = issuer.mint(&key, json!({}));
    assert_eq!(get_with(&server, "/v1/jobs/0123456789abcdef", &good).await.0, 404, "accepted");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let refused = [
        ("expired", issuer.mint(&key, json!({"exp": now - 60})), "expired"),
        ("not valid yet", issuer.mint(&key, json!({"nbf": now + 600})), "not valid yet"),
        (
            "wrong audience",
            issuer.mint(&key, json!({"aud": "https://elsewhere/mcp"})),
            "another resource",
        ),
        (
            "wrong issuer",
            issuer.mint(&key, json!({"iss": "https://evil.example"})),
            "another issuer",
        ),
        ("forged", issuer.mint(&stranger, json!({})), "signature"),
        ("unknown key", issuer.mint(&ed25519("k9"), json!({})), "does not publish"),
    ];
    for (what, token, reason) in refused {
        let (status, challenge, body) =
            get_with(&server, "/v1/jobs/0123456789abcdef", &token).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(body["error"]["code"], "invalid_token", "{what}");
        assert!(body["error"]["message"].as_str().unwrap().contains(reason), "{what}: {body}");
        assert!(challenge.contains("error=\"invalid_token\""), "{what}: {challenge}");
    }
    // Static bearer tokens keep working beside OAuth.
    assert_eq!(get_with(&server, "/v1/jobs/0123456789abcdef", "static-secret").await.0, 404);
    server.stop().await;
}

#[tokio::test]
async fn the_subject_owns_its_jobs_across_tokens() {
    let key = p256("es");
    let issuer = Issuer::start(vec![key.jwk.clone()]).await;
    let server = server(&issuer).await;
    let alice = issuer.mint(&key, json!({"sub": "alice"}));
    let (client, _) = modern_client(&server.url(), Some(&alice)).await;
    let id = job_id(&call(&client, "generate_image", json!({"prompt": "a fox"})).await);
    // A fresh token of the same subject sees the job; another subject's does not.
    let again = issuer.mint(&key, json!({"sub": "alice", "iat": 1}));
    assert_eq!(get_with(&server, &format!("/v1/jobs/{id}"), &again).await.0, 200);
    let bob = issuer.mint(&key, json!({"sub": "bob"}));
    let (bobs, _) = modern_client(&server.url(), Some(&bob)).await;
    let stolen = call(&bobs, "job_status", json!({"job_id": id})).await;
    assert_eq!(structured(&stolen)["error"]["code"], "job_not_found");
    assert_eq!(get_with(&server, &format!("/v1/jobs/{id}"), &bob).await.0, 404);
    client.cancel().await.unwrap();
    bobs.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn scopes_separate_tools_from_operator_views() {
    let key = ed25519("k1");
    let issuer = Issuer::start(vec![key.jwk.clone()]).await;
    let server = server(&issuer).await;
    let tools_only = issuer.mint(&key, json!({}));
    let (status, challenge, body) = get_with(&server, "/v1/tools", &tools_only).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_scope");
    assert!(challenge.contains("scope=\"offstage:operator\""), "{challenge}");
    let operator = issuer.mint(&key, json!({"scope": "offstage:operator"}));
    assert_eq!(get_with(&server, "/v1/tools", &operator).await.0, 200);
    let (status, _, body) = get_with(&server, "/v1/events", &operator).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("insufficient_scope")));
    let both = issuer.mint(&key, json!({"scp": ["offstage:tools", "offstage:operator"]}));
    assert_eq!(get_with(&server, "/v1/tools", &both).await.0, 200, "scp as an array");
    server.stop().await;
}

#[tokio::test]
async fn rotated_keys_are_fetched_and_forged_key_ids_do_not_hammer_the_issuer() {
    let old = ed25519("old");
    let new = ed25519("new");
    let issuer = Issuer::start(vec![old.jwk.clone()]).await;
    let server = server(&issuer).await;
    let path = "/v1/jobs/0123456789abcdef";
    assert_eq!(get_with(&server, path, &issuer.mint(&old, json!({}))).await.0, 404);
    assert_eq!(issuer.key_fetches.load(Ordering::SeqCst), 1, "fetched once, then cached");
    assert_eq!(get_with(&server, path, &issuer.mint(&old, json!({}))).await.0, 404);
    assert_eq!(issuer.key_fetches.load(Ordering::SeqCst), 1);
    // The issuer rotates: the new key is fetched when a token names it.
    *issuer.published.lock().unwrap() = vec![new.jwk.clone()];
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get_with(&server, path, &issuer.mint(&new, json!({}))).await.0, 404);
    let after_rotation = issuer.key_fetches.load(Ordering::SeqCst);
    assert_eq!(after_rotation, 2);
    // Tokens naming keys nobody published: refused, and at most one fetch between them.
    for _ in 0..20 {
        let forged = issuer.mint(&ed25519("forged"), json!({}));
        assert_eq!(get_with(&server, path, &forged).await.0, 401);
    }
    assert!(issuer.key_fetches.load(Ordering::SeqCst) <= after_rotation + 1);
    server.stop().await;
}
