//! The HAProxy (2.6+) configuration of a fleet, as `metatiled fleet haproxy-config`
//! prints it and `deploy/haproxy.cfg` ships it.
//!
//! - Every tile request is routed by its **metatile key** `style/z/(x>>3)/(y>>3)`
//!   (computed with sample converters: `field` and `div`), with `balance hash` and
//!   `hash-type consistent`: all 64 tiles of a metatile (its @2x twin and its UTFGrids
//!   too) go to one node, and adding or removing a node moves only that node's share.
//!   Any other request has no key and goes round robin.
//! - `sdbm avalanche` and a weight of 100 per node: more points per node on the hash
//!   ring and a well-mixed hash keep the shares within a few percent of each other
//!   (+-20% is the bound the fleet test holds them to over 1,000 metatiles).
//! - Health checks on `/ready` (fall/rise): a draining or stopped node leaves the ring.
//! - `option forwardfor`: the nodes see the client's address (`X-Forwarded-For`) once
//!   they trust the balancer (`server.trusted_proxies`), for their per-client limits.
//! - `retry-on conn-failure empty-response response-timeout` with `option redispatch`:
//!   a GET that meets a node that just died is retried on the next node of the ring
//!   instead of failing (tiles are idempotent).
//! - Nodes are listed (`--node`), found by DNS (`server-template` + `resolvers`: what
//!   `docker compose --scale` and Kubernetes headless services give), and/or joined at
//!   run time through the runtime API (`--spare` slots and `--stats-socket`).

use std::fmt::Write;

/// HAProxy's default weight for a node: leaves room both ways (1-256) and puts enough
/// points per node on the consistent-hash ring for an even spread.
pub const DEFAULT_WEIGHT: u16 = 100;
/// HAProxy's largest server weight.
pub const MAX_WEIGHT: u16 = 256;

/// One listed node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    /// `host:port` of its public listener.
    pub addr: String,
    pub weight: u16,
}

impl std::str::FromStr for NodeAddr {
    type Err = String;

    /// `host:port` or `host:port=weight`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, weight) = match text.split_once('=') {
            Some((addr, w)) => {
                let weight: u16 = w
                    .parse()
                    .ok()
                    .filter(|w| (1..=MAX_WEIGHT).contains(w))
                    .ok_or_else(|| {
                        format!("weight {w:?} is not a number from 1 to {MAX_WEIGHT}")
                    })?;
                (addr, weight)
            }
            None => (text, DEFAULT_WEIGHT),
        };
        check_host_port(addr)?;
        Ok(Self {
            addr: addr.to_string(),
            weight,
        })
    }
}

/// `host:port` with a non-empty host of plain characters and a port number.
fn check_host_port(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{addr:?} is not host:port"))?;
    let host_ok = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        });
    if !host_ok || port.parse::<u16>().is_err() {
        return Err(format!("{addr:?} is not host:port"));
    }
    Ok(())
}

/// Nodes found by DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsNodes {
    /// `name:port` whose A records are the nodes (a compose service, a headless service).
    pub name: String,
    /// Most nodes the name may resolve to.
    pub slots: u16,
    /// DNS servers (`ip:port`); Docker's embedded DNS is 127.0.0.11:53.
    pub nameservers: Vec<String>,
}

/// What the configuration is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyOptions {
    /// Where HAProxy listens for the public (`*:8080`, `127.0.0.1:80`).
    pub listen: String,
    pub nodes: Vec<NodeAddr>,
    pub dns: Option<DnsNodes>,
    /// Disabled slots (`spare1`...) for nodes joined through the runtime API.
    pub spare: u16,
    /// The runtime API's socket (`level admin`), if any.
    pub stats_socket: Option<String>,
    /// Health check interval, and checks that mark a node down / up.
    pub check_inter_ms: u64,
    pub fall: u32,
    pub rise: u32,
    /// `timeout server`: longer than the nodes' `server.miss_timeout_secs`.
    pub server_timeout_secs: u64,
}

impl Default for HaproxyOptions {
    fn default() -> Self {
        Self {
            listen: "*:8080".into(),
            nodes: Vec::new(),
            dns: None,
            spare: 0,
            stats_socket: None,
            check_inter_ms: 2000,
            fall: 3,
            rise: 2,
            server_timeout_secs: 60,
        }
    }
}

impl HaproxyOptions {
    /// Why these options make no usable configuration, if they don't.
    pub fn check(&self) -> Result<(), String> {
        if self.nodes.is_empty() && self.dns.is_none() && self.spare == 0 {
            return Err("no nodes: give --node, --dns or --spare".into());
        }
        if let Some(dns) = &self.dns {
            check_host_port(&dns.name)?;
            if dns.slots == 0 {
                return Err("--slots must be at least 1".into());
            }
            for ns in &dns.nameservers {
                check_host_port(ns)?;
            }
        }
        if self.check_inter_ms == 0 || self.fall == 0 || self.rise == 0 {
            return Err("check interval, fall and rise must be greater than 0".into());
        }
        Ok(())
    }

    /// Worst time from a node failing its checks to HAProxy marking it down.
    pub fn detection_ms(&self) -> u64 {
        self.check_inter_ms * u64::from(self.fall)
    }
}

/// The metatile key of a tile path, as HAProxy computes it (fields 2-5 of the path;
/// `y` loses its `@2x` and `.png` or `.grid.json`).
pub const METATILE_KEY_FORMAT: &str = "%[path,field(2,/)]/%[path,field(3,/)]/%[path,field(4,/),div(8)]/%[path,field(5,/),field(1,.),field(1,@),div(8)]";
/// Paths that are tiles: `/{style}/{z}/{x}/{y}.png`, `...@2x.png` and the UTFGrid
/// `....grid.json` (written by the same render as the tiles, so it goes to the same node).
pub const TILE_PATH_REGEX: &str = r"^/[^/]+/[0-9]+/[0-9]+/[0-9]+(@2x)?\.(png|grid\.json)$";

/// The configuration text.
pub fn render(o: &HaproxyOptions, generated_by: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# HAProxy configuration of a metatiled fleet, generated by:"
    );
    let _ = writeln!(s, "#   {generated_by}");
    let _ = writeln!(
        s,
        "# Tiles go to the node that owns their metatile (consistent hashing on\n\
         # style/z/x>>3/y>>3); nodes leave the ring when /ready fails {} times {} ms apart.",
        o.fall, o.check_inter_ms
    );
    s.push_str("\nglobal\n    log stdout format raw local0 notice\n");
    if let Some(sock) = &o.stats_socket {
        let _ = writeln!(s, "    stats socket {sock} mode 600 level admin");
    }
    let _ = write!(
        s,
        "\ndefaults\n    mode http\n    log global\n    option dontlognull\n\
         \x20   timeout connect 2s\n    timeout client 60s\n    timeout server {}s\n\
         \x20   timeout http-keep-alive 10s\n    timeout check 2s\n\
         \x20   # The client's address for the nodes' per-client limits (server.trusted_proxies).\n\
         \x20   option forwardfor\n\
         \x20   # A GET that meets a node that just died is replayed on the next node.\n\
         \x20   retries 3\n    option redispatch 1\n\
         \x20   retry-on conn-failure empty-response response-timeout\n",
        o.server_timeout_secs
    );
    if let Some(dns) = &o.dns {
        s.push_str("\nresolvers dns\n");
        for (i, ns) in dns.nameservers.iter().enumerate() {
            let _ = writeln!(s, "    nameserver ns{} {ns}", i + 1);
        }
        s.push_str(
            "    accepted_payload_size 8192\n    resolve_retries 3\n    timeout resolve 1s\n\
             \x20   timeout retry 1s\n    hold valid 5s\n    hold obsolete 10s\n",
        );
    }
    let _ = write!(
        s,
        "\nfrontend tiles\n    bind {}\n    acl tile path -m reg {TILE_PATH_REGEX}\n\
         \x20   http-request set-var-fmt(txn.metatile) \"{METATILE_KEY_FORMAT}\" if tile\n\
         \x20   default_backend nodes\n",
        o.listen
    );
    let _ = write!(
        s,
        "\nbackend nodes\n    balance hash var(txn.metatile)\n    hash-type consistent sdbm avalanche\n\
         \x20   option httpchk GET /ready\n    http-check expect status 200\n\
         \x20   default-server check inter {}ms fall {} rise {} weight {DEFAULT_WEIGHT}\n",
        o.check_inter_ms, o.fall, o.rise
    );
    for (i, n) in o.nodes.iter().enumerate() {
        let _ = write!(s, "    server node{} {}", i + 1, n.addr);
        if n.weight != DEFAULT_WEIGHT {
            let _ = write!(s, " weight {}", n.weight);
        }
        s.push('\n');
    }
    if let Some(dns) = &o.dns {
        let _ = writeln!(
            s,
            "    server-template dns {} {} resolvers dns init-addr none resolve-prefer ipv4",
            dns.slots, dns.name
        );
    }
    for i in 1..=o.spare {
        let _ = writeln!(s, "    server spare{i} 127.0.0.1:1 disabled");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_take_an_optional_weight() {
        let n: NodeAddr = "10.0.0.1:8080".parse().unwrap();
        assert_eq!(n.weight, DEFAULT_WEIGHT);
        let n: NodeAddr = "tiles-2.internal:8080=200".parse().unwrap();
        assert_eq!((n.addr.as_str(), n.weight), ("tiles-2.internal:8080", 200));
        assert!("10.0.0.1".parse::<NodeAddr>().is_err());
        assert!("10.0.0.1:8080=0".parse::<NodeAddr>().is_err());
        assert!("10.0.0.1:8080=300".parse::<NodeAddr>().is_err());
        assert!("bad host:8080".parse::<NodeAddr>().is_err());
    }

    #[test]
    fn the_config_hashes_tiles_on_their_metatile_and_checks_ready() {
        let o = HaproxyOptions {
            nodes: vec![
                "127.0.0.1:9001".parse().unwrap(),
                "127.0.0.1:9002=50".parse().unwrap(),
            ],
            spare: 2,
            stats_socket: Some("/run/haproxy.sock".into()),
            ..Default::default()
        };
        o.check().unwrap();
        let cfg = render(&o, "test");
        assert!(cfg.contains("balance hash var(txn.metatile)"), "{cfg}");
        assert!(cfg.contains("hash-type consistent"), "{cfg}");
        assert!(cfg.contains("option httpchk GET /ready"), "{cfg}");
        assert!(cfg.contains("option forwardfor"), "{cfg}");
        assert!(cfg.contains(r"(png|grid\.json)$"), "{cfg}");
        assert!(cfg.contains("server node1 127.0.0.1:9001\n"), "{cfg}");
        assert!(
            cfg.contains("server node2 127.0.0.1:9002 weight 50\n"),
            "{cfg}"
        );
        assert!(cfg.contains("server spare2 127.0.0.1:1 disabled"), "{cfg}");
        assert!(cfg.contains("stats socket /run/haproxy.sock"), "{cfg}");
        assert!(!cfg.contains("resolvers"), "{cfg}");
    }

    #[test]
    fn dns_nodes_fill_server_template_slots() {
        let o = HaproxyOptions {
            dns: Some(DnsNodes {
                name: "node:8080".into(),
                slots: 10,
                nameservers: vec!["127.0.0.11:53".into()],
            }),
            ..Default::default()
        };
        o.check().unwrap();
        let cfg = render(&o, "test");
        assert!(cfg.contains("nameserver ns1 127.0.0.11:53"), "{cfg}");
        assert!(
            cfg.contains("server-template dns 10 node:8080 resolvers dns"),
            "{cfg}"
        );
        assert!(HaproxyOptions::default().check().is_err());
    }
}
