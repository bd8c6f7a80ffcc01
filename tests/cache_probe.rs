//! The plan's cache probe (`CachedOutputs`) answers exactly as `cached_output` does, key by
//! key, past the point where it reads every output at once: recorded outputs whose object is
//! present are cached; records whose object is gone, and keys never recorded, are not.

use render_pipeline::cache::LocalStore;
use render_pipeline::ledger::{Ledger, OutputRow};
use render_pipeline::outputs::{CachedOutputs, POINT_QUERIES, cached_output};
use render_wire::key::Sha256Hex;

/// A state folder with `n` keys: one in three cached, one in three recorded but removed from
/// the store, the rest never recorded.
fn state(n: usize) -> (tempfile::TempDir, Vec<Sha256Hex>) {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let keys: Vec<Sha256Hex> = (0..n).map(|i| Sha256Hex::of(&i.to_le_bytes())).collect();
    for (i, key) in keys.iter().enumerate() {
        if i % 3 == 2 {
            continue;
        }
        let video = format!("video {i}");
        let video_sha = if i % 3 == 0 {
            store.insert_bytes(video.as_bytes()).unwrap()
        } else {
            Sha256Hex::of(video.as_bytes()) // recorded, but its object is not in the store
        };
        let output = OutputRow {
            key: *key,
            video_sha,
            video_bytes: video.len() as u64,
            thumbnail_sha: None,
            video_id: None,
            harvested_at: 0,
        };
        ledger.record_output(&output).unwrap();
    }
    (dir, keys)
}

#[test]
fn the_probe_agrees_with_cached_output_past_its_point_queries() {
    let (dir, keys) = state(POINT_QUERIES * 2 + 50);
    let ledger_path = dir.path().join("ledger.sqlite");
    let open = || {
        (
            Ledger::open(&ledger_path).unwrap(),
            LocalStore::open(dir.path()).unwrap(),
        )
    };
    let (ledger, store) = open();
    let expected: Vec<bool> = keys
        .iter()
        .map(|k| cached_output(&ledger, &store, k).unwrap().is_some())
        .collect();
    assert_eq!(
        expected.iter().filter(|c| **c).count(),
        keys.len().div_ceil(3)
    );

    let lent: &dyn render_pipeline::cache::CacheStorage = &store;
    let borrowed = CachedOutputs::new(&ledger, lent);
    let (owned_ledger, owned_store) = open();
    let owned: std::sync::Arc<dyn render_pipeline::cache::CacheStorage> =
        std::sync::Arc::new(owned_store);
    let prefetched = CachedOutputs::new(owned_ledger, owned.clone()).prefetch(&ledger_path);
    // A ledger past the limit is asked key by key, and answers the same.
    let (big_ledger, _) = open();
    let past_limit = CachedOutputs::new(big_ledger, owned)
        .prefetch_limit(10)
        .prefetch(&ledger_path);
    for (key, cached) in keys.iter().zip(&expected) {
        assert_eq!(borrowed.try_contains(key).unwrap(), *cached, "{key}");
        assert_eq!(prefetched.contains(key), *cached, "{key}");
        assert_eq!(past_limit.contains(key), *cached, "{key}");
    }
}

/// Up to the limit, the outputs are read once, when the plan's keys pass the point queries;
/// past it, each key is asked of the ledger as it comes, so memory follows the plan and not
/// the ledger's history. (Seen here through an output recorded after that moment: the one
/// read misses it, the key-by-key probe finds it.)
#[test]
fn past_the_limit_the_probe_asks_key_by_key() {
    let (dir, keys) = state(POINT_QUERIES + 10);
    let ledger_path = dir.path().join("ledger.sqlite");
    let mut writer = Ledger::open(&ledger_path).unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    assert!(writer.outputs_bound().unwrap() as usize >= keys.len() * 2 / 3);
    let lent: &dyn render_pipeline::cache::CacheStorage = &store;
    let (reader_a, reader_b) = (
        Ledger::open(&ledger_path).unwrap(),
        Ledger::open(&ledger_path).unwrap(),
    );
    let read_once = CachedOutputs::new(reader_a, lent);
    let key_by_key = CachedOutputs::new(reader_b, lent).prefetch_limit(10);
    for key in &keys {
        read_once.contains(key);
        key_by_key.contains(key);
    }
    let late = Sha256Hex::of(b"recorded late");
    let video_sha = store.insert_bytes(b"late video").unwrap();
    writer
        .record_output(&OutputRow {
            key: late,
            video_sha,
            video_bytes: 10,
            thumbnail_sha: None,
            video_id: None,
            harvested_at: 0,
        })
        .unwrap();
    assert!(!read_once.contains(&late));
    assert!(key_by_key.contains(&late));
}
