//! Where webhooks may be delivered: never into the hub's own network.
//!
//! A webhook URL whose host is, or resolves to, a loopback, private,
//! link-local, unspecified, shared (CGNAT), multicast or reserved address is
//! refused, unless an operator lists the network in
//! `webhook_allowed_networks`. The check runs when a subscription is created
//! or changed (a literal address, or a name that resolves to a refused one,
//! is a 422) and again at every delivery: the delivery client resolves names
//! through [`CheckedResolver`], which drops refused addresses, so a name that
//! later resolves elsewhere (DNS rebinding) is not followed. Numeric host
//! forms (`2130706433`, `0x7f.1`) are parsed as the addresses they are by the
//! URL parser, so they are checked like any literal address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;

/// How long the check at creation waits for a name to resolve; a name that
/// does not resolve in time is accepted like one that does not resolve.
pub const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`); a bare address
/// is a network of one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(raw: &str) -> Option<Network> {
        let raw = raw.trim();
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let address: IpAddr = address.parse().ok()?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Network { address, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is not a public destination, or `None` when it is one.
pub fn internal_reason(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, _, _] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("a multicast, broadcast or reserved address")
    } else {
        None
    }
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if first & 0xfe00 == 0xfc00 {
        Some("a private (unique local) address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else {
        None
    }
}

/// `Err` with the reason when `ip` may not be delivered to.
pub fn check_address(ip: IpAddr, allowed: &[Network]) -> Result<(), String> {
    match internal_reason(ip) {
        Some(_) if allowed.iter().any(|n| n.contains(ip)) => Ok(()),
        Some(reason) => Err(format!(
            "{ip} is {reason}; list its network in webhook_allowed_networks to allow it"
        )),
        None => Ok(()),
    }
}

/// The host of `url` as an address, when it is one (numeric forms included).
fn literal_address(url: &Url) -> Option<IpAddr> {
    // The parser has already turned numeric forms into dotted addresses.
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Checks a URL at creation: a literal address, and every address its name
/// resolves to now. A name that does not resolve (within [`LOOKUP_TIMEOUT`])
/// is accepted: it is checked again at every delivery.
pub async fn check_url(raw: &str, allowed: &[Network]) -> Result<(), String> {
    let url = Url::parse(raw).map_err(|e| format!("not a valid URL: {e}"))?;
    if let Some(ip) = literal_address(&url) {
        return check_address(ip, allowed);
    }
    let Some(host) = url.host_str() else {
        return Err("must have a host".into());
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port))).await;
    if let Ok(Ok(addresses)) = lookup {
        for address in addresses {
            check_address(address.ip(), allowed)?;
        }
    }
    Ok(())
}

/// Checks a URL just before a delivery: only literal addresses (names are
/// checked by [`CheckedResolver`] when the client connects).
pub fn check_literal(raw: &str, allowed: &[Network]) -> Result<(), String> {
    let url = Url::parse(raw).map_err(|e| format!("not a valid URL: {e}"))?;
    match literal_address(&url) {
        Some(ip) => check_address(ip, allowed),
        None => Ok(()),
    }
}

/// The delivery client's DNS resolver: resolves with the system resolver and
/// keeps only the addresses deliveries may go to.
pub struct CheckedResolver {
    pub allowed: Arc<Vec<Network>>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let mut refused = None;
            let kept: Vec<SocketAddr> = resolved
                .filter(|address| match check_address(address.ip(), &allowed) {
                    Ok(()) => true,
                    Err(reason) => {
                        refused = Some(reason);
                        false
                    }
                })
                .collect();
            if kept.is_empty() {
                let reason = refused.unwrap_or_else(|| "no address".into());
                return Err(Box::new(RefusedDestination(reason))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A delivery refused because the destination is internal.
#[derive(Debug, thiserror::Error)]
#[error("destination refused: {0}")]
pub struct RefusedDestination(pub String);

/// True when `error` (or its cause) is a refused destination.
pub fn is_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if e.is::<RefusedDestination>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_and_internal_forms_are_refused() {
        for raw in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::1]/",
            "http://0.0.0.0/",
            "http://169.254.169.254/latest",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00::1]/",
        ] {
            assert!(check_literal(raw, &[]).is_err(), "{raw}");
        }
        assert!(check_literal("http://93.184.216.34/", &[]).is_ok());
        let loopback = [Network::parse("127.0.0.0/8").unwrap()];
        assert!(check_literal("http://2130706433/", &loopback).is_ok());
        assert!(check_literal("http://10.0.0.1/", &loopback).is_err());
    }
}
