//! What the request log keeps of a request: everything a test wants to assert, never a secret
//! (credentials are masked by header and parameter name, and the configured token is scrubbed
//! from anything else a client might have put it in).

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use percent_encoding::percent_decode_str;

use super::{ApiRequest, Class, RecordedRequest, Shared};

/// Header values that are secrets whatever their scheme.
const SECRET_HEADERS: [&str; 4] = ["cookie", "proxy-authorization", "x-api-key", "set-cookie"];
/// Query or form parameter names whose values are secrets.
const SECRET_PARAMS: [&str; 6] = [
    "client_secret",
    "access_token",
    "token",
    "password",
    "api_key",
    "refresh_token",
];

/// The log entry for a request, secrets removed.
pub(super) fn recorded(
    sim: &Shared,
    req: &ApiRequest,
    class: Class,
    status: u16,
) -> RecordedRequest {
    let secret = sim.config.token.as_str();
    RecordedRequest {
        method: req.method.to_string(),
        path: req.path.clone(),
        query: req
            .query
            .as_deref()
            .map(|q| scrub(&redact_params(q), secret)),
        headers: redacted_headers(&req.headers, secret),
        body: recorded_body(req, secret),
        is_write: class == Class::Write,
        status,
    }
}

fn redacted_headers(headers: &HeaderMap, secret: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        let value = if name == "authorization" {
            let scheme = value
                .to_str()
                .ok()
                .and_then(|v| v.split_whitespace().next())
                .unwrap_or("");
            format!("{scheme} ***").trim_start().to_string()
        } else if SECRET_HEADERS.contains(&name) {
            "***".to_string()
        } else {
            scrub(&String::from_utf8_lossy(value.as_bytes()), secret)
        };
        out.entry(name.to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

fn recorded_body(req: &ApiRequest, secret: &str) -> Option<serde_json::Value> {
    if req.body.is_empty() {
        return None;
    }
    let content_type = req.header("content-type").unwrap_or("");
    let text = String::from_utf8_lossy(&req.body);
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let form = scrub(&redact_params(&text), secret);
        return Some(serde_json::json!({ "form": form }));
    }
    match serde_json::from_slice::<serde_json::Value>(&req.body) {
        Ok(mut value) => {
            redact_json(&mut value, secret);
            Some(value)
        }
        Err(_) => Some(serde_json::json!({ "raw": scrub(&text, secret) })),
    }
}

/// Replaces the values of secret parameters in a `k=v&k=v` string, leaving the rest raw.
fn redact_params(raw: &str) -> String {
    raw.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_name(&percent_decode_str(key).decode_utf8_lossy()) => {
                format!("{key}=***")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Masks secret-named fields and the configured secret inside any string.
fn redact_json(value: &mut serde_json::Value, secret: &str) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret_name(key) {
                    *v = serde_json::Value::String("***".to_string());
                } else {
                    redact_json(v, secret);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact_json(v, secret)),
        serde_json::Value::String(text) => *text = scrub(text, secret),
        _ => {}
    }
}

fn is_secret_name(name: &str) -> bool {
    SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// Last line of defence: the configured secret never reaches the log, wherever a client put it.
fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_json_are_masked_by_name_and_value() {
        assert_eq!(
            redact_params("a=1&client_secret=x&b=2&client%5Fsecret=y"),
            "a=1&client_secret=***&b=2&client%5Fsecret=***"
        );
        let mut body = serde_json::json!({"password": "p", "nested": [{"note": "k=tok"}]});
        redact_json(&mut body, "tok");
        assert_eq!(
            body,
            serde_json::json!({"password": "***", "nested": [{"note": "k=***"}]})
        );
        assert_eq!(scrub("abc", ""), "abc");
    }
}
