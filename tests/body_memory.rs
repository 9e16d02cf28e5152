//! Peak memory of reading one suspend-api list page of 100 users with 256 KB avatars:
//! the adapter drops the avatars while the page streams in, so the page is never held
//! whole. A counting allocator measures the peak of the whole test process.
//!
//! `cargo test --release --test body_memory -- --nocapture` prints the numbers.

use roster::provider::http::{
    ApiRequest, BearerToken, HttpClient, HttpConfig, NoObserver, RetryPolicy,
};
use roster::provider::AccountObservation;
use roster::secret::Secret;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const USERS: usize = 100;
const AVATAR: usize = 256 * 1024;

/// A page of `USERS` users, each with an avatar data URI of `AVATAR` bytes.
fn page() -> bytes::Bytes {
    let avatar = format!("data:image/png;base64,{}", "QUJD".repeat(AVATAR / 4));
    let users: Vec<String> = (0..USERS)
        .map(|i| {
            format!(
                r#"{{"id":"user-{i}","email":"u{i}@example.com","name":"User {i}","roles":["member"],"auth_provider":"local","active":{},"email_verified":true,"is_owner":false,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","avatar_base64":"{avatar}"}}"#,
                i % 3 != 0
            )
        })
        .collect();
    bytes::Bytes::from(format!(
        r#"{{"data":[{}],"next_cursor":null}}"#,
        users.join(",")
    ))
}

/// Runs `f` and returns the peak bytes allocated above what was allocated before it.
async fn peak_of<F: std::future::Future>(f: F) -> (F::Output, usize) {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f.await;
    (out, PEAK.load(Ordering::SeqCst).saturating_sub(base))
}

#[tokio::test]
async fn a_page_of_avatars_is_never_held_whole() {
    let body = page();
    let page_bytes = body.len();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = body.clone();
    let router = axum::Router::new().route(
        "/v1/users",
        axum::routing::get(move || {
            let served = served.clone();
            async move { ([("content-type", "application/json")], served) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });

    // The adapter, connected from a real folder.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("providers.yaml"),
        format!("providers:\n  portal:\n    kind: suspend-api\n    base_url: http://{addr}\n    tenant_id: t1\n    auth: {{ bearer_token_file: {} }}\n", dir.path().join("token").display()),
    )
    .unwrap();
    std::fs::write(dir.path().join("token"), "t0ken").unwrap();
    std::fs::write(
        dir.path().join("people.yaml"),
        "users:\n  - name: one\n    status: active\n    accounts:\n      portal: user-1\n",
    )
    .unwrap();
    let desired = roster::desired::load(dir.path(), roster::provider::specs()).unwrap();
    let provider =
        roster::provider::connect(&desired.instances["portal"], Arc::new(NoObserver)).unwrap();
    let accounts = vec!["user-1".to_string(), "user-3".to_string()];
    let (observation, adapter_peak) = peak_of(provider.observe(&accounts)).await;
    let observation = observation.unwrap();
    assert!(
        matches!(observation.accounts.get("user-1"), Some(AccountObservation::Found(a)) if a.status.is_active())
    );
    assert!(
        matches!(observation.accounts.get("user-3"), Some(AccountObservation::Found(a)) if !a.status.is_active())
    );

    // The same page read whole and then parsed with the avatars ignored by serde, as the
    // adapter did before the streaming filter: for comparison only.
    let client = HttpClient::new(HttpConfig {
        instance: "portal".into(),
        base_url: url::Url::parse(&format!("http://{addr}")).unwrap(),
        timeout: Duration::from_secs(30),
        max_concurrency: 1,
        requests_per_second: None,
        credentials: Arc::new(BearerToken(Secret::new("t0ken"))),
        headers: Default::default(),
        query: vec![],
        retry: RetryPolicy::default(),
        observer: Arc::new(NoObserver),
        ca_file: None,
    })
    .unwrap();
    let (whole, whole_peak) = peak_of(async {
        let response = client
            .read(ApiRequest::get(&["v1", "users"]))
            .await
            .unwrap();
        #[derive(serde::Deserialize)]
        struct User {
            #[allow(dead_code)]
            id: String,
        }
        #[derive(serde::Deserialize)]
        struct Page {
            data: Vec<User>,
        }
        Some(
            serde_json::from_slice::<Page>(&response.body)
                .unwrap()
                .data
                .len(),
        )
    })
    .await;
    assert_eq!(whole, Some(USERS));

    let mib = |n: usize| n as f64 / (1024.0 * 1024.0);
    println!(
        "page of {USERS} users with {} KB avatars: {:.1} MiB on the wire; peak extra memory: adapter (avatars skipped while streaming) {:.2} MiB, whole body buffered {:.1} MiB",
        AVATAR / 1024,
        mib(page_bytes),
        mib(adapter_peak),
        mib(whole_peak),
    );
    // The avatars (25 MiB) must never be held: a few MiB of transport buffers at most.
    assert!(
        adapter_peak < 4 * 1024 * 1024,
        "adapter peak {adapter_peak} bytes"
    );
    assert!(
        whole_peak > page_bytes,
        "the comparison read holds the page: {whole_peak}"
    );
}
