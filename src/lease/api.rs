//! The three calls of the Kubernetes `coordination.k8s.io/v1` Lease API that leader
//! election needs (GET, create, replace), over the shared HTTP stack (`reqwest` with
//! rustls), with in-cluster configuration from the pod's service account.
//!
//! Optimistic concurrency is the API server's: a replace carries the
//! `metadata.resourceVersion` it read, and a stale one is refused with 409 Conflict, so
//! two candidates can never both believe they took the same lease.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where the kubelet mounts the pod's service-account token and the cluster CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A Lease object. Fields Roster does not use are kept (`extra`) so that a replace
/// never drops what another tool put on the object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    #[serde(rename = "apiVersion", default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: LeaseSpec,
}

fn api_version() -> String {
    "coordination.k8s.io/v1".into()
}

fn kind() -> String {
    "Lease".into()
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(
        rename = "resourceVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_version: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `spec` of a Lease; times are RFC 3339 with microseconds (`MicroTime`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<u64>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl LeaseSpec {
    /// The holder, if any: an absent or empty `holderIdentity` means released.
    pub fn holder(&self) -> Option<&str> {
        self.holder_identity.as_deref().filter(|h| !h.is_empty())
    }

    /// When the lease expires: `renewTime + leaseDurationSeconds`. `None` when either is
    /// missing or unreadable, which a candidate treats as expired.
    pub fn expires_at(&self) -> Option<SystemTime> {
        let renewed = humantime::parse_rfc3339_weak(self.renew_time.as_deref()?).ok()?;
        Some(renewed + Duration::from_secs(self.lease_duration_seconds?))
    }
}

/// The `MicroTime` of `at`, as the API server writes it.
pub fn micro_time(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

/// Why a Lease API call failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseApiError {
    /// 409: a stale `resourceVersion` on replace, or the lease already exists on create.
    #[error("conflict: the lease changed since it was read")]
    Conflict,
    #[error("the Kubernetes API answered {status} for {what}: {body}")]
    Status {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("cannot reach the Kubernetes API for {what}: {error}")]
    Transport {
        what: &'static str,
        error: reqwest::Error,
    },
    #[error("the Kubernetes API sent an unreadable lease: {0}")]
    Decode(serde_json::Error),
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "no Kubernetes API configured: KUBERNETES_SERVICE_HOST is not set (leader election \
         needs to run in a pod, with a service account allowed to get, create and update \
         leases in its namespace)"
    )]
    NotInCluster,
    #[error("cannot build the HTTP client for the Kubernetes API: {0}")]
    Client(reqwest::Error),
}

/// How to reach the API server.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// e.g. `https://10.0.0.1:443`, without a trailing slash.
    pub base_url: String,
    /// Re-read before every call: the kubelet rotates projected tokens.
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle of the API server's certificate.
    pub ca_file: Option<PathBuf>,
}

impl ApiConfig {
    /// In-cluster: `KUBERNETES_SERVICE_HOST`/`_PORT`, the service-account token and CA.
    pub fn in_cluster() -> Result<ApiConfig, LeaseApiError> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .ok_or(LeaseApiError::NotInCluster)?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let dir = Path::new(SERVICE_ACCOUNT_DIR);
        Ok(ApiConfig {
            base_url: format!("https://{host}:{port}"),
            token_file: Some(dir.join("token")),
            ca_file: Some(dir.join("ca.crt")),
        })
    }
}

/// A client for one Lease object.
#[derive(Debug)]
pub struct LeaseApi {
    http: reqwest::Client,
    config: ApiConfig,
    namespace: String,
    name: String,
}

impl LeaseApi {
    /// Every call is bounded: a hung API server must not stall a renewal past the
    /// lease's duration unnoticed.
    pub fn new(
        config: ApiConfig,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<LeaseApi, LeaseApiError> {
        let mut builder = reqwest::Client::builder().timeout(timeout).no_proxy();
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|error| LeaseApiError::Read {
                path: path.clone(),
                error,
            })?;
            let ca = reqwest::Certificate::from_pem(&pem).map_err(LeaseApiError::Client)?;
            builder = builder.add_root_certificate(ca);
        }
        Ok(LeaseApi {
            http: builder.build().map_err(LeaseApiError::Client)?,
            config,
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// `NAMESPACE/NAME`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn collection_url(&self) -> String {
        format!(
            "{}/apis/coordination.k8s.io/v1/namespaces/{}/leases",
            self.config.base_url, self.namespace
        )
    }

    fn object_url(&self) -> String {
        format!("{}/{}", self.collection_url(), self.name)
    }

    fn token(&self) -> Result<Option<Secret>, LeaseApiError> {
        let Some(path) = &self.config.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|error| LeaseApiError::Read {
            path: path.clone(),
            error,
        })?;
        Ok(Some(Secret::new(text.trim())))
    }

    async fn send(
        &self,
        what: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<Lease>, LeaseApiError> {
        let request = match self.token()? {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        };
        let response = request
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|error| LeaseApiError::Transport {
                what,
                error: error.without_url(),
            })?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|error| LeaseApiError::Transport {
                what,
                error: error.without_url(),
            })?;
        match status {
            200 | 201 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(LeaseApiError::Decode),
            404 if what == "get" => Ok(None),
            409 => Err(LeaseApiError::Conflict),
            _ => Err(LeaseApiError::Status {
                what,
                status,
                body: crate::escape::text(&String::from_utf8_lossy(&body[..body.len().min(200)]))
                    .into_owned(),
            }),
        }
    }

    /// The lease, or `None` when it does not exist.
    pub async fn get(&self) -> Result<Option<Lease>, LeaseApiError> {
        self.send("get", self.http.get(self.object_url())).await
    }

    /// Creates the lease; [`LeaseApiError::Conflict`] when it already exists.
    pub async fn create(&self, lease: &Lease) -> Result<Lease, LeaseApiError> {
        let lease = self
            .send("create", self.http.post(self.collection_url()).json(lease))
            .await?;
        lease.ok_or(LeaseApiError::Status {
            what: "create",
            status: 404,
            body: String::new(),
        })
    }

    /// Replaces the lease; [`LeaseApiError::Conflict`] when its `resourceVersion` is stale.
    pub async fn replace(&self, lease: &Lease) -> Result<Lease, LeaseApiError> {
        let lease = self
            .send("replace", self.http.put(self.object_url()).json(lease))
            .await?;
        lease.ok_or(LeaseApiError::Status {
            what: "replace",
            status: 404,
            body: String::new(),
        })
    }

    /// A new Lease object for this client's namespace and name.
    pub fn new_lease(&self, spec: LeaseSpec) -> Lease {
        Lease {
            api_version: api_version(),
            kind: kind(),
            metadata: Metadata {
                name: self.name.clone(),
                namespace: Some(self.namespace.clone()),
                ..Metadata::default()
            },
            spec,
        }
    }
}
