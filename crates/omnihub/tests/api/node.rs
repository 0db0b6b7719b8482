//! Real `omnihub serve` processes on a test's database, for tests that need
//! several nodes (or a node outside the test process).

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{TestDatabase, WAIT_DEADLINE};

/// The `omnihub` binary, configured for the test database.
pub fn command(db: &TestDatabase, data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_omnihub"));
    command
        .env("OMNIHUB_DATABASE_URL", &db.url)
        .env("OMNIHUB_DATA_DIR", data_dir)
        .env("OMNIHUB_LISTEN", "127.0.0.1:0")
        .env("OMNIHUB_LOG_LEVEL", "warn")
        .env("OMNIHUB_WEBHOOK_RETRY_BASE_MS", "100")
        .env("OMNIHUB_SHUTDOWN_GRACE_SECS", "2")
        // As in `support`: the test receivers listen on loopback, and test
        // clients share one address.
        .env("OMNIHUB_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
        .env("OMNIHUB_AUTH_FAILURES_PER_MINUTE", "100000")
        .env_remove("OMNIHUB_CONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    match &db.schema {
        Some(schema) => command.env("OMNIHUB_DATABASE_SCHEMA", schema),
        None => command.env_remove("OMNIHUB_DATABASE_SCHEMA"),
    };
    command
}

/// A running `omnihub serve`; killed when dropped.
pub struct Node {
    pub child: Child,
    pub base: String,
}

impl Node {
    pub async fn start(db: &TestDatabase, data_dir: &std::path::Path) -> Node {
        Self::start_with(db, data_dir, &[]).await
    }

    /// Starts a node with extra environment variables (settings).
    pub async fn start_with(
        db: &TestDatabase,
        data_dir: &std::path::Path,
        envs: &[(&str, &str)],
    ) -> Node {
        let mut child = command(db, data_dir)
            .envs(envs.iter().copied())
            .arg("serve")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start omnihub serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let announce = tokio::time::timeout(WAIT_DEADLINE, async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(base) = line.strip_prefix("omnihub listening on ") {
                    return base.trim().to_string();
                }
            }
            panic!("omnihub serve exited before listening");
        })
        .await
        .expect("omnihub serve listens in time");
        // Keep draining stdout so the process never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Node {
            child,
            base: announce,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM: the node drains and exits on its own, successfully.
    pub async fn terminate(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("run kill");
        assert!(sent.success());
        let status = tokio::time::timeout(WAIT_DEADLINE, self.child.wait())
            .await
            .expect("the node exits after SIGTERM")
            .expect("wait");
        assert!(status.success(), "exit status {status:?}");
    }
}
