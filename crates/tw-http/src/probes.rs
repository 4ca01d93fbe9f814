//! `/healthz`, `/readyz` and `/metrics` (and the further paths a server serves them at).

use axum::Json;
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};
use std::sync::Arc;

/// The answer of a readiness check.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    pub ready: bool,
    /// Extra JSON merged into the `/readyz` body (e.g. per-profile state). Must be secret-free.
    pub detail: Value,
}

/// Decides readiness at each `/readyz` request.
pub type ReadinessFn = Arc<dyn Fn() -> Readiness + Send + Sync>;
/// Renders the Prometheus text exposition at each `/metrics` request.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// The probes of one server: liveness (`{"status":"ok"}`, 200 while the process serves),
/// readiness (200 or 503 from the [`ReadinessFn`]) and, when given, `/metrics`; each answer
/// `Cache-Control: no-store` but the metrics text. Liveness and readiness are at `/healthz` and
/// `/readyz`, and at any further paths a server has always served them at ([`Probes::also_at`]).
#[derive(Clone)]
pub struct Probes {
    readiness: ReadinessFn,
    metrics: Option<MetricsRender>,
    health_paths: Vec<String>,
    ready_paths: Vec<String>,
}

impl Probes {
    pub fn new(readiness: ReadinessFn) -> Self {
        Self {
            readiness,
            metrics: None,
            health_paths: vec!["/healthz".to_owned()],
            ready_paths: vec!["/readyz".to_owned()],
        }
    }

    /// Serves `/metrics` with this renderer (none: no such route).
    pub fn metrics(mut self, render: Option<MetricsRender>) -> Self {
        self.metrics = render;
        self
    }

    /// Serves liveness at `health` and readiness at `ready` too.
    pub fn also_at(mut self, health: &str, ready: &str) -> Self {
        self.health_paths.push(health.to_owned());
        self.ready_paths.push(ready.to_owned());
        self
    }

    /// The routes, for any router state.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let mut router = Router::new();
        for path in &self.health_paths {
            router = router.route(
                path,
                get(|| async { no_store(Json(json!({"status": "ok"}))) }),
            );
        }
        for path in &self.ready_paths {
            let readiness = self.readiness.clone();
            router = router.route(
                path,
                get(move || {
                    let r = readiness();
                    async move { readyz(r) }
                }),
            );
        }
        if let Some(render) = self.metrics {
            router = router.route(
                "/metrics",
                get(move || {
                    let text = render();
                    async move {
                        (
                            [(
                                CONTENT_TYPE,
                                HeaderValue::from_static(
                                    "text/plain; version=0.0.4; charset=utf-8",
                                ),
                            )],
                            text,
                        )
                    }
                }),
            );
        }
        router
    }
}

/// Routes `/healthz` (200 while the process serves), `/readyz` (200 or 503 from `readiness`)
/// and, when given, `/metrics`.
pub fn probes_router(readiness: ReadinessFn, metrics: Option<MetricsRender>) -> Router {
    Probes::new(readiness).metrics(metrics).router()
}

fn readyz(r: Readiness) -> Response {
    let mut body = json!({ "ready": r.ready });
    if let (Value::Object(out), Value::Object(extra)) = (&mut body, r.detail) {
        for (k, v) in extra {
            out.entry(k).or_insert(v);
        }
    }
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    no_store((status, Json(body)))
}

fn no_store(r: impl IntoResponse) -> Response {
    let mut r = r.into_response();
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tower::ServiceExt;

    async fn get_path(router: &Router, path: &str) -> (StatusCode, String) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = crate::body_bytes(response).await;
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn readyz_follows_the_closure_and_healthz_does_not() {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let router = probes_router(
            Arc::new(move || Readiness {
                ready: f.load(Ordering::SeqCst),
                detail: json!({"profiles": {"a": "waiting"}}),
            }),
            Some(Arc::new(|| "tokenwarden_up 1\n".to_owned())),
        );
        let (status, body) = get_path(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["ready"], false);
        assert_eq!(v["profiles"]["a"], "waiting");
        assert_eq!(get_path(&router, "/healthz").await.0, StatusCode::OK);

        flag.store(true, Ordering::SeqCst);
        assert_eq!(get_path(&router, "/readyz").await.0, StatusCode::OK);
        assert_eq!(
            get_path(&router, "/metrics").await,
            (StatusCode::OK, "tokenwarden_up 1\n".to_owned())
        );
    }

    #[tokio::test]
    async fn metrics_route_only_when_a_renderer_is_given() {
        let router = probes_router(
            Arc::new(|| Readiness {
                ready: true,
                detail: Value::Null,
            }),
            None,
        );
        assert_eq!(get_path(&router, "/metrics").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn further_paths_answer_as_the_standard_ones() {
        let router: Router = Probes::new(Arc::new(|| Readiness {
            ready: false,
            detail: json!({"storage": {"reachable": false}}),
        }))
        .also_at("/health", "/health/ready")
        .router();
        for path in ["/healthz", "/health"] {
            assert_eq!(
                get_path(&router, path).await,
                (StatusCode::OK, r#"{"status":"ok"}"#.to_owned())
            );
        }
        for path in ["/readyz", "/health/ready"] {
            let (status, body) = get_path(&router, path).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            let v: Value = serde_json::from_str(&body).expect("json");
            assert_eq!(v, json!({"ready": false, "storage": {"reachable": false}}));
        }
    }
}
