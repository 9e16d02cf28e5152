//! The real binary against tiny hand-written providers that misbehave: a write whose
//! answer is lost, ambiguous ids, a cursor that cycles, an absurd total. Each server is a
//! few lines of raw HTTP/1.1 over loopback, so it can do what no honest server does
//! (drop a connection after applying a write).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the test server does with one request.
enum Reply {
    Json(u16, String),
    /// Close the connection without answering (the request was processed).
    Drop,
}

/// Every request the server saw, as `METHOD /path?query`.
type Seen = Arc<Mutex<Vec<String>>>;

/// Serves `handler` on 127.0.0.1; each connection carries one request.
async fn serve<H>(handler: H) -> (u16, Seen)
where
    H: Fn(&str, &str) -> Reply + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let handler = handler.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                let head_end = loop {
                    if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let mut first = head.lines().next().unwrap_or("").split(' ');
                let method = first.next().unwrap_or("").to_string();
                let target = first.next().unwrap_or("").to_string();
                log.lock().unwrap().push(format!("{method} {target}"));
                match handler(&method, &target) {
                    Reply::Drop => drop(tcp),
                    Reply::Json(status, body) => {
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = tcp.write_all(answer.as_bytes()).await;
                        let _ = tcp.shutdown().await;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// A folder with one instance `provider` of `kind` at `port` and `users` as the user file.
fn folder(
    kind: &str,
    port: u16,
    extra: &str,
    users: &str,
) -> (tempfile::TempDir, BTreeMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("desired-state");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("providers.yaml"),
        format!("providers:\n  provider:\n    kind: {kind}\n    base_url: http://127.0.0.1:{port}\n    auth: {{ bearer_token_env: TOKEN }}\n{extra}"),
    )
    .unwrap();
    std::fs::write(root.join("people.yaml"), users).unwrap();
    (
        dir,
        BTreeMap::from([("TOKEN".to_string(), "t0ken".to_string())]),
    )
}

#[tokio::test]
async fn a_zitadel_write_whose_answer_was_lost_is_reported_as_ours() {
    let deactivations = Arc::new(Mutex::new(0));
    let count = deactivations.clone();
    let (port, seen) = serve(move |method, target| {
        let path = target.split('?').next().unwrap_or("");
        match (method, path) {
            ("POST", "/resources/v3alpha/users/_search") => Reply::Json(
                200,
                r#"{"details":{"totalResult":"1"},"result":[{"id":"z1","state":"USER_STATE_ACTIVE"}]}"#.into(),
            ),
            ("POST", "/resources/v3alpha/users/z1/_deactivate") => {
                let mut n = count.lock().unwrap();
                *n += 1;
                if *n == 1 {
                    Reply::Drop
                } else {
                    Reply::Json(400, r#"{"code":9,"message":"User is already deactivated","details":[]}"#.into())
                }
            }
            ("GET", "/resources/v3alpha/users/z1") => Reply::Json(
                200,
                r#"{"user":{"id":"z1","state":"USER_STATE_INACTIVE"}}"#.into(),
            ),
            _ => Reply::Json(404, r#"{"code":5,"message":"not found"}"#.into()),
        }
    })
    .await;
    let (dir, env) = folder(
        "zitadel",
        port,
        "",
        "users:\n  - name: zed\n    status: inactive\n    accounts:\n      provider: z1\n",
    );
    let run = common::run_roster(
        dir.path(),
        &["apply", "desired-state", "--audit-log", "audit.jsonl"],
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let line: serde_json::Value = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["event"] == "outcome")
        .unwrap_or_else(|| panic!("no outcome line: {audit}"));
    assert_eq!(line["outcome"], "already_converged", "{audit}");
    let everything = format!("{}{}{audit}", run.stdout, run.stderr);
    assert!(
        everything.contains(
            "an earlier attempt of this same call lost its answer and most likely applied it"
        ),
        "{everything}"
    );
    assert!(!everything.contains("someone else"), "{everything}");
    assert_eq!(*deactivations.lock().unwrap(), 2);
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with("GET "))
            .count(),
        1,
        "one confirming read"
    );
}

#[tokio::test]
async fn a_status_api_id_that_is_another_users_identifier_is_an_error_and_never_written() {
    let (port, seen) = serve(|method, _target| match method {
        "GET" => Reply::Json(
            200,
            r#"{"data":[{"id":"u1","identifier":"bob","status":"active"},{"id":"bob","identifier":"robert","status":"inactive"}],"page":1,"per_page":100,"total":2}"#.into(),
        ),
        _ => Reply::Json(200, r#"{"id":"u1","status":"inactive"}"#.into()),
    })
    .await;
    let (dir, env) = folder(
        "status-api",
        port,
        "",
        "users:\n  - name: bob\n    status: inactive\n    accounts:\n      provider: bob\n",
    );
    for command in ["plan", "apply"] {
        let run = common::run_roster(
            dir.path(),
            &[command, "desired-state", "--format", "json"],
            &env,
        )
        .await;
        assert_eq!(run.code, 1, "{run:?}");
        let message = run.stdout.clone();
        assert!(
            message.contains(r#"ambiguous: \"bob\" is the identifier of user u1 (active) and the id of user bob (inactive) at the provider; Roster will not pick one or change it"#),
            "{run:?}"
        );
    }
    assert!(
        seen.lock().unwrap().iter().all(|r| r.starts_with("GET ")),
        "{:?}",
        seen.lock().unwrap()
    );
}

#[tokio::test]
async fn a_suspend_api_cursor_cycle_is_an_instance_error() {
    let (port, seen) = serve(|_method, target| {
        let (id, next) = if target.contains("cursor=B") {
            ("b", "A")
        } else if target.contains("cursor=A") {
            ("c", "B")
        } else {
            ("a", "B")
        };
        Reply::Json(
            200,
            format!(r#"{{"data":[{{"id":"{id}","active":true,"avatar_base64":"QUJD"}}],"next_cursor":"{next}"}}"#),
        )
    })
    .await;
    let (dir, env) = folder(
        "suspend-api",
        port,
        "    tenant_id: t1\n",
        "users:\n  - name: ann\n    status: inactive\n    accounts:\n      provider: a\n",
    );
    let run = common::run_roster(
        dir.path(),
        &["plan", "desired-state", "--format", "json"],
        &env,
    )
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    let message = run.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        message,
        "the user list cannot be trusted, so this pass uses none of it: the cursor \"B\" after page 3 was already followed: the cursors go round in a cycle"
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn an_absurd_atlan_total_is_an_error_after_one_request() {
    let (port, seen) = serve(|_method, _target| {
        Reply::Json(
            200,
            r#"{"totalRecord":1,"filterRecord":18446744073709551615,"records":[{"id":"a","enabled":true}]}"#.into(),
        )
    })
    .await;
    let (dir, env) = folder(
        "atlan",
        port,
        "",
        "users:\n  - name: ann\n    status: inactive\n    accounts:\n      provider: a\n",
    );
    let run = common::run_roster(
        dir.path(),
        &["plan", "desired-state", "--format", "json"],
        &env,
    )
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    let message = run.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("it reports 18446744073709551615 users"),
        "{message}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_acronis_write_whose_answer_was_lost_is_reported_as_ours_and_an_absurd_expiry_is_harmless(
) {
    let puts = Arc::new(Mutex::new(0));
    let count = puts.clone();
    let (port, seen) = serve(move |method, target| {
        let path = target.split('?').next().unwrap_or("");
        let applied = *count.lock().unwrap() > 0;
        match (method, path) {
            ("POST", "/api/2/idp/token") => Reply::Json(
                200,
                r#"{"access_token":"tok","token_type":"bearer","expires_on":18446744073709551615}"#
                    .into(),
            ),
            ("GET", "/api/2/users") => Reply::Json(
                200,
                r#"{"items":[{"id":"a1","enabled":true,"activated":true,"version":1}]}"#.into(),
            ),
            ("PUT", "/api/2/users/a1") => {
                let mut n = count.lock().unwrap();
                *n += 1;
                if *n == 1 {
                    Reply::Drop
                } else {
                    Reply::Json(409, r#"{"error":{"message":"version conflict"}}"#.into())
                }
            }
            ("GET", "/api/2/users/a1") => Reply::Json(
                200,
                format!(
                    r#"{{"id":"a1","enabled":{},"activated":true,"version":{}}}"#,
                    !applied,
                    if applied { 2 } else { 1 }
                ),
            ),
            _ => Reply::Json(404, r#"{"message":"not found"}"#.into()),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("desired-state");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("providers.yaml"),
        format!("providers:\n  provider:\n    kind: acronis\n    base_url: http://127.0.0.1:{port}\n    auth: {{ client_id_env: CID, client_secret_env: CSECRET }}\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("people.yaml"),
        "users:\n  - name: ann\n    status: inactive\n    accounts:\n      provider: a1\n",
    )
    .unwrap();
    let env = BTreeMap::from([
        ("CID".to_string(), "client".to_string()),
        ("CSECRET".to_string(), "s3cret".to_string()),
    ]);
    let run = common::run_roster(
        dir.path(),
        &["apply", "desired-state", "--audit-log", "audit.jsonl"],
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let line: serde_json::Value = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["event"] == "outcome")
        .unwrap_or_else(|| panic!("no outcome line: {audit}"));
    assert_eq!(line["outcome"], "already_converged", "{audit}");
    let everything = format!("{}{}{audit}", run.stdout, run.stderr);
    assert!(
        everything.contains("an earlier attempt of this same call lost its answer"),
        "{everything}"
    );
    assert_eq!(*puts.lock().unwrap(), 2);
    let tokens = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.contains("idp/token"))
        .count();
    assert_eq!(tokens, 1, "one token for the whole pass");
}
