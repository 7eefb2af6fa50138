//! Where a terminal's sockets are opened. A terminal agent of its own runs inside its
//! node's namespace and opens them where it is ([`Place::Here`]); a host of many terminals
//! opens each terminal's inside that terminal's namespace ([`Place::Namespace`]), on a
//! thread made for the one call, so that the runtime's workers never leave the host's own
//! namespace and every socket still belongs to its node (a socket keeps the namespace it
//! was made in).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use nix::sched::{setns, CloneFlags};

/// The network namespace a terminal's sockets belong to.
#[derive(Clone, Debug)]
pub enum Place {
    /// The calling process's own.
    Here,
    /// A named one, held open, entered by a thread per call.
    Namespace { name: String, file: Arc<File> },
}

impl Place {
    /// The namespace `name` (in /run/netns), held open from now on.
    pub fn namespace(name: &str) -> io::Result<Self> {
        Ok(Place::Namespace {
            name: name.to_string(),
            file: Arc::new(crate::kernel::netns::open(name)?),
        })
    }

    /// Runs `open` in this place: at once, or on a new thread that enters the namespace
    /// (with the caller's runtime entered, so that tokio sockets can be made there).
    pub fn open<T: Send + 'static>(
        &self,
        open: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        match self {
            Place::Here => open(),
            Place::Namespace { name, file } => {
                let (file, runtime) = (file.clone(), tokio::runtime::Handle::try_current().ok());
                std::thread::spawn(move || {
                    setns(file.as_fd(), CloneFlags::CLONE_NEWNET)?;
                    let _entered = runtime.as_ref().map(|r| r.enter());
                    open()
                })
                .join()
                .map_err(|_| io::Error::other(format!("the thread entering {name} panicked")))?
            }
        }
    }

    /// A UDP socket on `port` of all addresses of `interface`, able to broadcast.
    pub fn udp(&self, interface: &str, port: u16) -> io::Result<tokio::net::UdpSocket> {
        let interface = interface.to_string();
        self.open(move || crate::protocols::dhcp::bind_socket(&interface, port))
    }

    /// A TCP listener on `port` of all addresses.
    pub fn tcp_listener(&self, port: u16) -> io::Result<tokio::net::TcpListener> {
        self.open(move || {
            let listener = std::net::TcpListener::bind(("0.0.0.0", port))?;
            listener.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(listener)
        })
    }

    /// A netlink connection (its driver spawned on the caller's runtime).
    pub fn netlink(&self) -> io::Result<rtnetlink::Handle> {
        let (connection, handle) = self.open(|| {
            let (connection, handle, _) = rtnetlink::new_connection()?;
            Ok((connection, handle))
        })?;
        tokio::spawn(connection);
        Ok(handle)
    }
}

/// A terminal's link: its interface, in its place.
#[derive(Clone, Debug)]
pub struct Link {
    pub place: Place,
    pub interface: String,
}

impl Link {
    /// `interface` in the calling process's own namespace.
    pub fn here(interface: &str) -> Self {
        Link {
            place: Place::Here,
            interface: interface.to_string(),
        }
    }

    /// A UDP socket on `port` of this interface.
    pub fn udp(&self, port: u16) -> io::Result<tokio::net::UdpSocket> {
        self.place.udp(&self.interface, port)
    }

    /// A netlink connection in the link's namespace and the link's own message.
    pub async fn netlink(
        &self,
    ) -> io::Result<(
        rtnetlink::Handle,
        rtnetlink::packet_route::link::LinkMessage,
    )> {
        use futures::TryStreamExt;
        let handle = self.place.netlink()?;
        let link = handle
            .link()
            .get()
            .match_name(self.interface.clone())
            .execute()
            .try_next()
            .await
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::other(format!("no interface {}", self.interface)))?;
        Ok((handle, link))
    }
}
