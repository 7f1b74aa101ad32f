//! Tests of the compressed feeds: priming, sharing, bursts and HTTP batches.

use super::*;
use crate::protocol::Tier;
use shm_proto::CHUNK_SAMPLES;

fn chunk(seq: u64) -> Arc<EncodedChunk> {
    let mut samples = [0i16; CHUNK_SAMPLES];
    for (i, s) in samples.iter_mut().enumerate() {
        *s = ((i * 37 + seq as usize * 11) % 2_000) as i16;
    }
    Arc::new(EncodedChunk::encode(
        "focus",
        seq,
        seq * 100_000_000,
        &samples,
    ))
}

#[test]
fn priming_reaches_back_to_resume_from_and_at_least_a_burst() {
    let history: Vec<_> = (100..140).map(chunk).collect();
    assert_eq!(prime_start(&history, None), 40 - BURST_UNITS);
    assert_eq!(prime_start(&history, Some(110)), 10);
    assert_eq!(prime_start(&history, Some(50)), 0, "older: all there is");
    assert_eq!(prime_start(&history, Some(139)), 40 - BURST_UNITS);
    assert_eq!(prime_start(&history[..3], None), 0);
    assert_eq!(prime_start(&[], Some(7)), 0);
}

#[test]
fn an_opus_unit_is_one_frame_shared_by_clients_with_the_same_fields() {
    let mut encoder = ChunkEncoder::new(Codec::Opus).unwrap();
    let c = chunk(42);
    let encoded = encoder.encode_unit(c.pcm_le()).unwrap();
    let packets = encoded.packets.clone();
    let unit = FeedUnit::new(c.seq, c.publish_unix_ns, encoded);
    let frame = unit.ws_frame_for(7, Tier::Stable, true).unwrap();
    assert_eq!(&frame[0..4], b"AUR1");
    assert_eq!(u32::from_le_bytes(frame[4..8].try_into().unwrap()), 40);
    assert_eq!(u64::from_le_bytes(frame[8..16].try_into().unwrap()), 42);
    let ts = f64::from_le_bytes(frame[16..24].try_into().unwrap());
    assert!((ts - 4.2).abs() < 1e-9, "{ts}");
    assert_eq!(
        u32::from_le_bytes(frame[24..28].try_into().unwrap()),
        48_000
    );
    assert_eq!(u16::from_le_bytes(frame[28..30].try_into().unwrap()), 2);
    assert_eq!(u16::from_le_bytes(frame[30..32].try_into().unwrap()), 2);
    assert_eq!(u16::from_le_bytes(frame[32..34].try_into().unwrap()), 100);
    assert_eq!(frame[34], Tier::Stable.code());
    assert_eq!(u32::from_le_bytes(frame[36..40].try_into().unwrap()), 7);
    assert_eq!(&frame[40..], &packets[..]);
    // The same fields: the very same bytes; others: another frame, same payload.
    let again = unit.ws_frame_for(7, Tier::Stable, true).unwrap();
    assert_eq!(again.as_ptr(), frame.as_ptr());
    let other = unit.ws_frame_for(3, Tier::Normal, true).unwrap();
    assert_ne!(other.as_ptr(), frame.as_ptr());
    assert_eq!((other[34], other[36]), (Tier::Normal.code(), 3));
    assert_eq!(&other[40..], &packets[..]);
    // MP3 has no WebSocket frame.
    let mut mp3 = ChunkEncoder::new(Codec::Mp3).unwrap();
    let unit = FeedUnit::new(1, 0, mp3.encode_unit(c.pcm_le()).unwrap());
    assert!(unit.ws_frame_for(0, Tier::Normal, true).is_none());
}

/// One feed per station and codec whatever the listener count; its history is as long as
/// the station's; the HTTP burst is the header and the last [`BURST_UNITS`] only; a new
/// feed primes back to the first listener's `resume_from`.
#[tokio::test]
async fn listeners_share_one_feed_that_primes_and_keeps_the_station_s_history() {
    let station = Station::new(0, "focus");
    for seq in 0..40 {
        station.publish(chunk(seq));
    }
    let streams = Arc::new(CompressedStreams::default());
    let a = streams
        .subscribe(&station, Codec::Opus, Some(10))
        .await
        .unwrap();
    let seqs: Vec<u64> = a.history.iter().map(|u| u.seq).collect();
    assert_eq!(
        seqs,
        (10..40).collect::<Vec<_>>(),
        "primed from resume_from"
    );
    let http = streams.subscribe_http(&station, Codec::Opus).await.unwrap();
    let pages = ogg_pages(&http.burst);
    assert_eq!(
        pages.len(),
        2 + BURST_UNITS,
        "OpusHead and OpusTags pages, then 15 pages"
    );
    let tail: Vec<&[u8]> = a.history[a.history.len() - BURST_UNITS..]
        .iter()
        .map(|u| &u.stream[..])
        .collect();
    assert_eq!(&pages[2..], &tail[..], "the burst is the newest units");
    drop(http);
    let mut b = streams
        .subscribe(&station, Codec::Opus, None)
        .await
        .unwrap();
    assert_eq!(streams.feeds().len(), 1);
    assert_eq!(a.feed().listeners(), 2);
    assert!(Arc::ptr_eq(a.feed(), b.feed()));

    station.publish(chunk(40));
    let item = tokio::time::timeout(Duration::from_secs(5), b.items.recv())
        .await
        .unwrap()
        .unwrap();
    let FeedItem::Unit(unit) = item else {
        panic!("expected a unit, got {item:?}");
    };
    assert_eq!(unit.seq, 40);
    assert_eq!(a.feed().latest_seq(), Some(40));
    assert_eq!(
        station.stats.encode_histogram(EncodeFormat::Opus).count(),
        31
    );
    assert_eq!(a.feed().units.load(Ordering::Relaxed), 31);
    let status = streams.status();
    assert_eq!((status[0].format, status[0].listeners), ("opus", 2));
    assert_eq!(status[0].history, 31);
    drop((a, b));
    assert_eq!(streams.status()[0].listeners, 0);
}

/// The Ogg pages of `bytes`, each whole (header and segments).
fn ogg_pages(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut pages = Vec::new();
    while bytes.len() >= 27 {
        assert_eq!(&bytes[..4], b"OggS", "a page starts here");
        let segments = usize::from(bytes[26]);
        let len = 27
            + segments
            + bytes[27..27 + segments]
                .iter()
                .map(|&l| usize::from(l))
                .sum::<usize>();
        pages.push(&bytes[..len]);
        bytes = &bytes[len..];
    }
    assert!(bytes.is_empty(), "no partial page");
    pages
}

/// HTTP listeners get the live units [`HTTP_BATCH_UNITS`] at a time, each batch the units'
/// pages in order, continuing the burst without gap or duplicate, also for a listener that
/// joins between two batches.
#[tokio::test]
async fn http_listeners_get_whole_batches_that_continue_the_burst() {
    let station = Station::new(0, "focus");
    for seq in 0..20 {
        station.publish(chunk(seq));
    }
    let streams = Arc::new(CompressedStreams::default());
    let ws = streams
        .subscribe(&station, Codec::Opus, None)
        .await
        .unwrap();
    let mut early = streams.subscribe_http(&station, Codec::Opus).await.unwrap();
    for seq in 20..22 {
        station.publish(chunk(seq));
    }
    // Wait until the feed has encoded 21 (it has then batched nothing yet: 2 < 5).
    for _ in 0..500 {
        if ws.feed().latest_seq() == Some(21) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ws.feed().latest_seq(), Some(21));
    let mut late = streams.subscribe_http(&station, Codec::Opus).await.unwrap();
    assert_eq!(
        ogg_pages(&late.burst)[2..],
        ogg_pages(&early.burst)[2..],
        "a joiner between batches gets the same burst: the unbatched units come in the batch"
    );
    for seq in 22..29 {
        station.publish(chunk(seq));
    }
    let mut batches = Vec::new();
    for sub in [&mut early, &mut late] {
        let item = tokio::time::timeout(Duration::from_secs(5), sub.batches.recv())
            .await
            .unwrap()
            .unwrap();
        let HttpItem::Data(batch) = item else {
            panic!("expected data, got {item:?}");
        };
        batches.push(batch);
    }
    let units: Vec<Arc<FeedUnit>> = {
        let history = lock(&ws.feed().history);
        history.units.iter().cloned().collect()
    };
    let page_of = |seq: u64| &units.iter().find(|u| u.seq == seq).unwrap().stream[..];
    let want: Vec<&[u8]> = (20..25).map(page_of).collect();
    for (batch, sub) in batches.iter().zip([&mut early, &mut late]) {
        assert_eq!(ogg_pages(batch), want, "units 20..25 in one batch");
        assert!(
            sub.batches.try_recv().is_err(),
            "25..29 are not a batch yet"
        );
    }
}
