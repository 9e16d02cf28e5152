//! TLS for real over loopback: a CA and server certificates made at test time (rcgen), a
//! tiny rustls server on 127.0.0.1, and Roster's HTTP client (and binary) against it.
//! Checks that a certificate problem is named and never retried, and that `ca_file` and
//! `SSL_CERT_FILE` make a private CA trusted.

mod common;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use roster::provider::http::{
    ApiRequest, BearerToken, HttpClient, HttpConfig, RequestObserver, RetryPolicy,
};
use roster::secret::Secret;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A test CA and a server certificate it signed.
struct Pki {
    ca_pem: String,
    server_cert: rustls::pki_types::CertificateDer<'static>,
    server_key: Vec<u8>,
}

fn pki(names: &[&str], expired: bool) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Roster test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
    }
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server_cert: cert.der().clone(),
        server_key: key.serialize_der(),
    }
}

/// An HTTPS server on 127.0.0.1 that answers every request with `body`, counting the
/// TCP connections it accepted (one per attempt: each answer closes the connection).
struct TlsServer {
    port: u16,
    connections: Arc<AtomicUsize>,
}

async fn serve_tls(pki: &Pki, body: &'static str) -> TlsServer {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.server_cert.clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(pki.server_key.clone().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    TlsServer { port, connections }
}

/// Counts the client's attempts as the metrics see them.
#[derive(Default)]
struct Attempts(AtomicUsize);

impl RequestObserver for Attempts {
    fn request_finished(&self, _: &str, _: &str, _: Option<u16>, _: Duration) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn retry_scheduled(&self, _: &str) {}
}

fn client(host: &str, port: u16, ca_file: Option<PathBuf>, attempts: Arc<Attempts>) -> HttpClient {
    HttpClient::new(HttpConfig {
        instance: "secure".into(),
        base_url: url::Url::parse(&format!("https://{host}:{port}")).unwrap(),
        timeout: Duration::from_secs(5),
        max_concurrency: 1,
        requests_per_second: None,
        credentials: Arc::new(BearerToken(Secret::new("t"))),
        headers: Default::default(),
        query: vec![],
        retry: RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_retry_after: Duration::from_millis(5),
        },
        observer: attempts,
        ca_file,
    })
    .unwrap()
}

fn write_ca(dir: &tempfile::TempDir, pki: &Pki) -> PathBuf {
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, &pki.ca_pem).unwrap();
    path
}

#[tokio::test]
async fn an_unknown_issuer_is_named_and_tried_once_and_ca_file_fixes_it() {
    let pki = pki(&["127.0.0.1"], false);
    let server = serve_tls(&pki, "[]").await;
    let attempts = Arc::new(Attempts::default());
    let c = client("127.0.0.1", server.port, None, attempts.clone());
    let error = c.read(ApiRequest::get(&["users"])).await.err().unwrap();
    assert_eq!(
        error.to_string(),
        "GET /users: TLS certificate problem: unknown issuer (the server's certificate is not signed by a trusted CA); not retried, since a retry cannot fix a certificate (for a private CA, set ca_file on the instance or SSL_CERT_FILE)"
    );
    assert_eq!(attempts.0.load(Ordering::SeqCst), 1);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);

    let dir = tempfile::tempdir().unwrap();
    let trusted = client(
        "127.0.0.1",
        server.port,
        Some(write_ca(&dir, &pki)),
        attempts,
    );
    let response = trusted.read(ApiRequest::get(&["users"])).await.unwrap();
    assert_eq!(response.status.as_u16(), 200);
    assert_eq!(&response.body[..], b"[]");
}

#[tokio::test]
async fn a_name_mismatch_and_an_expired_certificate_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (names, expired, problem) in [
        (
            &["roster.invalid"][..],
            false,
            "TLS certificate problem: name mismatch",
        ),
        (
            &["127.0.0.1"][..],
            true,
            "TLS certificate problem: the server's certificate has expired",
        ),
    ] {
        let pki = pki(names, expired);
        let server = serve_tls(&pki, "[]").await;
        let attempts = Arc::new(Attempts::default());
        let c = client(
            "127.0.0.1",
            server.port,
            Some(write_ca(&dir, &pki)),
            attempts.clone(),
        );
        let error = c
            .read(ApiRequest::get(&["users"]))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.starts_with(&format!("GET /users: {problem}")),
            "{error}"
        );
        assert!(error.contains("not retried"), "{error}");
        assert_eq!(attempts.0.load(Ordering::SeqCst), 1, "{error}");
    }
}

#[tokio::test]
async fn a_bad_ca_file_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let error = HttpClient::new(HttpConfig {
        instance: "secure".into(),
        base_url: url::Url::parse("https://127.0.0.1:1").unwrap(),
        timeout: Duration::from_secs(1),
        max_concurrency: 1,
        requests_per_second: None,
        credentials: Arc::new(BearerToken(Secret::new("t"))),
        headers: Default::default(),
        query: vec![],
        retry: RetryPolicy::default(),
        observer: Arc::new(Attempts::default()),
        ca_file: Some(missing.clone()),
    })
    .err()
    .unwrap()
    .to_string();
    assert_eq!(
        error,
        format!(
            "cannot build HTTP client: ca_file {}: cannot read it: entity not found",
            missing.display()
        )
    );
}

const STATUS_PAGE: &str = r#"{"data":[{"id":"u1","identifier":"bob","status":"active"}],"page":1,"per_page":100,"total":1}"#;

/// A folder with one status-api instance at `port`; `extra` is added to the instance.
fn folder(dir: &tempfile::TempDir, port: u16, extra: &str) -> BTreeMap<String, String> {
    let root = dir.path().join("desired-state");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("providers.yaml"),
        format!("providers:\n  helpdesk:\n    kind: status-api\n    base_url: https://127.0.0.1:{port}\n    auth: {{ bearer_token_env: HELPDESK_TOKEN }}\n{extra}"),
    )
    .unwrap();
    std::fs::write(
        root.join("people.yaml"),
        "users:\n  - name: bob\n    status: active\n    accounts:\n      helpdesk: bob\n",
    )
    .unwrap();
    BTreeMap::from([("HELPDESK_TOKEN".to_string(), "secret-token".to_string())])
}

#[tokio::test]
async fn the_binary_trusts_ca_file_and_ssl_cert_file() {
    let pki = pki(&["127.0.0.1"], false);
    let server = serve_tls(&pki, STATUS_PAGE).await;
    let dir = tempfile::tempdir().unwrap();
    write_ca(&dir, &pki);
    let plan = ["plan", "desired-state", "--format", "json"];

    let mut env = folder(&dir, server.port, "");
    let run = common::run_roster(dir.path(), &plan, &env).await;
    assert_eq!(run.code, 1, "{run:?}");
    let message = run.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("unknown issuer"), "{message}");
    assert!(message.contains("set ca_file"), "{message}");
    assert!(!message.contains("secret-token"));

    // ca_file, relative to the folder of providers.yaml.
    let env_ca = folder(&dir, server.port, "    ca_file: ../ca.pem\n");
    let run = common::run_roster(dir.path(), &plan, &env_ca).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["in_sync"], 1, "{run:?}");

    // SSL_CERT_FILE, for every instance.
    folder(&dir, server.port, "");
    env.insert(
        "SSL_CERT_FILE".into(),
        dir.path().join("ca.pem").display().to_string(),
    );
    let run = common::run_roster(dir.path(), &plan, &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["in_sync"], 1, "{run:?}");
}
