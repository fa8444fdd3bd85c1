//! What outbound `fetch` may reach. Loopback, private, link-local, carrier-grade NAT, metadata
//! and other non-public addresses are refused, in whatever spelling they arrive (the URL
//! parser normalises `2130706433` and `0x7f000001`; IPv4-mapped and -embedded IPv6 addresses
//! are unwrapped), after DNS resolution and on every redirect hop, unless the node's
//! `[fetch] allow` names the host.
//!
//! Two checks cover every request deno_fetch sends: a request hook for IP-literal hosts (it
//! runs for each hop, on the isolate's thread), and a DNS resolver for names.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use deno_error::JsErrorBox;
use deno_fetch::dns::{Resolve, Resolving};
use hyper_util::client::legacy::connect::dns::Name;

/// One `[fetch] allow` entry: a host, and the one port it is open on (any port when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    host: String,
    port: Option<u16>,
}

/// The outbound policy of a node.
#[derive(Debug, Default)]
pub struct FetchPolicy {
    allow: Vec<Allowed>,
}

impl FetchPolicy {
    /// A policy that refuses non-public addresses except for the hosts listed
    /// (`"127.0.0.1:9000"`, `"[::1]:8080"`, `"db.internal"`).
    pub fn new(allow: &[String]) -> FetchPolicy {
        let allow = allow
            .iter()
            .map(|entry| {
                let entry = entry.to_ascii_lowercase();
                let (host, port) = match entry.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(':') && p.parse::<u16>().is_ok() => {
                        (h.to_string(), p.parse().ok())
                    }
                    _ => (entry.clone(), None),
                };
                let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
                let host =
                    host.parse::<IpAddr>().map(|ip| canonical(ip).to_string()).unwrap_or(host);
                Allowed { host, port }
            })
            .collect();
        FetchPolicy { allow }
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        self.allow.iter().any(|a| a.host == host && a.port.is_none_or(|p| p == port))
    }

    fn names_host(&self, host: &str) -> bool {
        self.allow.iter().any(|a| a.host == host)
    }

    /// Checks a request's destination before anything is sent.
    fn check(&self, host: &str, port: u16) -> Result<(), String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        match bare.parse::<IpAddr>() {
            Ok(ip) => {
                let ip = canonical(ip);
                if is_public(ip) || self.allows(&ip.to_string(), port) {
                    Ok(())
                } else {
                    Err(format!("fetch to {host}:{port} refused: not a public address"))
                }
            }
            // A name listed only with other ports is not open on this one.
            Err(_) if self.names_host(&bare) && !self.allows(&bare, port) => {
                Err(format!("fetch to {host}:{port} refused: that port is not allowed"))
            }
            Err(_) => Ok(()),
        }
    }
}

/// The IPv4 address inside an IPv4-mapped, -compatible, NAT64 or 6to4 IPv6 address; other
/// addresses as they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
            };
            if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
                return IpAddr::V4(embedded(s[6], s[7])); // IPv4-compatible ::a.b.c.d
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return IpAddr::V4(embedded(s[6], s[7])); // NAT64 64:ff9b::/96
            }
            if s[0] == 0x2002 {
                return IpAddr::V4(embedded(s[1], s[2])); // 6to4 2002::/16
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local() // 169.254/16, the cloud metadata address among them
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0 // "this network"
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64/10
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || v6 == Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)
                || (first == 0x2001 && v6.segments()[1] == 0xdb8)) // documentation
        }
    }
}

thread_local! {
    /// The policy of the isolate running on this thread, for the request hook.
    static POLICY: RefCell<Option<Arc<FetchPolicy>>> = const { RefCell::new(None) };
}

/// Makes `policy` the one the request hook applies on this thread (that of the isolate being
/// polled; `None` between polls).
pub(crate) fn install(policy: Option<Arc<FetchPolicy>>) {
    POLICY.with(|p| *p.borrow_mut() = policy);
}

/// deno_fetch's request hook: runs for every request it sends, redirect hops included.
pub(crate) fn request_hook(
    request: &mut http::Request<deno_fetch::ReqBody>,
) -> Result<(), JsErrorBox> {
    let uri = request.uri();
    let Some(host) = uri.host() else {
        return Err(JsErrorBox::type_error("fetch refused: the URL has no host"));
    };
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    POLICY.with(|p| match &*p.borrow() {
        Some(policy) => policy.check(host, port).map_err(JsErrorBox::type_error),
        None => Err(JsErrorBox::type_error("fetch refused: no outbound policy on this thread")),
    })
}

/// Resolves names for deno_fetch and refuses those that lead to a non-public address,
/// unless `[fetch] allow` names them. The policy is set when the isolate gets its function.
#[derive(Debug, Default)]
pub(crate) struct PolicyResolver(pub std::sync::RwLock<Arc<FetchPolicy>>);

impl PolicyResolver {
    pub fn set(&self, policy: Arc<FetchPolicy>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = policy;
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        Box::pin(async move {
            let host = name.as_str().to_ascii_lowercase();
            let addrs = policy.resolve_name(&host, 0).await?;
            Ok(addrs.into_iter())
        })
    }
}

impl FetchPolicy {
    /// The addresses of `host`, refused when one is not public and `[fetch] allow` does not
    /// name the host.
    async fn resolve_name(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        if !self.names_host(host) {
            if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "fetch to {host} refused: it resolves to {}, not a public address",
                        bad.ip()
                    ),
                ));
            }
        }
        Ok(addrs)
    }

    /// Where a connection to `host:port` may go (an outbound WebSocket): the destination
    /// checked as `fetch` checks it, then its addresses as the resolver checks them.
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        self.check(host, port)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        self.resolve_name(&bare, port).await.map_err(|e| e.to_string())
    }
}

/// The policy installed on this thread (that of the isolate being polled).
pub(crate) fn current() -> Option<Arc<FetchPolicy>> {
    POLICY.with(|p| p.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(host: &str, port: u16) -> bool {
        FetchPolicy::new(&[]).check(host, port).is_err()
    }

    #[test]
    fn every_non_public_address_is_refused() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "255.255.255.255",
            "[::1]",
            "[::]",
            "[fc00::1]",
            "[fd00:ec2::254]",
            "[fe80::1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[::ffff:10.0.0.1]",
            "[::127.0.0.1]",
            "[64:ff9b::a9fe:a9fe]",
            "[2002:7f00:1::]",
            "[ff02::1]",
        ] {
            assert!(refused(host, 80), "{host} must be refused");
        }
    }

    #[test]
    fn public_addresses_and_names_pass_the_hook() {
        for host in [
            "93.184.215.14",
            "1.1.1.1",
            "[2606:4700::1111]",
            "example.com",
            "100.128.0.1",
            "172.32.0.1",
        ] {
            assert!(!refused(host, 443), "{host} must pass");
        }
    }

    #[test]
    fn allow_entries_open_one_host_and_port() {
        let policy =
            FetchPolicy::new(&["127.0.0.1:9000".into(), "[::1]".into(), "db.internal:5432".into()]);
        assert!(policy.check("127.0.0.1", 9000).is_ok());
        assert!(policy.check("127.0.0.1", 9001).is_err());
        assert!(
            policy.check("[::ffff:127.0.0.1]", 9000).is_ok(),
            "the same address, spelled as IPv6"
        );
        assert!(policy.check("[::1]", 1234).is_ok());
        assert!(policy.check("db.internal", 5432).is_ok());
        assert!(policy.check("db.internal", 22).is_err());
        assert!(policy.names_host("db.internal"));
    }
}
