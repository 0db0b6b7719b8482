//! The baseline of the authenticated-read benchmark: the same route and a
//! response of the same shape as the hub's `GET /v1/channels/{id}`, answered by
//! a bare axum handler with no authentication, middleware or database.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use serde_json::{Value, json};

pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let app = Router::new().route("/v1/channels/{id}", get(channel));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("bare server listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn channel(Path(id): Path<String>) -> axum::Json<Value> {
    axum::Json(json!({
        "id": id,
        "kind": "web",
        "name": "Bench web",
        "location_id": null,
        "created_at": "2026-01-01T00:00:00Z",
    }))
}
