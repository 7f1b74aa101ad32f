//! The operator API: `POST /api/stations/{id}/params` changes a named station's parameters for
//! everyone listening to it. Guarded by a bearer token (`AURALIS_OPERATOR_TOKEN`) compared in
//! constant time and never logged; without a configured token the API is off (403).

use std::str::FromStr;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use composer::{ParamUpdate, Params};
use serde_json::json;

use crate::params::{is_param_station, params_of};
use crate::server::AppState;

/// The operator's bearer token. `Debug` prints a placeholder so the token never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorToken(String);

impl OperatorToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// Whether `candidate` is this token, in time independent of where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate.as_bytes())
    }
}

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorToken(<redacted>)")
    }
}

impl FromStr for OperatorToken {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the operator token must not be empty".into());
        }
        Ok(Self(s.to_owned()))
    }
}

/// Compares every byte of the longer input whatever the contents, so the time taken reveals at
/// most the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "error": message })),
    )
        .into_response()
}

/// `POST /api/stations/{id}/params` with `Authorization: Bearer <token>` and a
/// [`ParamUpdate`] body: applies it to the named station (all or nothing).
pub async fn set_station_params(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token) = &app.operator_token else {
        return refuse(
            StatusCode::FORBIDDEN,
            "the operator API is disabled: no AURALIS_OPERATOR_TOKEN is configured",
        );
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if !presented.is_some_and(|p| token.matches(p)) {
        app.stats
            .operator_auth_failures
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(station = %id, "operator request with a missing or wrong token");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "missing or wrong bearer token" })),
        )
            .into_response();
    }
    let Some(control) = app.directory.control() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the control block is not available (is composer running?)",
        );
    };
    let Some((index, current)) = params_of(&control, &id) else {
        return refuse(StatusCode::NOT_FOUND, &format!("unknown station {id:?}"));
    };
    if is_param_station(&id) {
        return refuse(
            StatusCode::CONFLICT,
            "this station was created for listeners' parameters and is named by them; its \
             parameters cannot change (listeners move with a \"set\" message instead)",
        );
    }
    let update: ParamUpdate = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(error) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!(
                    "the body must be a JSON object with any of preset, key, mode, bpm, \
                     intensity, seed: {error}"
                ),
            );
        }
    };
    let mut params: Params = current;
    if let Err(error) = params.apply(&update) {
        return refuse(StatusCode::BAD_REQUEST, &error.to_string());
    }
    match control.set_params(index, params.to_station()) {
        Ok(generation) => {
            app.stats.operator_updates.fetch_add(1, Ordering::Relaxed);
            tracing::info!(station = %id, generation, ?params, "operator changed station parameters");
            (
                StatusCode::OK,
                Json(json!({ "station": id, "generation": generation, "params": params })),
            )
                .into_response()
        }
        Err(error) => refuse(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn the_token_never_prints() {
        let t = OperatorToken::new("hunter2");
        assert!(!format!("{t:?}").contains("hunter2"));
        assert!(t.matches("hunter2"));
    }
}
