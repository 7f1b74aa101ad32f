//! The HTTP side: the router, the web player's files, `/healthz`, `/api/status`, `/api/presets`.

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::server::AppState;
use crate::shutdown::Phase;

/// The web player's files, built into the binary so one file is enough to deploy:
/// (URL path, file name in `client/`, content type, contents).
pub const CLIENT_FILES: [(&str, &str, &str, &str); 4] = [
    (
        "/",
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../client/index.html"),
    ),
    (
        "/player.js",
        "player.js",
        "text/javascript; charset=utf-8",
        include_str!("../../client/player.js"),
    ),
    (
        "/worklet.js",
        "worklet.js",
        "text/javascript; charset=utf-8",
        include_str!("../../client/worklet.js"),
    ),
    (
        "/style.css",
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../client/style.css"),
    ),
];

/// Every route of the gateway.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (index, (path, ..)) in CLIENT_FILES.iter().enumerate() {
        router = router.route(
            path,
            get(move |app: State<AppState>| client_file(app, index)),
        );
    }
    router
        .route(
            "/index.html",
            get(|app: State<AppState>| client_file(app, 0)),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(crate::metrics::serve))
        .route("/api/status", get(status))
        .route("/api/presets", get(presets))
        .route(
            "/api/stations/{id}/params",
            post(crate::operator::set_station_params),
        )
        .route("/ws", get(crate::ws::upgrade))
        .route("/ws/stream", get(crate::ws::upgrade))
        .route("/stream/{file}", get(crate::http_stream::serve))
        .with_state(state)
}

async fn client_file(State(app): State<AppState>, index: usize) -> Response {
    let (_, file, content_type, embedded) = CLIENT_FILES[index];
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    match &app.client_dir {
        None => (headers, embedded).into_response(),
        Some(dir) => match read_file(&dir.join(file)).await {
            Some(text) => (headers, text).into_response(),
            None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
        },
    }
}

async fn read_file(path: &Path) -> Option<String> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => Some(text),
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "cannot read a player file");
            None
        }
    }
}

async fn healthz() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], "ok")
}

async fn presets() -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "max-age=300")],
        Json(json!({ "presets": composer::presets() })),
    )
}

async fn status(State(app): State<AppState>) -> impl IntoResponse {
    let phase = *app.phase.borrow();
    let stations: Vec<_> = app.directory.all().iter().map(|s| s.status()).collect();
    let active = app.max_connections as usize - app.connections.available_permits();
    let uptime: Duration = app.started.elapsed();
    let max_stations = app
        .directory
        .control()
        .map(|c| app.directory.max_stations(&c));
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
        "max_stations": max_stations,
        "stations": stations,
        "feeds": app.compressed.status(),
        "counters": app.stats.snapshot(),
    }))
}
