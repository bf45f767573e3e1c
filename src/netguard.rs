//! Which network addresses offstage may call on a user's behalf (webhooks today, fetched
//! images tomorrow). URLs come from configuration, but a name can resolve anywhere: without
//! this guard a webhook could be pointed at the metadata service, a database or the loopback
//! admin port of the host.
//!
//! Two layers: [`check_url`] resolves and vets the target before each attempt (and says why it
//! refuses), and [`GuardedResolver`] is the HTTP client's DNS resolver, so the connection can
//! only go to vetted addresses even if DNS answers differently the second time.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// True for addresses no webhook may reach unless the operator allows private targets:
/// loopback, private, link-local, carrier-grade NAT, unspecified, multicast and reserved. An
/// IPv6 address that carries an IPv4 one (mapped, compatible, translated, NAT64, 6to4, Teredo)
/// is classed by the IPv4 address it carries, since that is where a gateway would deliver it.
pub(crate) fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_private_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still routed)
                || v6.segments()[..4] == [0x100, 0, 0, 0] // discard-only 100::/64
                || v6.segments()[..2] == [0x2001, 0xdb8] // documentation 2001:db8::/32
        }
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64.0.0/10
}

/// The IPv4 address an IPv6 address embeds, in every form that carries one to a v4 host.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match s {
        // ::ffff:a.b.c.d (mapped) and ::ffff:0:a.b.c.d (translated, RFC 2765).
        [0, 0, 0, 0, 0, 0xffff, h, l] | [0, 0, 0, 0, 0xffff, 0, h, l] => Some(low(h, l)),
        // ::a.b.c.d (compatible, deprecated); `::` and `::1` are IPv6's own.
        [0, 0, 0, 0, 0, 0, h, l] if (h, l) != (0, 0) && (h, l) != (0, 1) => Some(low(h, l)),
        // 64:ff9b::/96 (NAT64, RFC 6052) and 64:ff9b:1::/48 (local-use NAT64, RFC 8215).
        [0x64, 0xff9b, 0, 0, 0, 0, h, l] | [0x64, 0xff9b, 1, _, _, _, h, l] => Some(low(h, l)),
        // 2002:AABB:CCDD::/48 (6to4): the gateway's IPv4 address follows the prefix.
        [0x2002, h, l, ..] => Some(low(h, l)),
        // 2001:0::/32 (Teredo): the client's address, obfuscated, in the last 32 bits.
        [0x2001, 0, _, _, _, _, h, l] => Some(low(!h, !l)),
        _ => None,
    }
}

/// Names that mean this host whatever DNS says (RFC 6761): `localhost` and `*.localhost`,
/// with or without the root's trailing dot.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum GuardError {
    #[error("refused: {host} is {ip}, a private, loopback or link-local address")]
    Private { host: String, ip: IpAddr },
    #[error("cannot resolve {host}: {reason}")]
    Unresolvable { host: String, reason: String },
    #[error("{0} has no host")]
    NoHost(String),
}

/// Resolves the URL's host and refuses it when any address is private (unless allowed).
pub(crate) async fn check_url(url: &Url, allow_private: bool) -> Result<(), GuardError> {
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses: Vec<IpAddr> = match url.host() {
        None => return Err(GuardError::NoHost(url.to_string())),
        Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        Some(Host::Domain(domain)) if is_local_name(domain) => {
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        }
        Some(Host::Domain(domain)) => tokio::net::lookup_host((domain, port))
            .await
            .map_err(|error| GuardError::Unresolvable {
                host: domain.to_owned(),
                reason: error.to_string(),
            })?
            .map(|address| address.ip())
            .collect(),
    };
    let host = url.host_str().unwrap_or_default().to_owned();
    if addresses.is_empty() {
        return Err(GuardError::Unresolvable { host, reason: "no addresses".to_owned() });
    }
    match addresses.into_iter().find(|ip| is_private(*ip)) {
        Some(ip) if !allow_private => Err(GuardError::Private { host, ip }),
        _ => Ok(()),
    }
}

/// The HTTP client's resolver: drops private addresses unless allowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            if is_local_name(&host) && !allow_private {
                let refusal = format!("{host} is this host");
                return Err(Box::<dyn std::error::Error + Send + Sync>::from(refusal));
            }
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> =
                resolved.filter(|address| allow_private || !is_private(address.ip())).collect();
            if allowed.is_empty() {
                let refusal = format!("{host} resolves only to private addresses");
                return Err(Box::<dyn std::error::Error + Send + Sync>::from(refusal));
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

impl GuardedResolver {
    pub(crate) fn shared(self) -> Arc<GuardedResolver> {
        Arc::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            // Every IPv6 form that carries a private IPv4 address.
            "::127.0.0.1",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo client 127.0.0.1
            "fec0::1",
            "100::1",
            "2001:db8::1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private} is private");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "::808:808",
            "::ffff:0:808:808",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7", // Teredo client 8.8.8.8
        ] {
            assert!(!is_private(public.parse().unwrap()), "{public} is public");
        }
    }

    #[test]
    fn local_names_are_this_host_with_or_without_the_trailing_dot() {
        for name in ["localhost", "localhost.", "LOCALHOST", "api.localhost", "api.localhost."] {
            assert!(is_local_name(name), "{name}");
        }
        for name in ["localhost.example.com", "mylocalhost", "example.com."] {
            assert!(!is_local_name(name), "{name}");
        }
    }

    #[tokio::test]
    async fn urls_to_private_targets_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/hook",
            "http://[::1]/hook",
            "http://localhost:8080/x",
            "http://localhost.:8080/x",
            "http://[::127.0.0.1]/x",
            "http://[::ffff:0:7f00:1]/x",
        ] {
            let url = Url::parse(url).unwrap();
            assert!(
                matches!(check_url(&url, false).await, Err(GuardError::Private { .. })),
                "{url}"
            );
            assert_eq!(check_url(&url, true).await, Ok(()), "{url} allowed");
        }
        let public = Url::parse("https://93.184.216.34/hook").unwrap();
        assert_eq!(check_url(&public, false).await, Ok(()));
    }
}
