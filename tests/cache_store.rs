//! The content-addressed cache on a real disk: streaming writes, crashes, resumes, verify, gc.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use render_pipeline::cache::{CacheError, LocalStore, Placement, VerifyProblem};
use render_wire::key::Sha256Hex;
use tokio::io::AsyncWriteExt;

fn sample(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn objects_dir(state: &Path) -> std::path::PathBuf {
    state.join("cache/v1/objects")
}

fn set_last_used(store: &LocalStore, id: &Sha256Hex, secs_ago: u64) {
    let when = SystemTime::now() - Duration::from_secs(secs_ago);
    fs::File::open(store.path(id))
        .unwrap()
        .set_modified(when)
        .unwrap();
}

fn make_writable(path: &Path) {
    let mut perms = fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(path, perms).unwrap();
}

#[tokio::test]
async fn streamed_object_reads_back_under_its_sha256() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::open(state.path()).unwrap();
    let data = sample(3 * 1024 * 1024 + 17, 1);
    let mut pending = store.begin_object().unwrap();
    for chunk in data.chunks(64 * 1024 + 3) {
        pending.write_all(chunk).await.unwrap();
    }
    assert_eq!(pending.len(), data.len() as u64);
    let id = pending.finish(Some(data.len() as u64)).await.unwrap();

    assert_eq!(id, Sha256Hex::of(&data));
    let hex = id.hex();
    assert_eq!(
        store.path(&id),
        objects_dir(state.path()).join(&hex[..2]).join(&hex)
    );
    assert!(store.has(&id));
    let mut back = Vec::new();
    store
        .read_object(&id)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, data);
    assert!(files_under(&state.path().join("cache/v1/tmp")).is_empty());
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id, listed[0].size), (id, data.len() as u64));
}

#[tokio::test]
async fn the_same_content_twice_is_one_object() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::open(state.path()).unwrap();
    let data = sample(10_000, 2);
    let first = store.insert_bytes(&data).unwrap();
    let mut pending = store.begin_object().unwrap();
    pending.write_all(&data).await.unwrap();
    let second = pending.finish(None).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(files_under(&objects_dir(state.path())).len(), 1);
    assert!(files_under(&state.path().join("cache/v1/tmp")).is_empty());
}

#[tokio::test]
async fn wrong_expected_length_is_rejected_and_stores_nothing() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::open(state.path()).unwrap();
    let data = sample(5000, 3);
    let mut pending = store.begin_object().unwrap();
    pending.write_all(&data).await.unwrap();
    let err = pending.finish(Some(5001)).await.unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::LengthMismatch {
                expected: 5001,
                actual: 5000
            }
        ),
        "{err}"
    );
    assert!(!store.has(&Sha256Hex::of(&data)));
    assert!(files_under(&objects_dir(state.path())).is_empty());
    assert!(files_under(&state.path().join("cache/v1/tmp")).is_empty());
}

#[tokio::test]
async fn a_write_cut_short_leaves_no_object() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::open(state.path()).unwrap();
    let data = sample(200_000, 4);

    // Dropped mid-write (an error path): the temp goes at once.
    let mut pending = store.begin_object().unwrap();
    pending.write_all(&data[..100_000]).await.unwrap();
    drop(pending);
    assert!(files_under(&state.path().join("cache")).iter().all(|p| {
        !p.starts_with(state.path().join("cache/v1/tmp"))
            && !p.starts_with(objects_dir(state.path()))
    }));

    // Killed mid-write (no destructor runs): the temp stays until cleaned, never an object.
    let mut pending = store.begin_object().unwrap();
    pending.write_all(&data[..100_000]).await.unwrap();
    pending.flush().await.unwrap();
    std::mem::forget(pending);
    let temps = files_under(&state.path().join("cache/v1/tmp"));
    assert_eq!(temps.len(), 1);
    assert!(files_under(&objects_dir(state.path())).is_empty());
    assert_eq!(store.clean_stale_temps(Duration::ZERO).unwrap(), 1);
    assert!(files_under(&state.path().join("cache/v1/tmp")).is_empty());
}

#[tokio::test]
async fn a_resumed_partial_hashes_the_whole_content() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::open(state.path()).unwrap();
    let data = sample(2 * 1024 * 1024 + 5, 5);
    let cut = 1_234_567;

    let mut first = store.resume_partial("video_abc").await.unwrap();
    assert_eq!(first.len(), 0);
    first.write_all(&data[..cut]).await.unwrap();
    first.sync().await.unwrap();
    drop(first); // the run ends here; the partial stays for the next one

    let mut second = store.resume_partial("video_abc").await.unwrap();
    assert_eq!(
        second.len(),
        cut as u64,
        "resumes where the last run stopped"
    );
    second.write_all(&data[cut..]).await.unwrap();
    let id = second.finish(Some(data.len() as u64)).await.unwrap();

    assert_eq!(id, Sha256Hex::of(&data));
    assert_eq!(fs::read(store.path(&id)).unwrap(), data);
    assert!(files_under(&state.path().join("cache/v1/partial")).is_empty());
    assert!(matches!(
        store.resume_partial("../escape").await,
        Err(CacheError::BadPartialKey(_))
    ));
}

#[tokio::test]
async fn verify_finds_corrupt_and_misnamed_objects_and_quarantines_them() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::open(state.path()).unwrap();
    let good = store.insert_bytes(b"a good video").unwrap();
    let bad = store.insert_bytes(b"a video about to rot").unwrap();
    let bad_path = store.path(&bad);
    make_writable(&bad_path);
    fs::write(&bad_path, b"a video that rotted!").unwrap();
    let stray = objects_dir(state.path()).join("zz").join("not-a-hash");
    fs::create_dir_all(stray.parent().unwrap()).unwrap();
    fs::write(&stray, b"?").unwrap();

    let problems = store.verify_all(false).unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.contains(&VerifyProblem::Corrupt {
        id: bad,
        actual: Sha256Hex::of(b"a video that rotted!"),
        path: bad_path.clone(),
    }));
    assert!(problems.contains(&VerifyProblem::Misnamed {
        path: stray.clone()
    }));
    assert!(store.has(&bad), "reporting alone moves nothing");

    store.verify_all(true).unwrap();
    assert!(!store.has(&bad) && store.has(&good));
    assert_eq!(
        files_under(&state.path().join("cache/v1/quarantine")).len(),
        2
    );
    assert!(store.verify_all(false).unwrap().is_empty());
}

#[tokio::test]
async fn gc_keeps_referenced_objects_and_removes_the_rest() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::open(state.path()).unwrap();
    let kept = store.insert_bytes(&sample(300, 6)).unwrap();
    let dropped_a = store.insert_bytes(&sample(200, 7)).unwrap();
    let dropped_b = store.insert_bytes(&sample(100, 8)).unwrap();

    let report = store.gc(&HashSet::from([kept]), None).unwrap();
    let removed: HashSet<_> = report.removed.iter().copied().collect();
    assert_eq!(removed, HashSet::from([dropped_a, dropped_b]));
    assert_eq!(report.freed_bytes, 300);
    assert_eq!((report.kept_objects, report.kept_bytes), (1, 300));
    assert!(store.has(&kept) && !store.has(&dropped_a) && !store.has(&dropped_b));
}

#[tokio::test]
async fn size_limited_gc_evicts_the_least_recently_used_first() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::open(state.path()).unwrap();
    let a = store.insert_bytes(&sample(100, 10)).unwrap();
    let b = store.insert_bytes(&sample(100, 11)).unwrap();
    let c = store.insert_bytes(&sample(100, 12)).unwrap();
    set_last_used(&store, &a, 3000);
    set_last_used(&store, &b, 2000);
    set_last_used(&store, &c, 1000);
    // Reading `a` makes it the most recently used: `b` is now the oldest, then `c`.
    store.read_object(&a).unwrap();

    let keep = HashSet::from([a, b, c]);
    let report = store.gc(&keep, Some(200)).unwrap();
    assert_eq!(report.removed, vec![b]);
    assert_eq!((report.kept_objects, report.kept_bytes), (2, 200));

    let report = store.gc(&keep, Some(50)).unwrap();
    assert_eq!(report.removed, vec![c, a]);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn the_cache_folder_is_tagged_and_versioned() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::open(state.path()).unwrap();
    let tag = fs::read_to_string(store.root().join("CACHEDIR.TAG")).unwrap();
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"));
    assert!(state.path().join("cache/v1/objects").is_dir());
    // Opening again keeps what is there.
    let id = store.insert_bytes(b"x").unwrap();
    let again = LocalStore::open(state.path()).unwrap();
    assert!(again.has(&id));
}

#[test]
fn outputs_are_hard_links_replacing_what_was_there() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::open(state.path()).unwrap();
    let id = store.insert_bytes(b"the final cut").unwrap();
    let out = state.path().join("outputs/shot-010/take-1.mp4");
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    fs::write(&out, b"an older render").unwrap();

    assert_eq!(store.link_or_copy(&id, &out).unwrap(), Placement::Linked);
    assert_eq!(fs::read(&out).unwrap(), b"the final cut");
    assert_eq!(store.link_or_copy(&id, &out).unwrap(), Placement::Linked);
    let siblings = fs::read_dir(out.parent().unwrap()).unwrap().count();
    assert_eq!(siblings, 1, "no temp left beside the output");
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(&out).unwrap().ino(),
            fs::metadata(store.path(&id)).unwrap().ino()
        );
    }
    let missing = Sha256Hex::of(b"never stored");
    assert!(matches!(
        store.link_or_copy(&missing, &out),
        Err(CacheError::Missing(_))
    ));
}

#[cfg(unix)]
#[test]
fn outputs_on_another_device_are_copied() {
    use std::os::unix::fs::MetadataExt;
    let state = tempfile::tempdir().unwrap();
    let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("no /dev/shm: cross-device copy not exercised");
        return;
    };
    let same_device =
        fs::metadata(state.path()).unwrap().dev() == fs::metadata(other.path()).unwrap().dev();
    if same_device {
        eprintln!("/dev/shm is on the same device: cross-device copy not exercised");
        return;
    }
    let store = LocalStore::open(state.path()).unwrap();
    let id = store.insert_bytes(b"across devices").unwrap();
    let out = other.path().join("clip.mp4");
    assert_eq!(store.link_or_copy(&id, &out).unwrap(), Placement::Copied);
    assert_eq!(fs::read(&out).unwrap(), b"across devices");
    assert!(!fs::metadata(&out).unwrap().permissions().readonly());
    assert_eq!(fs::read_dir(other.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn the_store_cache_open_builds_is_used_wholly_through_the_trait() {
    use render_pipeline::cache::CacheStorage;
    use tokio::io::AsyncReadExt;
    let state = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn CacheStorage> =
        render_pipeline::cache::open(state.path()).unwrap();
    let data = sample(2 * 1024 * 1024 + 5, 21);
    let mut pending = store.begin_object().await.unwrap();
    for chunk in data.chunks(100_000) {
        pending.write_all(chunk).await.unwrap();
    }
    let id = pending.finish(Some(data.len() as u64)).await.unwrap();
    assert_eq!(id, Sha256Hex::of(&data));
    assert!(store.has(&id));

    let mut back = Vec::new();
    store
        .read(&id)
        .await
        .unwrap()
        .read_to_end(&mut back)
        .await
        .unwrap();
    assert_eq!(back, data);

    let out = state.path().join("renders/shot.mp4");
    assert_eq!(
        store.link_or_copy(&id, &out).await.unwrap(),
        Placement::Linked
    );
    assert_eq!(fs::read(&out).unwrap(), data);
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, data.len() as u64);
    assert!(store.verify_all(false).await.unwrap().is_empty());

    let report = store.gc(&HashSet::new(), None).await.unwrap();
    assert_eq!(report.removed, vec![id]);
    assert!(!store.has(&id));
    assert!(!store.remove(&id).await.unwrap());
}
