//! `metatiled fleet ...`: the HAProxy configuration of a fleet, the fleet as the
//! database sees it, and forgetting a node that left for good.

use crate::config::{Settings, UsageError};
use crate::fleet::haproxy::{self, DnsNodes, HaproxyOptions, NodeAddr};
use crate::source::fleet as db;
use clap::Args;

#[derive(Debug, Args)]
pub(super) struct HaproxyArgs {
    /// A node's public address, `host:port` or `host:port=weight` (HAProxy weight
    /// 1-256, default 100). Repeat for each node.
    #[arg(long = "node", value_name = "ADDR[=WEIGHT]")]
    pub nodes: Vec<NodeAddr>,
    /// Find the nodes by DNS: `name:port` resolving to every node (a compose service,
    /// a Kubernetes headless service).
    #[arg(long, value_name = "NAME:PORT")]
    pub dns: Option<String>,
    /// Most nodes the DNS name may resolve to.
    #[arg(long, default_value_t = 10, requires = "dns")]
    pub slots: u16,
    /// DNS server for --dns (repeat for more); Docker's embedded DNS by default.
    #[arg(long = "nameserver", value_name = "IP:PORT", requires = "dns")]
    pub nameservers: Vec<String>,
    /// Where HAProxy listens.
    #[arg(long, default_value = "*:8080")]
    pub listen: String,
    /// Disabled slots for nodes added at run time through the runtime API
    /// (`set server nodes/spare1 addr 10.0.0.9 port 8080`, then `... state ready`).
    #[arg(long, default_value_t = 0)]
    pub spare: u16,
    /// The runtime API's socket (needed to add nodes at run time).
    #[arg(long, value_name = "PATH")]
    pub stats_socket: Option<String>,
    /// Health check interval on /ready, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub check_inter_ms: u64,
    /// Failed checks that take a node out of the ring.
    #[arg(long, default_value_t = 3)]
    pub fall: u32,
    /// Passed checks that put it back.
    #[arg(long, default_value_t = 2)]
    pub rise: u32,
    /// HAProxy's `timeout server`, in seconds (longer than the nodes' miss timeout).
    #[arg(long, default_value_t = 60)]
    pub server_timeout_secs: u64,
}

/// `metatiled fleet haproxy-config`: prints the configuration.
pub(super) fn haproxy_config(args: HaproxyArgs) -> anyhow::Result<()> {
    let options = HaproxyOptions {
        listen: args.listen,
        nodes: args.nodes,
        dns: args.dns.map(|name| DnsNodes {
            name,
            slots: args.slots,
            nameservers: if args.nameservers.is_empty() {
                vec!["127.0.0.11:53".to_string()]
            } else {
                args.nameservers
            },
        }),
        spare: args.spare,
        stats_socket: args.stats_socket,
        check_inter_ms: args.check_inter_ms,
        fall: args.fall,
        rise: args.rise,
        server_timeout_secs: args.server_timeout_secs,
    };
    options.check().map_err(UsageError)?;
    let mut words = vec!["metatiled".to_string()];
    words.extend(std::env::args().skip(1));
    print!("{}", haproxy::render(&options, &words.join(" ")));
    Ok(())
}

/// `metatiled fleet status`: one line per node.
pub(super) async fn status(settings: Settings) -> anyhow::Result<()> {
    let pool = crate::source::build_pool(&settings.database).await?;
    let client = pool.get().await?;
    let nodes = db::fleet_status(&client, &settings.fleet.name).await?;
    let lag = |l: &Option<db::LogLag>| match l {
        None => "-".to_string(),
        Some(l) => match l.oldest_pending_secs {
            Some(secs) => format!("{} ({:.1} s)", l.pending, secs),
            None => l.pending.to_string(),
        },
    };
    println!(
        "{:<24} {:<9} {:>10} {:>16} {:>16} {:<7} version",
        "node", "state", "last seen", "changes behind", "expiries behind", "cache"
    );
    for n in &nodes {
        println!(
            "{:<24} {:<9} {:>8.1} s {:>16} {:>16} {:<7} {}",
            n.node_id,
            crate::fleet::node_state(&settings.fleet, n),
            n.last_seen_secs_ago,
            lag(&n.changes),
            lag(&n.expiries),
            if n.cache_shared { "shared" } else { "own" },
            n.version
        );
    }
    Ok(())
}

/// `metatiled fleet forget NODE`: removes a node that left for good.
pub(super) async fn forget(settings: Settings, node: &str) -> anyhow::Result<()> {
    let pool = crate::source::build_pool(&settings.database).await?;
    let client = pool.get().await?;
    if db::forget_node(&client, node).await? {
        println!("forgot node {node}: the logs no longer wait for it");
        Ok(())
    } else {
        Err(UsageError(format!("no node {node} in the fleet")).into())
    }
}
