//! `GET /stream/{station}.opus` and `GET /stream/{station}.mp3`: the station's compressed feed as
//! an endless HTTP response, the way Icecast serves a mount, for `<audio>`, VLC, ffmpeg, radios.
//!
//! Headers: `Content-Type`, `Cache-Control: no-cache`, `icy-name`, `icy-description`, `icy-br`,
//! and for MP3 `icy-metaint` when the client sent `Icy-MetaData: 1` (then a metadata block with
//! `StreamTitle` follows every [`ICY_METAINT`] bytes of audio; Ogg carries its title in OpusTags,
//! as with Icecast). No `Content-Length`. The burst goes out as one write and the live audio in
//! batches of [`crate::compressed::HTTP_BATCH_UNITS`] units (0.5 s), so a listener costs a few
//! writes a second. Each listener has a task that forwards the feed into a bounded queue read by
//! the response body: a listener behind the feed skips ahead, one whose queue stays full for
//! [`SEND_TIMEOUT`] is dropped.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut as _, Bytes, BytesMut};
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc, watch};

use crate::compressed::{HttpItem, HttpSubscription};
use crate::config::{CLIENT_QUEUE, SEND_TIMEOUT};
use crate::encode::Codec;
use crate::server::AppState;
use crate::shutdown::Phase;

/// Audio bytes between two ICY metadata blocks (MP3 with `Icy-MetaData: 1`).
pub const ICY_METAINT: usize = 16_000;

/// The handler of `/stream/{file}`.
pub async fn serve(
    State(app): State<AppState>,
    Path(file): Path<String>,
    request_headers: HeaderMap,
) -> Response {
    let Some((name, codec)) = file
        .rsplit_once('.')
        .and_then(|(name, ext)| Some((name, Codec::from_extension(ext)?)))
    else {
        return (
            StatusCode::NOT_FOUND,
            "expected /stream/{station}.opus or /stream/{station}.mp3\n",
        )
            .into_response();
    };
    if *app.phase.borrow() != Phase::Running {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let Some(station) = app.directory.find(name) else {
        return (StatusCode::NOT_FOUND, "no such station\n").into_response();
    };
    let Ok(permit) = Arc::clone(&app.connections).try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    let subscription = match app.compressed.subscribe_http(&station, codec).await {
        Ok(subscription) => subscription,
        Err(error) => {
            tracing::error!(station = name, %error, "cannot start an encoder");
            return (StatusCode::INTERNAL_SERVER_ERROR, "encoder unavailable\n").into_response();
        }
    };
    let wants_icy = codec == Codec::Mp3
        && request_headers
            .get("icy-metadata")
            .is_some_and(|v| v.as_bytes().trim_ascii() == b"1");
    let (tx, rx) = mpsc::channel::<Bytes>(CLIENT_QUEUE);
    let title = format!("Auralis - {}", station.name);
    tokio::spawn(forward(
        subscription,
        tx,
        app.phase.clone(),
        permit,
        wants_icy.then(|| IcyInserter::new(&title)),
    ));
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    }));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(codec.content_type()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let ascii_name: String = station
        .name
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("Auralis - {ascii_name}")) {
        headers.insert("icy-name", v);
    }
    headers.insert(
        "icy-description",
        HeaderValue::from_static("Generative ambient music, composed and synthesized live"),
    );
    headers.insert("icy-br", HeaderValue::from(codec.kbps()));
    headers.insert("icy-pub", HeaderValue::from_static("0"));
    if wants_icy {
        headers.insert("icy-metaint", HeaderValue::from(ICY_METAINT));
    }
    response
}

/// One listener's forwarding task: initial burst, then live units, until the feed ends, the
/// client leaves or stalls, or the gateway closes.
async fn forward(
    mut sub: HttpSubscription,
    tx: mpsc::Sender<Bytes>,
    mut phase: watch::Receiver<Phase>,
    _permit: OwnedSemaphorePermit,
    mut icy: Option<IcyInserter>,
) {
    let mut send = async |bytes: Bytes| -> bool {
        let bytes = match &mut icy {
            Some(icy) => icy.insert(&bytes),
            None => bytes,
        };
        matches!(tx.send_timeout(bytes, SEND_TIMEOUT).await, Ok(()))
    };
    if !send(std::mem::take(&mut sub.burst)).await {
        return;
    }
    loop {
        let item = tokio::select! {
            item = sub.batches.recv() => item,
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Closing {
                    return;
                }
                continue;
            }
        };
        match item {
            Ok(HttpItem::Data(batch)) => {
                if !send(batch).await {
                    return;
                }
            }
            Ok(HttpItem::End) | Err(broadcast::error::RecvError::Closed) => return,
            // Whole batches of whole units: skipping some keeps the stream decodable.
            Err(broadcast::error::RecvError::Lagged(_)) => {}
        }
    }
}

/// Interleaves ICY metadata blocks into an MP3 byte stream every [`ICY_METAINT`] bytes.
#[derive(Debug)]
struct IcyInserter {
    /// Audio bytes still to send before the next block.
    until_block: usize,
    /// The first block (the title); later blocks are empty (a single zero byte: unchanged).
    title_block: Option<Bytes>,
}

impl IcyInserter {
    fn new(title: &str) -> Self {
        let clean: String = title
            .chars()
            .filter(|&c| c != '\'' && c != ';' && c.is_ascii() && !c.is_ascii_control())
            .collect();
        let text = format!("StreamTitle='{clean}';");
        let blocks = text.len().div_ceil(16).min(255);
        let mut block = BytesMut::with_capacity(1 + blocks * 16);
        block.put_u8(blocks as u8);
        block.put_slice(&text.as_bytes()[..text.len().min(blocks * 16)]);
        block.resize(1 + blocks * 16, 0);
        Self {
            until_block: ICY_METAINT,
            title_block: Some(block.freeze()),
        }
    }

    fn insert(&mut self, mut audio: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(audio.len() + 64);
        while audio.len() >= self.until_block {
            out.put_slice(&audio[..self.until_block]);
            audio = &audio[self.until_block..];
            match self.title_block.take() {
                Some(block) => out.put_slice(&block),
                None => out.put_u8(0),
            }
            self.until_block = ICY_METAINT;
        }
        out.put_slice(audio);
        self.until_block -= audio.len();
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icy_blocks_land_every_metaint_bytes() {
        let mut icy = IcyInserter::new("Auralis - focus");
        let mut out = Vec::new();
        for _ in 0..5 {
            out.extend_from_slice(&icy.insert(&[7u8; 10_000]));
        }
        // 50,000 audio bytes: blocks after 16,000, 32,000 and 48,000.
        let first = out[ICY_METAINT] as usize * 16;
        assert!(out[ICY_METAINT + 1..].starts_with(b"StreamTitle='Auralis - focus';"));
        let second = ICY_METAINT + 1 + first + ICY_METAINT;
        assert_eq!(out[second], 0);
        assert_eq!(out.len(), 50_000 + 1 + first + 1 + 1);
    }
}
