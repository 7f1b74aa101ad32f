//! The HTTP side: the router, the player page, `/healthz` and `/api/status`.

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;

use crate::server::AppState;
use crate::shutdown::Phase;

/// The player page built into the binary, so one file is enough to deploy.
pub const EMBEDDED_INDEX_HTML: &str = include_str!("../../client/index.html");

/// Every route of the gateway.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/healthz", get(healthz))
        .route("/api/status", get(status))
        .route("/ws", get(crate::ws::upgrade))
        .route("/ws/stream", get(crate::ws::upgrade))
        .with_state(state)
}

async fn index(State(app): State<AppState>) -> Response {
    match &app.client_dir {
        None => Html(EMBEDDED_INDEX_HTML).into_response(),
        Some(dir) => serve_file(&dir.join("index.html")).await,
    }
}

async fn serve_file(path: &Path) -> Response {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => Html(text).into_response(),
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "cannot read the player page");
            (StatusCode::NOT_FOUND, "player page not found\n").into_response()
        }
    }
}

async fn healthz() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], "ok")
}

async fn status(State(app): State<AppState>) -> impl IntoResponse {
    let phase = *app.phase.borrow();
    let stations: Vec<_> = app.directory.all().iter().map(|s| s.status()).collect();
    let active = app.max_connections as usize - app.connections.available_permits();
    let uptime: Duration = app.started.elapsed();
    Json(json!({
        "service": "streamd",
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime_s": uptime.as_secs_f64(),
        "state": match phase {
            Phase::Running => "running",
            Phase::Draining { .. } => "draining",
            Phase::Closing => "closing",
        },
        "control_block": app.directory.control_attached(),
        "connections": { "active": active, "max": app.max_connections },
        "stations": stations,
    }))
}
