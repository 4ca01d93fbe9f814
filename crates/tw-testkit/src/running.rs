//! A server under test, running in its own task until told to stop.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The shutdown signal handed to the server: resolves when [`Running::stop`] is called.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// How long [`Running::stop`] waits for the server to finish.
pub const STOP_LIMIT: Duration = Duration::from_secs(30);

/// A spawned server (`run(shutdown)` of an agent, a gateway, ...). [`Running::stop`] signals it
/// and asserts a clean exit; dropping it without `stop` aborts the task.
pub struct Running<E: Debug + Send + 'static> {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), E>>>,
}

impl<E: Debug + Send + 'static> Running<E> {
    /// Spawns `run(shutdown)` on the current runtime.
    pub fn spawn<Fut>(run: impl FnOnce(Shutdown) -> Fut) -> Self
    where
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async {
            let _ = rx.await;
        });
        Self {
            stop: Some(tx),
            task: Some(tokio::spawn(run(shutdown))),
        }
    }

    /// Signals shutdown and waits (at most [`STOP_LIMIT`]); panics unless the server ended `Ok`.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STOP_LIMIT, task)
                .await
                .expect("the server stops in time")
                .expect("the server task did not panic")
                .expect("the server ran cleanly");
        }
    }
}

impl<E: Debug + Send + 'static> Drop for Running<E> {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
