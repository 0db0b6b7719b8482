//! A real webhook receiver for tests: an axum server on `127.0.0.1:0` that
//! records every request and answers as the test tells it to (fail, succeed
//! or hang until released).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One request the receiver got, and what it answered.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }

    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.answered)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answer 200.
    Accept,
    /// Answer 503.
    Fail,
    /// Hold the request open until [`Receiver::release`].
    Hang,
}

struct Shared {
    requests: Mutex<Vec<Received>>,
    mode: Mutex<Mode>,
    /// Requests still to fail before the mode applies.
    fail_first: AtomicUsize,
    /// Requests that reached the handler (including those still hanging).
    arrived: AtomicUsize,
    released: watch::Sender<bool>,
}

pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Receiver {
    pub async fn start(mode: Mode) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let (released, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            mode: Mutex::new(mode),
            fail_first: AtomicUsize::new(0),
            arrived: AtomicUsize::new(0),
            released,
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            shared,
            server,
        }
    }

    /// Fail the next `n` requests with 503, then answer by the mode.
    pub fn fail_first(&self, n: usize) {
        self.shared.fail_first.store(n, Ordering::SeqCst);
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().expect("mode") = mode;
    }

    /// Lets every hanging request (and later ones) answer 200.
    pub fn release(&self) {
        self.set_mode(Mode::Accept);
        self.shared.released.send_replace(true);
    }

    /// Requests that reached the receiver so far, answered or not.
    pub fn arrived(&self) -> usize {
        self.shared.arrived.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.requests.lock().expect("requests").clone()
    }

    /// Requests answered with 2xx.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(Received::succeeded)
            .collect()
    }

    /// Waits until `n` requests were accepted; returns them.
    pub async fn wait_accepted(&self, n: usize) -> Vec<Received> {
        crate::support::wait_for(&format!("{n} accepted webhook requests"), || async {
            let accepted = self.accepted();
            (accepted.len() >= n).then_some(accepted)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.released.send_replace(true);
        self.server.abort();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    shared.arrived.fetch_add(1, Ordering::SeqCst);
    let failing_first = shared
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let mode = *shared.mode.lock().expect("mode");
    let status = if failing_first || mode == Mode::Fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        if mode == Mode::Hang {
            let mut released = shared.released.subscribe();
            let _ = released.wait_for(|r| *r).await;
        }
        StatusCode::OK
    };
    shared.requests.lock().expect("requests").push(Received {
        headers,
        body,
        answered: status.as_u16(),
    });
    status
}
