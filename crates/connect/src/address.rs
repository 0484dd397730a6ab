//! Which network addresses a connector or a webhook may reach. Loopback, private, link-local,
//! shared (CGNAT), multicast and unspecified addresses are refused unless the operator allows
//! them by CIDR (`TVERR_CONNECTOR_ALLOW`): a steward must not turn Tverr into a way into the
//! machine's own services or the cloud's metadata endpoint. Names are resolved once and the
//! connection goes to the address that was checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::ConnectError;

/// The addresses the operator allows beyond the public ones.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allowed: Vec<(IpAddr, u8)>,
    /// The setting a refusal names (`TVERR_CONNECTOR_ALLOW` when none is given).
    setting: Option<&'static str>,
}

impl AddressPolicy {
    /// From a comma-separated list of CIDRs (`127.0.0.1/32,10.0.0.0/8,::1/128`); an address
    /// without a prefix length is one address.
    pub fn parse(text: &str) -> Result<Self, ConnectError> {
        Self::parse_setting(text, "TVERR_CONNECTOR_ALLOW")
    }

    /// The same, read from the operator's `setting`, which errors and refusals name.
    pub fn parse_setting(text: &str, setting: &'static str) -> Result<Self, ConnectError> {
        let mut allowed = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (addr, bits) = match part.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (part, None),
            };
            let ip: IpAddr = addr.parse().map_err(|_| ConnectError::invalid(setting, format!("{part:?} is not an address or CIDR")))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| ConnectError::invalid(setting, format!("{part:?}: prefix length 0–{max}")))?,
            };
            allowed.push((ip, bits));
        }
        Ok(Self { allowed, setting: Some(setting) })
    }

    /// Whether the operator allows `ip` explicitly.
    fn allows(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|(net, bits)| within(ip, *net, *bits))
    }

    /// `ip` if it is public or allowed, else why not.
    pub fn check(&self, ip: IpAddr) -> Result<IpAddr, ConnectError> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.allows(ip) || !is_internal(ip) {
            Ok(ip)
        } else {
            Err(ConnectError::Refused(format!(
                "{ip} is a loopback, private or link-local address; the operator must allow it ({})",
                self.setting.unwrap_or("TVERR_CONNECTOR_ALLOW")
            )))
        }
    }

    /// The addresses `host:port` resolves to, each checked; refused if any one is not allowed
    /// (a name that resolves to a public and a private address is not trusted).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, ConnectError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| ConnectError::Source(format!("cannot resolve {host}: {e}")))?
                .collect(),
        };
        let first = *addrs.first().ok_or_else(|| ConnectError::Source(format!("{host} has no address")))?;
        for a in &addrs {
            self.check(a.ip()).map_err(|e| match e {
                // The address is not told: a refusal must not map the inside's names.
                ConnectError::Refused(_) => ConnectError::Refused(format!(
                    "{host} is not an address Tverr may reach (loopback, private or link-local); the operator must allow it ({})",
                    self.setting.unwrap_or("TVERR_CONNECTOR_ALLOW")
                )),
                other => other,
            })?;
        }
        Ok(SocketAddr::new(self.check(first.ip())?, port))
    }
}

fn within(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && matches!(ip.octets()[2], 0 | 2))
        || (a == 192 && b == 88 && ip.octets()[2] == 99)
        || (a == 198 && (18..20).contains(&b))
        || (a == 198 && b == 51 && ip.octets()[2] == 100)
        || (a == 203 && b == 0 && ip.octets()[2] == 113)
        || a >= 240
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let s = ip.segments();
    // IPv4-compatible (::a.b.c.d) and IPv4-translated (::ffff:0:a.b.c.d) forms carry an IPv4
    // address that a stack may reach; they are never a public IPv6 address.
    let embeds_v4 = (s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff)) || (s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0);
    embeds_v4
        || ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // Site-local (deprecated, still routed inside some networks).
        || (first & 0xffc0) == 0xfec0
        || (first == 0x64 && ip.segments()[1] == 0xff9b)
        || (first == 0x2002)
        // Teredo, the discard prefix and documentation.
        || (first == 0x2001 && s[1] == 0)
        || (first == 0x0100 && s[1..4] == [0; 3])
        || (first == 0x2001 && s[1] == 0x0db8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let none = AddressPolicy::default();
        for bad in [
            "fec0::1",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "100::1",
            "192.88.99.1",
            "198.51.100.1",
            "203.0.113.9",
            "192.0.2.1",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "224.0.0.1",
            "198.18.0.1",
            "198.19.255.1",
            "::7f00:1",
            "::ffff:0:7f00:1",
        ] {
            assert!(none.check(bad.parse().unwrap()).is_err(), "{bad}");
        }
        for good in ["8.8.8.8", "2001:4860:4860::8888", "151.101.1.1"] {
            assert!(none.check(good.parse().unwrap()).is_ok(), "{good}");
        }
        let loopback = AddressPolicy::parse("127.0.0.1/32, ::1").unwrap();
        assert!(loopback.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(loopback.check("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(loopback.check("127.0.0.2".parse().unwrap()).is_err());
        assert!(loopback.check("::1".parse().unwrap()).is_ok());
        assert!(AddressPolicy::parse("10.0.0.0/33").is_err());
        assert!(AddressPolicy::parse("intranett").is_err());
    }

    #[tokio::test]
    async fn names_are_checked_by_every_address_they_resolve_to() {
        let none = AddressPolicy::default();
        assert!(matches!(none.resolve("localhost", 80).await, Err(ConnectError::Refused(_))));
        assert!(matches!(none.resolve("[::1]", 80).await, Err(ConnectError::Refused(_))));
        let loopback = AddressPolicy::parse("127.0.0.0/8,::1").unwrap();
        assert!(loopback.resolve("127.0.0.1", 80).await.is_ok());
    }
}
