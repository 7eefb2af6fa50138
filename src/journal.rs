//! Keyed records persisted incrementally: a file of JSON lines, one change each (a key and
//! its new value, or a key alone for its removal), appended as it happens, so that the cost
//! of a change does not grow with the number of records. When the file holds many more
//! lines than live records it is compacted (written whole, then renamed into place).
//!
//! A [`Follower`] reads another process's journal as it grows, taking only the new lines,
//! and is told what changed: how one agent publishes a list to another without either
//! re-reading it whole per event. A torn last line (a crash mid-write) is not yet a change.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Compaction once the file holds this many lines more than twice the live records.
const SLACK_LINES: usize = 256;

/// What a journal's records need of their keys and values.
pub trait Key: Ord + Clone + Serialize + DeserializeOwned {}
impl<T: Ord + Clone + Serialize + DeserializeOwned> Key for T {}
pub trait Value: PartialEq + Clone + Serialize + DeserializeOwned {}
impl<T: PartialEq + Clone + Serialize + DeserializeOwned> Value for T {}

/// A change as the file holds it: the key, and its new value unless it was removed.
#[derive(Serialize, Deserialize)]
struct Line<K, V> {
    k: K,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    v: Option<V>,
}

/// What changed for one key: (key, old value, new value).
pub type Change<'a, K, V> = (&'a K, Option<&'a V>, Option<&'a V>);

/// Applies the complete lines of `bytes` to `map`, telling `changed` of each change;
/// returns the bytes consumed (up to the last newline) and the lines applied. A line that
/// does not parse is skipped: only a crash mid-write makes one.
fn apply<K: Key, V: Value>(
    bytes: &[u8],
    map: &mut BTreeMap<K, V>,
    changed: &mut dyn FnMut(Change<'_, K, V>),
) -> (usize, usize) {
    let Some(end) = bytes.iter().rposition(|b| *b == b'\n').map(|i| i + 1) else {
        return (0, 0);
    };
    let mut lines = 0;
    for raw in bytes[..end]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
    {
        let Ok(line) = serde_json::from_slice::<Line<K, V>>(raw) else {
            continue;
        };
        lines += 1;
        match line.v {
            Some(v) => {
                let old = map.insert(line.k.clone(), v);
                changed((&line.k, old.as_ref(), map.get(&line.k)));
            }
            None => {
                if let Some(old) = map.remove(&line.k) {
                    changed((&line.k, Some(&old), None));
                }
            }
        }
    }
    (end, lines)
}

/// Reads a journal whole (empty if there is none).
pub fn read<K: Key, V: Value>(path: &Path) -> io::Result<BTreeMap<K, V>> {
    let mut map = BTreeMap::new();
    match std::fs::read(path) {
        Ok(bytes) => {
            apply(&bytes, &mut map, &mut |_| {});
            Ok(map)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(map),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

fn named(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(named(path))
}

/// The writer's side: the records as last written, and the file they are appended to.
pub struct Journal<K, V> {
    path: PathBuf,
    file: File,
    records: BTreeMap<K, V>,
    lines: usize,
}

impl<K: Key, V: Value> Journal<K, V> {
    /// Opens (or creates) a journal, taking up the records it holds; readable by root only.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut records = BTreeMap::new();
        let lines = match std::fs::read(path) {
            Ok(bytes) => apply(&bytes, &mut records, &mut |_| {}).1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(named(path)(e)),
        };
        let mut journal = Journal {
            path: path.to_path_buf(),
            file: open_append(path)?,
            records,
            lines,
        };
        // A torn last line is cut off by writing everything afresh.
        journal.compact()?;
        Ok(journal)
    }

    pub fn records(&self) -> &BTreeMap<K, V> {
        &self.records
    }

    /// Records `key`'s new value (or its removal): one line, if it changed.
    pub fn put(&mut self, key: &K, value: Option<&V>) -> io::Result<()> {
        if self.records.get(key) == value {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&Line { k: key, v: value }).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write of a whole line, so a reader sees it whole or not yet.
        self.file.write_all(&line).map_err(named(&self.path))?;
        self.lines += 1;
        match value {
            Some(v) => self.records.insert(key.clone(), v.clone()),
            None => self.records.remove(key),
        };
        if self.lines > 2 * self.records.len() + SLACK_LINES {
            self.compact()?;
        }
        Ok(())
    }

    /// Makes the journal hold `now`: a line for each record that differs (a walk of both,
    /// in memory; nothing is written for what did not change).
    pub fn sync(&mut self, now: &BTreeMap<K, V>) -> io::Result<()> {
        let gone: Vec<K> = self
            .records
            .keys()
            .filter(|k| !now.contains_key(k))
            .cloned()
            .collect();
        for k in gone {
            self.put(&k, None)?;
        }
        for (k, v) in now {
            if self.records.get(k) != Some(v) {
                self.put(k, Some(v))?;
            }
        }
        Ok(())
    }

    /// Writes the live records whole, then renames them into place (followers notice the
    /// new file and read it afresh).
    fn compact(&mut self) -> io::Result<()> {
        let mut bytes = Vec::new();
        for (k, v) in &self.records {
            serde_json::to_writer(&mut bytes, &Line { k, v: Some(v) }).map_err(io::Error::other)?;
            bytes.push(b'\n');
        }
        crate::json_file::write_private(&self.path, &bytes)?;
        self.file = open_append(&self.path)?;
        self.lines = self.records.len();
        Ok(())
    }
}

/// The reader's side of another process's journal: the records as far as it has read, and
/// where it got to.
pub struct Follower<K, V> {
    path: PathBuf,
    /// (device, inode) of the file read: a compaction makes a new one.
    identity: Option<(u64, u64)>,
    offset: u64,
    records: BTreeMap<K, V>,
}

impl<K: Key, V: Value> Follower<K, V> {
    pub fn new(path: &Path) -> Self {
        Follower {
            path: path.to_path_buf(),
            identity: None,
            offset: 0,
            records: BTreeMap::new(),
        }
    }

    pub fn records(&self) -> &BTreeMap<K, V> {
        &self.records
    }

    /// Reads what was appended since the last call (everything, when the file was
    /// replaced) and tells `changed` of each change. A file that is not there holds none.
    pub fn refresh(&mut self, changed: &mut dyn FnMut(Change<'_, K, V>)) -> io::Result<()> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.replace(BTreeMap::new(), changed);
                self.identity = None;
                return Ok(());
            }
            Err(e) => return Err(named(&self.path)(e)),
        };
        let meta = file.metadata().map_err(named(&self.path))?;
        let identity = Some((meta.dev(), meta.ino()));
        if identity != self.identity || meta.len() < self.offset {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(named(&self.path))?;
            let mut fresh = BTreeMap::new();
            let (used, _) = apply(&bytes, &mut fresh, &mut |_| {});
            self.replace(fresh, changed);
            self.identity = identity;
            self.offset = used as u64;
            return Ok(());
        }
        if meta.len() == self.offset {
            return Ok(());
        }
        file.seek(SeekFrom::Start(self.offset))
            .map_err(named(&self.path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(named(&self.path))?;
        let (used, _) = apply(&bytes, &mut self.records, changed);
        self.offset += used as u64;
        Ok(())
    }

    /// Takes `fresh` as the records, telling `changed` how they differ from the old ones.
    fn replace(&mut self, fresh: BTreeMap<K, V>, changed: &mut dyn FnMut(Change<'_, K, V>)) {
        let old = std::mem::replace(&mut self.records, fresh);
        for (k, v) in &old {
            if !self.records.contains_key(k) {
                changed((k, Some(v), None));
            }
        }
        for (k, v) in &self.records {
            let before = old.get(k);
            if before != Some(v) {
                changed((k, before, Some(v)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of the test's own, removed when it ends.
    struct Scratch(PathBuf);

    impl Scratch {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir() -> Scratch {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("roamlab-journal-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    #[test]
    fn records_survive_a_reopen_and_each_change_is_one_line() {
        let d = dir();
        let path = d.path().join("j.jsonl");
        let mut j: Journal<String, u32> = Journal::open(&path).unwrap();
        j.put(&"a".into(), Some(&1)).unwrap();
        j.put(&"b".into(), Some(&2)).unwrap();
        j.put(&"a".into(), Some(&1)).unwrap(); // unchanged: nothing written
        j.put(&"b".into(), None).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"k\":\"a\",\"v\":1}\n{\"k\":\"b\",\"v\":2}\n{\"k\":\"b\"}\n"
        );
        let again: Journal<String, u32> = Journal::open(&path).unwrap();
        assert_eq!(again.records(), &BTreeMap::from([("a".to_string(), 1)]));
        assert_eq!(read::<String, u32>(&path).unwrap(), *again.records());
    }

    #[test]
    fn a_torn_last_line_is_no_change_and_is_cut_at_reopen() {
        let d = dir();
        let path = d.path().join("j.jsonl");
        std::fs::write(&path, "{\"k\":\"a\",\"v\":1}\n{\"k\":\"b\",\"v\"").unwrap();
        assert_eq!(read::<String, u32>(&path).unwrap().len(), 1);
        let mut j: Journal<String, u32> = Journal::open(&path).unwrap();
        j.put(&"c".into(), Some(&3)).unwrap();
        let back = read::<String, u32>(&path).unwrap();
        assert_eq!(back, BTreeMap::from([("a".into(), 1), ("c".into(), 3)]));
    }

    #[test]
    fn the_file_is_compacted_when_it_holds_mostly_old_lines() {
        let d = dir();
        let path = d.path().join("j.jsonl");
        let mut j: Journal<u32, u32> = Journal::open(&path).unwrap();
        for i in 0..10_000 {
            j.put(&(i % 3), Some(&i)).unwrap();
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 2 * 3 + SLACK_LINES + 1, "{lines} lines");
        assert_eq!(read::<u32, u32>(&path).unwrap()[&0], 9999);
    }

    #[test]
    fn sync_writes_only_the_differences() {
        let d = dir();
        let path = d.path().join("j.jsonl");
        let mut j: Journal<u32, u32> = Journal::open(&path).unwrap();
        let mut now: BTreeMap<u32, u32> = (0..100).map(|i| (i, i)).collect();
        j.sync(&now).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        now.insert(5, 50);
        now.remove(&7);
        j.sync(&now).unwrap();
        let added = std::fs::read_to_string(&path).unwrap()[before as usize..].to_string();
        assert_eq!(added, "{\"k\":7}\n{\"k\":5,\"v\":50}\n");
        assert_eq!(read::<u32, u32>(&path).unwrap(), now);
    }

    type Seen = Vec<(u32, Option<u32>, Option<u32>)>;

    fn changes(f: &mut Follower<u32, u32>) -> Seen {
        let mut seen = Vec::new();
        f.refresh(&mut |(k, old, new)| seen.push((*k, old.copied(), new.copied())))
            .unwrap();
        seen
    }

    #[test]
    fn a_follower_reads_only_what_was_appended_and_notices_a_compaction() {
        let d = dir();
        let path = d.path().join("j.jsonl");
        let mut f: Follower<u32, u32> = Follower::new(&path);
        assert_eq!(changes(&mut f), []);
        let mut j: Journal<u32, u32> = Journal::open(&path).unwrap();
        j.put(&1, Some(&10)).unwrap();
        assert_eq!(changes(&mut f), [(1, None, Some(10))]);
        // A line being written, not yet whole, is no change yet.
        let mut raw = open_append(&path).unwrap();
        raw.write_all(b"{\"k\":2,").unwrap();
        assert_eq!(changes(&mut f), []);
        raw.write_all(b"\"v\":20}\n").unwrap();
        assert_eq!(changes(&mut f), [(2, None, Some(20))]);
        j.put(&1, None).unwrap();
        assert_eq!(changes(&mut f), [(1, Some(10), None)]);
        // Compaction makes a new file; the follower reads it afresh and reports only the
        // difference.
        let mut j: Journal<u32, u32> = Journal::open(&path).unwrap();
        j.put(&3, Some(&30)).unwrap();
        assert_eq!(changes(&mut f), [(3, None, Some(30))]);
        assert_eq!(f.records(), &BTreeMap::from([(2, 20), (3, 30)]));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(changes(&mut f), [(2, Some(20), None), (3, Some(30), None)]);
    }
}
