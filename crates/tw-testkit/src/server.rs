//! A small HTTP server for tests (an upstream, a stub API), on 127.0.0.1 with an OS-chosen port.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;

/// An HTTP client for tests: never through a proxy, every request bounded by `timeout` (so a
/// bug fails the test instead of hanging it).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("HTTP client")
}

/// Serves an axum router until dropped.
pub struct TestServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TestServer {
    pub async fn start(app: axum::Router) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a test server");
        let addr = listener.local_addr().expect("test server address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestServer { addr, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
