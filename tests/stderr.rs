//! What the real binary writes to stderr: untrusted text (provider messages, file names)
//! never reaches it raw, and progress never appears when stderr is not a terminal.

mod common;

use common::{run_roster, Run};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;

/// What a hostile provider puts in its error messages: clear the screen, return the
/// cursor to the start of the line and print a line of its own.
const HOSTILE: &str = "\u{1b}[2J\u{1b}[H\rforged: all accounts converged";

/// A status-api provider on loopback that lists one active account and answers every
/// write with a 422 whose message is [`HOSTILE`]. Returns its base URL.
fn hostile_provider() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || answer(stream));
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// Answers one request and closes the connection.
fn answer(mut stream: std::net::TcpStream) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    let (status, body) = if request_line.starts_with("GET ") {
        (
            "200 OK",
            serde_json::json!({"data": [{"id": "u1", "status": "active"}], "total": 1}),
        )
    } else {
        (
            "422 Unprocessable Entity",
            serde_json::json!({"error": {"code": "REFUSED", "message": HOSTILE}}),
        )
    };
    let body = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A folder with one instance at `base_url` and one user to disable there.
fn folder(dir: &Path, base_url: &str) {
    write(
        &dir.join("desired-state/providers.yaml"),
        &format!(
            "providers:\n  helpdesk:\n    kind: status-api\n    base_url: {base_url}\n    auth: {{ bearer_token_env: HELPDESK_TOKEN }}\n"
        ),
    );
    write(
        &dir.join("desired-state/people.yaml"),
        "users:\n  - name: georg\n    status: inactive\n    accounts: { helpdesk: u1 }\n",
    );
}

fn env() -> BTreeMap<String, String> {
    BTreeMap::from([("HELPDESK_TOKEN".to_string(), "t0ken".to_string())])
}

/// Neither ESC nor CR (nor any other control but the line feed) in `output`.
fn assert_no_raw_controls(what: &str, output: &str) {
    assert!(
        !output.chars().any(|c| c.is_control() && c != '\n'),
        "{what} holds a raw control character: {output:?}"
    );
}

#[tokio::test]
async fn a_providers_hostile_message_never_reaches_stderr_raw() {
    let dir = tempfile::tempdir().expect("temp dir");
    folder(dir.path(), &hostile_provider());
    for args in [
        &["apply", "-vv"][..],
        &["apply", "--log-format", "json", "-vv"][..],
        &["plan", "-vv"][..],
    ] {
        let run: Run = run_roster(dir.path(), args, &env()).await;
        assert_no_raw_controls(&format!("stderr of {args:?}"), &run.stderr);
        assert_no_raw_controls(&format!("stdout of {args:?}"), &run.stdout);
        if args[0] == "apply" {
            assert_eq!(run.code, 1, "{run:?}");
            assert!(
                run.stderr.contains("forged: all accounts converged"),
                "the message is shown, escaped: {run:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_hostile_file_name_is_escaped_in_validation_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    folder(dir.path(), "http://127.0.0.1:9");
    write(
        &dir.path().join("desired-state/evil\u{1b}[2J\rname.yaml"),
        "users:\n  - name: erin\n    stauts: inactive\n",
    );
    for args in [
        &["validate"][..],
        &["validate", "--log-format", "json"][..],
        &["plan"][..],
    ] {
        let run = run_roster(dir.path(), args, &env()).await;
        assert_eq!(run.code, 1, "{run:?}");
        assert_no_raw_controls(&format!("stderr of {args:?}"), &run.stderr);
        assert!(run.stderr.contains("stauts"), "{run:?}");
    }
    let run = run_roster(dir.path(), &["validate"], &env()).await;
    assert!(
        run.stderr.contains(r"evil\u{1b}[2J\rname.yaml"),
        "the name is shown with its escapes: {run:?}"
    );
}

#[tokio::test]
async fn nothing_but_the_result_is_written_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("temp dir");
    folder(dir.path(), &hostile_provider());
    let run = run_roster(dir.path(), &["plan"], &env()).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("georg"), "{run:?}");
    assert_eq!(run.stderr, "", "no progress in a pipe");
}
