//! DNS for the lab: the zones each server holds (derived from the topology, pure), the
//! per-lab TSIG keys, the guard in front of every signed update (replays, wrong
//! algorithms, transfers), the update client the HLR and DHCP agents use, and lookups
//! from inside a node. The DNS agent that serves them is [`crate::agents::dns`].

pub mod guard;
pub mod keys;
pub mod lookup;
pub mod update;
pub mod zonefile;

/// Whether the datagram `bytes` from `from` may be `server`'s answer to message `id`: it
/// comes from the server and carries that ID. The lookups and the updates ask this before
/// they read anything else of it; whatever fails it is passed over, and the wait goes on.
pub(crate) fn from_server_to(
    id: u16,
    server: std::net::SocketAddr,
    from: std::net::SocketAddr,
    bytes: &[u8],
) -> bool {
    from == server && bytes.get(..2) == Some(&id.to_be_bytes()[..])
}
