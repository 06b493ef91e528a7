//! Who the client is: its address, scheme and request id, believing
//! forwarding headers only from configured proxies.
//!
//! In production the gateway sits behind AWS API Gateway (an HTTP API with
//! a VPC link), so the TCP peer is a proxy. `X-Forwarded-For` is read from
//! the right: each hop that is itself a trusted proxy is skipped and the
//! first one that is not is the client, so a client cannot pick its own
//! address by sending the header itself. API Gateway's request id
//! (`x-amzn-requestid` or `apigw-requestid`) becomes the request id, which
//! ties the gateway's logs to API Gateway's. From any other peer these
//! headers are ignored.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// API Gateway's request id headers, REST APIs first, then HTTP APIs.
const PROXY_REQUEST_IDS: [&str; 2] = ["x-amzn-requestid", "apigw-requestid"];

const FORWARDED_FOR: &str = "x-forwarded-for";
const FORWARDED_PROTO: &str = "x-forwarded-proto";

/// What the gateway believes about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientInfo {
    /// `None` only when the connection's peer is unknown (not over TCP).
    pub(crate) ip: Option<IpAddr>,
    /// `http` or `https` as the trusted proxy saw it; else `None`.
    pub(crate) scheme: Option<&'static str>,
    /// The proxy's request id, when a trusted proxy sent a sane one.
    pub(crate) proxy_request_id: Option<String>,
}

fn trusted(ip: IpAddr, ranges: &[IpNet]) -> bool {
    // An IPv4 peer on a dual-stack socket shows up as ::ffff:a.b.c.d.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ranges.iter().any(|net| net.contains(&ip))
}

/// One `X-Forwarded-For` entry: an address, perhaps with a port or in
/// brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse().ok())
        })
}

pub(crate) fn client_info(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    ranges: &[IpNet],
    sane_id: impl Fn(&str) -> bool,
) -> ClientInfo {
    let peer_ip = peer.map(|p| p.ip());
    let from_proxy = peer_ip.is_some_and(|ip| trusted(ip, ranges));
    if !from_proxy {
        return ClientInfo {
            ip: peer_ip,
            scheme: None,
            proxy_request_id: None,
        };
    }

    let mut ip = peer_ip;
    let hops: Vec<&str> = headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.iter().rev() {
        // A hop that does not parse was written by someone untrusted:
        // the last trusted hop is as far as the chain can be believed.
        let Some(hop_ip) = parse_hop(hop) else {
            break;
        };
        ip = Some(hop_ip);
        if !trusted(hop_ip, ranges) {
            break;
        }
    }

    // The nearest proxy appends last, so its value is the one to believe.
    let scheme = headers
        .get_all(FORWARDED_PROTO)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|p| match p.trim().to_ascii_lowercase().as_str() {
            "https" => Some("https"),
            "http" => Some("http"),
            _ => None,
        });
    let proxy_request_id = PROXY_REQUEST_IDS.iter().find_map(|name| {
        headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .filter(|id| sane_id(id))
            .map(str::to_owned)
    });
    ClientInfo {
        ip,
        scheme,
        proxy_request_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    fn sane(id: &str) -> bool {
        !id.contains(' ')
    }

    #[test]
    fn untrusted_peers_cannot_claim_an_address_or_id() {
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("apigw-requestid", "abc"),
        ]);
        let info = client_info(peer("203.0.113.9:5000"), &h, &nets(&["10.0.0.0/8"]), sane);
        assert_eq!(info.ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(info.scheme, None);
        assert_eq!(info.proxy_request_id, None);
        // No ranges at all: the same.
        let info = client_info(peer("10.0.0.1:1"), &h, &[], sane);
        assert_eq!(info.ip, Some("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right() {
        let ranges = nets(&["10.0.0.0/8", "192.0.2.0/24"]);
        // The client forged the first entry; the proxies appended the rest.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", "192.0.2.10"),
            ("x-forwarded-proto", "http, HTTPS"),
            ("x-amzn-requestid", "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"),
        ]);
        let info = client_info(peer("10.1.2.3:443"), &h, &ranges, sane);
        assert_eq!(info.ip, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(info.scheme, Some("https"));
        assert_eq!(
            info.proxy_request_id.as_deref(),
            Some("c6af9ac6-7b61-11e6-9a41-93e8deadbeef")
        );
    }

    #[test]
    fn odd_forwarded_values_stop_the_walk() {
        let ranges = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "garbage, 10.0.0.7, [2001:db8::1]:443")]);
        let info = client_info(peer("10.0.0.1:1"), &h, &ranges, sane);
        assert_eq!(info.ip, Some("2001:db8::1".parse().unwrap()));
        let h = headers(&[("x-forwarded-for", "garbage, 10.0.0.7")]);
        let info = client_info(peer("10.0.0.1:1"), &h, &ranges, sane);
        assert_eq!(info.ip, Some("10.0.0.7".parse().unwrap()));
        // An insane id from a trusted proxy is not taken either.
        let h = headers(&[
            ("apigw-requestid", "has space"),
            ("x-forwarded-proto", "gopher"),
        ]);
        let info = client_info(peer("10.0.0.1:1"), &h, &ranges, sane);
        assert_eq!(info.proxy_request_id, None);
        assert_eq!(info.scheme, None);
        // IPv4-mapped IPv6 peers match IPv4 ranges.
        let info = client_info(
            peer("[::ffff:10.0.0.1]:1"),
            &headers(&[("x-forwarded-for", "1.1.1.1")]),
            &ranges,
            sane,
        );
        assert_eq!(info.ip, Some("1.1.1.1".parse().unwrap()));
    }
}
