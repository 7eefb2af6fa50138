//! The lab's validated topology as `up` built it, kept beside its YAML source so that every
//! later verb (attach, detach, status, …) reads the model back instead of parsing and
//! validating the YAML again: a few hundred microseconds instead of milliseconds for a lab
//! of a few hundred subscribers, on every verb.
//!
//! The model's own serialisation leaves out the subscribers' keys (it is what `--json`
//! outputs show); this file carries them beside it, and is root-only like the YAML.

use std::io;

use serde::{Deserialize, Serialize};

use super::configs::{hex, hex_key};
use super::LabDir;
use crate::json_file;
use crate::topology::Topology;

/// A subscriber's K and OPc, in hex.
#[derive(Serialize, Deserialize)]
struct Keys {
    name: String,
    k: String,
    opc: String,
}

#[derive(Serialize)]
struct Stored<'a> {
    topology: &'a Topology,
    keys: Vec<Keys>,
}

#[derive(Deserialize)]
struct Loaded {
    topology: Topology,
    keys: Vec<Keys>,
}

/// Writes `topology` (root only: it holds every subscriber's K and OPc).
pub fn write(dir: &LabDir, topology: &Topology) -> io::Result<()> {
    let keys = topology
        .subscribers
        .iter()
        .map(|s| Keys {
            name: s.name.clone(),
            k: hex(&s.k),
            opc: hex(&s.opc),
        })
        .collect();
    let bytes = serde_json::to_vec(&Stored { topology, keys }).map_err(io::Error::other)?;
    json_file::write_private(&dir.model(), &bytes)
}

/// Reads the model `write` kept; an error names the file.
pub fn read(dir: &LabDir) -> io::Result<Topology> {
    let path = dir.model();
    let Loaded { mut topology, keys } = json_file::read_json(&path)?;
    let bad = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", path.display()),
        )
    };
    if keys.len() != topology.subscribers.len() {
        return Err(bad("the keys do not match the subscribers".into()));
    }
    for (subscriber, keys) in topology.subscribers.iter_mut().zip(keys) {
        match (
            keys.name == subscriber.name,
            hex_key(&keys.k),
            hex_key(&keys.opc),
        ) {
            (true, Ok(k), Ok(opc)) => (subscriber.k, subscriber.opc) = (k, opc),
            _ => return Err(bad(format!("{}: keys unreadable", subscriber.name))),
        }
    }
    Ok(topology)
}

/// The lab's topology: the model `up` stored, or, for a lab an older roamlab built, its
/// YAML parsed and validated again. Either error names the file.
pub fn read_or_parse(dir: &LabDir) -> io::Result<Topology> {
    if dir.model().exists() {
        return read(dir);
    }
    let path = dir.topology();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Topology::parse(&text, &path.display().to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_reads_back_as_written_keys_and_all() {
        let dir = std::env::temp_dir().join(format!("roamlab-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lab = LabDir::at(&dir);
        let topology =
            Topology::parse(crate::topology::DEFAULT_TOPOLOGY, "default").expect("default lab");
        write(&lab, &topology).unwrap();
        let back = read(&lab).unwrap();
        // Everything the model serialises, and the keys it leaves out, are the same.
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&topology).unwrap()
        );
        for (a, b) in back.subscribers.iter().zip(&topology.subscribers) {
            assert_eq!((a.k, a.opc), (b.k, b.opc), "{}", a.name);
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(lab.model()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the model holds keys: root only");
        // A damaged file is refused, naming it.
        std::fs::write(lab.model(), b"{\"topology\": 1}").unwrap();
        let e = read(&lab).unwrap_err().to_string();
        assert!(e.contains("topology.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
