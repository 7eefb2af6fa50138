//! The real kernel: each plan step becomes one rtnetlink request, sent on a netlink
//! socket opened inside the step's namespace (one connection per namespace).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use rtnetlink::packet_core::{
    DefaultNla, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{
    Handle, LinkBridge, LinkIpIp, LinkMessageBuilder, LinkUnspec, LinkVxlan, RouteMessageBuilder,
};

use super::{netem, netns, tbf, Kernel, KernelError};
use crate::plan::Step;

const TCA_OPTIONS: u16 = 2;
/// The IANA port of VXLAN (Linux's own default is 8472).
const VXLAN_PORT: u16 = 4789;
/// Before the main table's rule (32766): a tunnel-mode cell's packets take the tunnel.
const SOURCE_RULE_PRIORITY: u32 = 1000;
/// The kernel's local table (linux/rtnetlink.h RT_TABLE_LOCAL).
const RT_TABLE_LOCAL: u8 = 255;

/// Netlink connections to the lab's namespaces, opened as namespaces are created.
#[derive(Default)]
pub struct NetlinkKernel {
    handles: HashMap<String, Handle>,
    files: HashMap<String, File>,
    ledger: Option<netns::Ledger>,
    /// A namespace of the lab whose file in /run/netns new namespaces' files link to.
    sibling: Option<String>,
    /// The tunnels made, by (namespace, interface), and which kind each is.
    pub tunnels: Vec<(String, String, &'static str)>,
}

impl NetlinkKernel {
    /// A kernel that records every namespace it makes in `ledger`.
    pub fn new(ledger: netns::Ledger) -> io::Result<Self> {
        netns::prepare_dir()?;
        Ok(Self {
            ledger: Some(ledger),
            ..Self::default()
        })
    }

    /// New namespaces' files in /run/netns are links of `namespace`'s, one of the lab's
    /// (see `netns::create_on_this_thread`). Without it, of the first this kernel makes.
    pub fn share_files_with(&mut self, namespace: &str) {
        self.sibling = Some(namespace.to_string());
    }

    /// Another kernel for the same lab (its ledger and sibling), with no connections yet:
    /// namespaces made side by side each on a kernel of their own, then [`adopt`]ed.
    ///
    /// [`adopt`]: NetlinkKernel::adopt
    pub fn another(&self) -> Self {
        Self {
            ledger: self.ledger.clone(),
            sibling: self.sibling.clone(),
            ..Self::default()
        }
    }

    /// Takes over `other`'s connections to the namespaces it made or reached.
    pub fn adopt(&mut self, other: NetlinkKernel) {
        self.handles.extend(other.handles);
        self.files.extend(other.files);
        self.tunnels.extend(other.tunnels);
    }

    /// Connects to a namespace that already exists (for status and later changes).
    pub fn attach(&mut self, namespace: &str) -> io::Result<Handle> {
        if let Some(h) = self.handles.get(namespace) {
            return Ok(h.clone());
        }
        let runtime = tokio::runtime::Handle::current();
        let (conn, handle) = netns::run_in(namespace, move || {
            let _enter = runtime.enter();
            let (conn, handle, _) = rtnetlink::new_connection()?;
            Ok((conn, handle))
        })?;
        tokio::spawn(conn);
        self.files
            .insert(namespace.to_string(), netns::open(namespace)?);
        self.handles.insert(namespace.to_string(), handle.clone());
        Ok(handle)
    }

    fn handle(&self, namespace: &str) -> io::Result<Handle> {
        self.handles.get(namespace).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no connection to namespace {namespace}"),
            )
        })
    }

    fn namespace_fd(&self, namespace: &str) -> io::Result<i32> {
        self.files
            .get(namespace)
            .map(|f| f.as_raw_fd())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("namespace {namespace} is not open"),
                )
            })
    }

    async fn create_namespace(
        &mut self,
        namespace: &str,
        sysctls: &[crate::plan::Sysctl],
    ) -> io::Result<()> {
        let runtime = tokio::runtime::Handle::current();
        let (name, sysctls) = (namespace.to_string(), sysctls.to_vec());
        let (ledger, sibling) = (self.ledger.clone(), self.sibling.clone());
        let (made, done) = futures::channel::oneshot::channel();
        // A thread of its own: it leaves the root namespace and never comes back. Awaited
        // through a channel, so no thread of the blocking pool waits for it.
        std::thread::spawn(move || {
            let connected =
                netns::create_on_this_thread(&name, &sysctls, ledger.as_ref(), sibling.as_deref())
                    .and_then(|()| {
                        let _enter = runtime.enter();
                        let (conn, handle, _) = rtnetlink::new_connection()?;
                        Ok((conn, handle))
                    });
            let _ = made.send(connected);
        });
        let (conn, handle) = done
            .await
            .map_err(|_| io::Error::other("namespace thread panicked"))??;
        tokio::spawn(conn);
        self.files
            .insert(namespace.to_string(), netns::open(namespace)?);
        self.handles.insert(namespace.to_string(), handle);
        self.sibling.get_or_insert_with(|| namespace.to_string());
        Ok(())
    }

    fn delete_namespace(&mut self, namespace: &str) -> io::Result<()> {
        self.handles.remove(namespace);
        self.files.remove(namespace);
        netns::delete(namespace)
    }

    async fn set_link_up(&self, namespace: &str, index: u32) -> Result<(), rtnetlink::Error> {
        let handle = self.handle(namespace).map_err(ns_error)?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
    }

    async fn create_bridge(
        &self,
        namespace: &str,
        name: &str,
        index: u32,
    ) -> Result<(), rtnetlink::Error> {
        let handle = self.handle(namespace).map_err(ns_error)?;
        handle
            .link()
            .add(LinkBridge::new(name).index(index).up().build())
            .execute()
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_veth(
        &self,
        namespace: &str,
        name: &str,
        index: u32,
        master: Option<u32>,
        peer_namespace: &str,
        peer_name: &str,
        peer_index: u32,
        peer_mac: Option<[u8; 6]>,
    ) -> Result<(), rtnetlink::Error> {
        let handle = self.handle(namespace).map_err(ns_error)?;
        // The peer is born in its namespace (IFLA_NET_NS_FD in the peer's message): moving
        // a link between namespaces afterwards costs the kernel ~20 ms.
        // One queue each way, asked for: a veth made with the default (one per CPU) is
        // cut down to one at once, and each end's cut waits out an RCU grace period.
        let one_queue = |link: LinkMessageBuilder<LinkUnspec>| {
            link.append_extra_attribute(LinkAttribute::NumTxQueues(1))
                .append_extra_attribute(LinkAttribute::NumRxQueues(1))
        };
        let mut peer = one_queue(
            LinkMessageBuilder::<LinkUnspec>::new()
                .name(peer_name)
                .index(peer_index)
                .setns_by_fd(self.namespace_fd(peer_namespace).map_err(ns_error)?),
        );
        if let Some(mac) = peer_mac {
            peer = peer.address(mac.to_vec());
        }
        let peer = peer.build();
        let mut veth = one_queue(
            LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
                .name(name)
                .index(index)
                .up(),
        )
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)));
        if let Some(master) = master {
            veth = veth.controller(master);
        }
        handle.link().add(veth.build()).execute().await
    }

    async fn set_master(
        &self,
        namespace: &str,
        index: u32,
        master: u32,
    ) -> Result<(), rtnetlink::Error> {
        let handle = self.handle(namespace).map_err(ns_error)?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).controller(master).build())
            .execute()
            .await
    }

    /// Deletes a link by name (a veth takes its peer with it, at once); a link that is not
    /// there is already deleted.
    pub async fn delete_link_named(&mut self, namespace: &str, name: &str) -> io::Result<()> {
        let handle = self.attach(namespace)?;
        let mut found = handle.link().get().match_name(name.to_string()).execute();
        let index = match found.try_next().await {
            Ok(Some(link)) => link.header.index,
            Ok(None) => return Ok(()),
            Err(e) if matches!(errno(&e), Some(libc::ENODEV)) => return Ok(()),
            Err(e) => return Err(io::Error::other(cause(&e))),
        };
        match gone_is_ok(handle.link().del(index).execute().await) {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::other(cause(&e))),
        }
    }

    /// A static FDB entry for the peer's address on the port, then the port locked.
    async fn lock_port(
        &mut self,
        namespace: &str,
        index: u32,
        peer_mac: [u8; 6],
    ) -> Result<(), rtnetlink::Error> {
        use rtnetlink::packet_route::link::InfoBridgePort;
        use rtnetlink::packet_route::neighbour::{NeighbourFlags, NeighbourState};
        let handle = self.handle(namespace).map_err(ns_error)?;
        handle
            .neighbours()
            .add_bridge(index, &peer_mac)
            .state(NeighbourState::Noarp)
            .flags(NeighbourFlags::Controller)
            .execute()
            .await?;
        handle
            .link()
            .set_port(
                rtnetlink::LinkBridgePort::new(index)
                    .append_info_data(InfoBridgePort::Locked(true))
                    // Terminals reach each other only through their network (see the
                    // plan's proxy_arp_pvlan), and a broadcast from one is copied to the
                    // network alone, not to every other terminal on the cell.
                    .append_info_data(InfoBridgePort::Isolated(true))
                    .build(),
            )
            .execute()
            .await
    }

    /// An IPIP tunnel where the kernel has IPIP loaded, else a VXLAN one. An IPIP module
    /// loaded by this request would add a fallback device (tunl0) to every namespace of the
    /// host, other labs' included, so it is never loaded for a lab.
    async fn create_tunnel(
        &self,
        namespace: &str,
        name: &str,
        index: u32,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        id: u32,
    ) -> Result<&'static str, rtnetlink::Error> {
        let handle = self.handle(namespace).map_err(ns_error)?;
        if std::path::Path::new("/sys/module/ipip").exists() {
            let ipip = LinkIpIp::new(name)
                .index(index)
                .local(local)
                .remote(remote)
                .up()
                .build();
            match handle.link().add(ipip).execute().await {
                Ok(()) => return Ok("ipip"),
                Err(e) if errno(&e) == Some(libc::EOPNOTSUPP) => {}
                Err(e) => return Err(e),
            }
        }
        let vxlan = LinkVxlan::new(name, id)
            .index(index)
            .local(local)
            .remote(remote)
            .port(VXLAN_PORT)
            .up()
            .build();
        handle.link().add(vxlan).execute().await?;
        Ok("vxlan")
    }

    /// The rules of [`Step::GuardTunnel`], in priority order: (priority, message).
    fn guard_rules(
        handle: &Handle,
        local: Ipv4Addr,
        peer: Ipv4Addr,
    ) -> Vec<(u32, rtnetlink::packet_route::rule::RuleMessage)> {
        use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RulePortRange};
        use rtnetlink::packet_route::IpProtocol;
        let rule = |priority: u32, from: Option<Ipv4Addr>, action: RuleAction| {
            let mut add = handle.rule().add().v4().priority(priority).action(action);
            if let Some(from) = from {
                add = add.source_prefix(from, 32);
            }
            let mut message = add.destination_prefix(local, 32).message_mut().clone();
            if action == RuleAction::ToTable {
                message.header.table = RT_TABLE_LOCAL;
            }
            message
        };
        let mut out = Vec::new();
        let mut priority = 1;
        for (protocol, port) in [
            (IpProtocol::Udp, Some(VXLAN_PORT)),
            (IpProtocol::Ipip, None),
        ] {
            for (from, action) in [
                (Some(peer), RuleAction::ToTable),
                (None, RuleAction::Blackhole),
            ] {
                let mut message = rule(priority, from, action);
                message.attributes.push(RuleAttribute::IpProtocol(protocol));
                if let Some(port) = port {
                    message
                        .attributes
                        .push(RuleAttribute::DestinationPortRange(RulePortRange {
                            start: port,
                            end: port,
                        }));
                }
                out.push((priority, message));
                priority += 1;
            }
        }
        out
    }

    /// The rule that sends everything to the local table first, at `priority`.
    fn local_rule(handle: &Handle, priority: u32) -> rtnetlink::packet_route::rule::RuleMessage {
        use rtnetlink::packet_route::rule::RuleAction;
        let mut message = handle
            .rule()
            .add()
            .v4()
            .priority(priority)
            .action(RuleAction::ToTable)
            .message_mut()
            .clone();
        message.header.table = RT_TABLE_LOCAL;
        message
    }

    async fn add_rule(
        &self,
        namespace: &str,
        rule: rtnetlink::packet_route::rule::RuleMessage,
    ) -> Result<(), rtnetlink::Error> {
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewRule(rule));
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        self.send_acked(namespace, request).await
    }

    async fn guard_tunnel(
        &self,
        namespace: &str,
        local: Ipv4Addr,
        peer: Ipv4Addr,
    ) -> Result<(), rtnetlink::Error> {
        let handle = self.handle(namespace).map_err(ns_error)?;
        let rules = Self::guard_rules(&handle, local, peer);
        let after = rules.len() as u32 + 1;
        for (_, rule) in rules {
            self.add_rule(namespace, rule).await?;
        }
        // The local table moves behind the guard.
        self.move_local_rule(namespace, &handle, 0, after).await
    }

    async fn unguard_tunnel(
        &self,
        namespace: &str,
        local: Ipv4Addr,
        peer: Ipv4Addr,
    ) -> Result<(), rtnetlink::Error> {
        let handle = self.handle(namespace).map_err(ns_error)?;
        let rules = Self::guard_rules(&handle, local, peer);
        let after = rules.len() as u32 + 1;
        let mut result = self.move_local_rule(namespace, &handle, after, 0).await;
        for (_, rule) in rules {
            result = result.and(gone_is_ok(handle.rule().del(rule).execute().await));
        }
        result
    }

    /// The local table's rule from priority `from` to `to`: added there first (one that is
    /// there already counts), then removed here (one that is gone already counts).
    async fn move_local_rule(
        &self,
        namespace: &str,
        handle: &Handle,
        from: u32,
        to: u32,
    ) -> Result<(), rtnetlink::Error> {
        match self.add_rule(namespace, Self::local_rule(handle, to)).await {
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            other => other?,
        }
        gone_is_ok(
            handle
                .rule()
                .del(Self::local_rule(handle, from))
                .execute()
                .await,
        )
    }

    /// `ip rule add from FROM iif IN lookup TABLE`, as a message (adding and deleting
    /// send the same one).
    fn source_rule(
        handle: &Handle,
        from: IpNet,
        in_interface: &str,
        table: u32,
    ) -> Result<rtnetlink::packet_route::rule::RuleMessage, rtnetlink::Error> {
        let IpNet::V4(from) = from else {
            return Err(invalid("a tunnel carries IPv4 only"));
        };
        let mut rule = handle
            .rule()
            .add()
            .v4()
            .source_prefix(from.addr(), from.prefix_len())
            .input_interface(in_interface)
            .table_id(table)
            .action(rtnetlink::packet_route::rule::RuleAction::ToTable)
            .priority(SOURCE_RULE_PRIORITY);
        Ok(rule.message_mut().clone())
    }

    fn table_route(
        table: u32,
        via: IpAddr,
        index: u32,
    ) -> Result<rtnetlink::packet_route::route::RouteMessage, rtnetlink::Error> {
        let IpAddr::V4(via) = via else {
            return Err(invalid("a tunnel carries IPv4 only"));
        };
        Ok(RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(via)
            .output_interface(index)
            .table_id(table)
            .build())
    }

    async fn add_source_route(
        &self,
        namespace: &str,
        from: IpNet,
        in_interface: &str,
        table: u32,
        via: IpAddr,
        index: u32,
    ) -> Result<(), rtnetlink::Error> {
        let handle = self.handle(namespace).map_err(ns_error)?;
        handle
            .route()
            .add(Self::table_route(table, via, index)?)
            .execute()
            .await?;
        let rule = Self::source_rule(&handle, from, in_interface, table)?;
        self.add_rule(namespace, rule).await
    }

    async fn delete_source_route(
        &self,
        namespace: &str,
        from: IpNet,
        in_interface: &str,
        table: u32,
        via: IpAddr,
        index: u32,
    ) -> Result<(), rtnetlink::Error> {
        let handle = self.handle(namespace).map_err(ns_error)?;
        let rule = Self::source_rule(&handle, from, in_interface, table)?;
        let rule_gone = gone_is_ok(handle.rule().del(rule).execute().await);
        let route_gone = gone_is_ok(
            handle
                .route()
                .del(Self::table_route(table, via, index)?)
                .execute()
                .await,
        );
        rule_gone.and(route_gone)
    }

    async fn delete_link(&self, namespace: &str, index: u32) -> Result<(), rtnetlink::Error> {
        let handle = self.handle(namespace).map_err(ns_error)?;
        handle.link().del(index).execute().await
    }

    async fn add_address(
        &self,
        namespace: &str,
        index: u32,
        address: IpNet,
    ) -> Result<(), rtnetlink::Error> {
        let handle = self.handle(namespace).map_err(ns_error)?;
        handle
            .address()
            .add(index, address.addr(), address.prefix_len())
            .execute()
            .await
    }

    async fn delete_address(
        &self,
        namespace: &str,
        index: u32,
        address: IpNet,
    ) -> Result<(), rtnetlink::Error> {
        let handle = self.handle(namespace).map_err(ns_error)?;
        let mut found = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = found.try_next().await? {
            let matches = msg
                .attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Address(ip) if *ip == address.addr()));
            if matches && msg.header.prefix_len == address.prefix_len() {
                return handle.address().del(msg).execute().await;
            }
        }
        Ok(())
    }

    fn route_message(
        to: IpNet,
        via: IpAddr,
        index: u32,
    ) -> Result<rtnetlink::packet_route::route::RouteMessage, rtnetlink::Error> {
        Ok(RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(to.addr(), to.prefix_len())
            .map_err(invalid)?
            .gateway(via)
            .map_err(invalid)?
            .output_interface(index)
            .build())
    }

    async fn add_route(
        &self,
        namespace: &str,
        to: IpNet,
        via: IpAddr,
        index: u32,
    ) -> Result<(), rtnetlink::Error> {
        let handle = self.handle(namespace).map_err(ns_error)?;
        handle
            .route()
            .add(Self::route_message(to, via, index)?)
            .execute()
            .await
    }

    async fn delete_route(
        &self,
        namespace: &str,
        to: IpNet,
        via: IpAddr,
        index: u32,
    ) -> Result<(), rtnetlink::Error> {
        let handle = self.handle(namespace).map_err(ns_error)?;
        handle
            .route()
            .del(Self::route_message(to, via, index)?)
            .execute()
            .await
    }

    /// A root qdisc of `kind` with these raw options.
    async fn add_qdisc(
        &self,
        namespace: &str,
        index: u32,
        kind: &str,
        options: Vec<u8>,
    ) -> Result<(), rtnetlink::Error> {
        let mut message = TcMessage::with_index(index as i32);
        message.header.parent = TcHandle::ROOT;
        message.attributes.push(TcAttribute::Kind(kind.to_string()));
        message
            .attributes
            .push(TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, options)));
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewQueueDiscipline(message));
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        self.send_acked(namespace, request).await
    }

    async fn delete_qdisc(&self, namespace: &str, index: u32) -> Result<(), rtnetlink::Error> {
        let mut message = TcMessage::with_index(index as i32);
        message.header.parent = TcHandle::ROOT;
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::DelQueueDiscipline(message));
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        self.send_acked(namespace, request).await
    }

    async fn send_acked(
        &self,
        namespace: &str,
        request: NetlinkMessage<RouteNetlinkMessage>,
    ) -> Result<(), rtnetlink::Error> {
        let mut handle = self.handle(namespace).map_err(ns_error)?;
        let mut response = handle.request(request)?;
        while let Some(message) = response.next().await {
            if let NetlinkPayload::Error(err) = message.payload {
                if err.code.is_some() {
                    return Err(rtnetlink::Error::NetlinkError(err));
                }
            }
        }
        Ok(())
    }

    /// The names and indices of a namespace's links, read by a future of its own (on the
    /// connection this kernel keeps to the namespace), so that other work can go on while
    /// the kernel answers.
    pub fn link_indices(
        &mut self,
        namespace: &str,
    ) -> io::Result<impl std::future::Future<Output = io::Result<Vec<(String, u32)>>> + 'static>
    {
        let handle = self.attach(namespace)?;
        Ok(async move {
            Ok(links_of(&handle)
                .await?
                .iter()
                .map(|link| (name_of(link), link.header.index))
                .collect())
        })
    }

    /// Links and their addresses in a namespace, for `status`.
    pub async fn interfaces(&mut self, namespace: &str) -> io::Result<Vec<InterfaceInfo>> {
        let handle = self.attach(namespace)?;
        let links = links_of(&handle).await?;
        let addresses: Vec<_> = handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(io::Error::other)?;
        let mut out = Vec::new();
        for link in links {
            let name = name_of(&link);
            let up = link
                .header
                .flags
                .contains(rtnetlink::packet_route::link::LinkFlags::Up);
            let addrs = addresses
                .iter()
                .filter(|a| a.header.index == link.header.index)
                .filter_map(|a| {
                    a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Address(ip) => IpNet::new(*ip, a.header.prefix_len).ok(),
                        _ => None,
                    })
                })
                .collect();
            let mac = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                _ => None,
            });
            let tunnel = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(kind @ (InfoKind::IpIp | InfoKind::Vxlan)) => {
                        Some(kind.to_string())
                    }
                    _ => None,
                }),
                _ => None,
            });
            out.push(InterfaceInfo {
                index: link.header.index,
                name,
                tunnel,
                up,
                addresses: addrs,
                mac,
            });
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct InterfaceInfo {
    pub index: u32,
    pub name: String,
    /// The kind of a tunnel (`ipip`, or `vxlan` where the kernel has no IPIP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<String>,
    pub up: bool,
    pub addresses: Vec<IpNet>,
    /// The link-layer address, for an Ethernet-like link.
    #[serde(skip)]
    pub mac: Option<[u8; 6]>,
}

fn invalid(e: impl std::fmt::Display) -> rtnetlink::Error {
    rtnetlink::Error::InvalidNla(e.to_string())
}

fn ns_error(e: io::Error) -> rtnetlink::Error {
    rtnetlink::Error::NamespaceError(e.to_string())
}

/// The errno inside a netlink error, if there is one.
/// The errno a netlink request failed with, if the kernel said one.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

/// A kernel answer in words: "File exists (os error 17)" rather than a debug dump.
fn cause(e: &rtnetlink::Error) -> String {
    match errno(e) {
        Some(code) => io::Error::from_raw_os_error(code).to_string(),
        None => e.to_string(),
    }
}

/// Undo treats "already gone" as done.
fn gone_is_ok(result: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match errno_of(&result) {
        Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL | libc::EINVAL) => {
            Ok(())
        }
        _ => result,
    }
}

fn errno_of(result: &Result<(), rtnetlink::Error>) -> Option<i32> {
    result.as_ref().err().and_then(errno)
}

impl Kernel for NetlinkKernel {
    async fn apply(&mut self, step: &Step) -> Result<(), KernelError> {
        let fail = |e: &rtnetlink::Error| KernelError::step(step, cause(e));
        match step {
            Step::CreateNamespace { namespace, sysctls } => self
                .create_namespace(namespace, sysctls)
                .await
                .map_err(|e| KernelError::step(step, e)),
            Step::SetLinkUp {
                namespace, index, ..
            } => self
                .set_link_up(namespace, *index)
                .await
                .map_err(|e| fail(&e)),
            Step::SetSysctls { namespace, sysctls } => {
                let sysctls = sysctls.clone();
                netns::run_in(namespace, move || {
                    for s in &sysctls {
                        let file = std::path::Path::new("/proc/sys").join(&s.key);
                        std::fs::write(&file, &s.value).map_err(|e| {
                            io::Error::new(e.kind(), format!("{}: {e}", file.display()))
                        })?;
                    }
                    Ok(())
                })
                .map_err(|e| KernelError::step(step, e))
            }
            Step::CreateBridge {
                namespace,
                name,
                index,
            } => self
                .create_bridge(namespace, name, *index)
                .await
                .map_err(|e| fail(&e)),
            Step::CreateVeth {
                namespace,
                name,
                index,
                master,
                peer_namespace,
                peer_name,
                peer_index,
                peer_mac,
            } => self
                .create_veth(
                    namespace,
                    name,
                    *index,
                    *master,
                    peer_namespace,
                    peer_name,
                    *peer_index,
                    *peer_mac,
                )
                .await
                .map_err(|e| fail(&e)),
            Step::SetMaster {
                namespace,
                index,
                master,
                ..
            } => self
                .set_master(namespace, *index, *master)
                .await
                .map_err(|e| fail(&e)),
            Step::AddAddress {
                namespace,
                index,
                address,
                ..
            } => self
                .add_address(namespace, *index, *address)
                .await
                .map_err(|e| fail(&e)),
            Step::AddRoute {
                namespace,
                to,
                via,
                index,
                ..
            } => self
                .add_route(namespace, *to, *via, *index)
                .await
                .map_err(|e| fail(&e)),
            Step::AddNetem {
                namespace,
                index,
                impairment,
                ..
            } => {
                self.add_qdisc(
                    namespace,
                    *index,
                    "netem",
                    netem::encode_options(impairment),
                )
                .await
                .map_err(|e| match errno(&e) {
                    // The kernel answers an unknown qdisc kind with ENOENT.
                    Some(libc::ENOENT | libc::EOPNOTSUPP) => KernelError::step(
                        step,
                        format!(
                            "this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is off): {}",
                            cause(&e)
                        ),
                    ),
                    _ => fail(&e),
                })
            }
            Step::AddRateLimit {
                namespace,
                index,
                rate_bps,
                ..
            } => self
                .add_qdisc(namespace, *index, "tbf", tbf::encode_options(*rate_bps))
                .await
                .map_err(|e| fail(&e)),
            Step::CreateTunnel {
                namespace,
                name,
                index,
                local,
                remote,
                id,
            } => {
                let kind = self
                    .create_tunnel(namespace, name, *index, *local, *remote, *id)
                    .await
                    .map_err(|e| fail(&e))?;
                self.tunnels.push((namespace.clone(), name.clone(), kind));
                Ok(())
            }
            Step::GuardTunnel {
                namespace,
                local,
                peer,
            } => self
                .guard_tunnel(namespace, *local, *peer)
                .await
                .map_err(|e| fail(&e)),
            Step::AddSourceRoute {
                namespace,
                from,
                in_interface,
                table,
                via,
                index,
                ..
            } => self
                .add_source_route(namespace, *from, in_interface, *table, *via, *index)
                .await
                .map_err(|e| fail(&e)),
            Step::LockPort {
                namespace,
                index,
                peer_mac,
                ..
            } => self
                .lock_port(namespace, *index, *peer_mac)
                .await
                .map_err(|e| fail(&e)),
        }
    }

    async fn undo(&mut self, step: &Step) -> Result<(), KernelError> {
        let result = match step {
            // Only a namespace this kernel made is removed: a failed create made nothing,
            // and an existing namespace of the same name is not ours to delete.
            Step::CreateNamespace { namespace, .. } if self.handles.contains_key(namespace) => {
                return self
                    .delete_namespace(namespace)
                    .map_err(|e| KernelError::step(step, e));
            }
            Step::CreateNamespace { .. } => Ok(()),
            // A locked port and its FDB entry go with the port.
            Step::SetLinkUp { .. }
            | Step::SetMaster { .. }
            | Step::LockPort { .. }
            | Step::SetSysctls { .. } => Ok(()),
            Step::CreateBridge {
                namespace, index, ..
            }
            | Step::CreateVeth {
                namespace, index, ..
            }
            | Step::CreateTunnel {
                namespace, index, ..
            } => self.delete_link(namespace, *index).await,
            Step::GuardTunnel {
                namespace,
                local,
                peer,
            } => self.unguard_tunnel(namespace, *local, *peer).await,
            Step::AddSourceRoute {
                namespace,
                from,
                in_interface,
                table,
                via,
                index,
                ..
            } => {
                self.delete_source_route(namespace, *from, in_interface, *table, *via, *index)
                    .await
            }
            Step::AddAddress {
                namespace,
                index,
                address,
                ..
            } => self.delete_address(namespace, *index, *address).await,
            Step::AddRoute {
                namespace,
                to,
                via,
                index,
                ..
            } => self.delete_route(namespace, *to, *via, *index).await,
            Step::AddNetem {
                namespace, index, ..
            }
            | Step::AddRateLimit {
                namespace, index, ..
            } => self.delete_qdisc(namespace, *index).await,
        };
        match gone_is_ok(result) {
            Err(rtnetlink::Error::NamespaceError(_)) => Ok(()), // its namespace is gone: so is it
            other => other.map_err(|e| KernelError::step(step, format!("undo: {}", cause(&e)))),
        }
    }
}

/// Every link of the namespace `handle` is connected to.
async fn links_of(handle: &Handle) -> io::Result<Vec<LinkMessage>> {
    handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(io::Error::other)
}

/// A link's name (empty if the kernel gave none).
fn name_of(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default()
}
