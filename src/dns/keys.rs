//! Per-lab TSIG keys (hmac-sha256), one per DNS server node, generated at `up` and kept
//! 0600 in the lab's state directory: `<node>.key` holds the raw secret (what
//! hickory-server reads), `<node>.conf` the same key in BIND syntax for `nsupdate -k`.
//! Secrets never go into the topology or a log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::contract::LabDir;

/// 256-bit secrets, the size of the hmac-sha256 output.
const SECRET_BYTES: usize = 32;

#[derive(Clone)]
pub struct TsigKey {
    pub name: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TsigKey({}, secret hidden)", self.name)
    }
}

/// The key name of a node's DNS server.
pub fn key_name(node: &str) -> String {
    format!("roamlab-{node}")
}

impl TsigKey {
    pub fn generate(node: &str) -> io::Result<Self> {
        let mut secret = vec![0u8; SECRET_BYTES];
        File::open("/dev/urandom")?.read_exact(&mut secret)?;
        Ok(TsigKey {
            name: key_name(node),
            secret,
        })
    }

    pub fn base64(&self) -> String {
        data_encoding::BASE64.encode(&self.secret)
    }

    /// `hmac-sha256:NAME:SECRET`, the form `nsupdate -y` takes.
    pub fn nsupdate_arg(&self) -> String {
        format!("hmac-sha256:{}:{}", self.name, self.base64())
    }

    /// Writes both key files, readable by root only.
    pub fn write(&self, lab: &LabDir, node: &str) -> io::Result<()> {
        let dir = lab.keys();
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        write_private(&lab.key_file(node), &self.secret)?;
        let conf = format!(
            "key \"{}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n",
            self.name,
            self.base64()
        );
        write_private(&lab.key_conf(node), conf.as_bytes())
    }

    pub fn load(lab: &LabDir, node: &str) -> io::Result<Self> {
        let path = lab.key_file(node);
        let secret = fs::read(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(TsigKey {
            name: key_name(node),
            secret,
        })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}
