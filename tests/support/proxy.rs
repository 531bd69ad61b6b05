//! A TCP proxy to put between the server and PostgreSQL, to break the way to the
//! database on purpose: [`ProxyMode::Pass`] forwards, [`ProxyMode::Refuse`] closes the
//! listener and every connection (as if the proxy had been killed: connects are
//! refused), [`ProxyMode::BlackHole`] accepts connections and holds them open but
//! forwards nothing, on new and existing connections alike (a silent peer). Back to
//! `Pass`, held bytes flow again and the listener is bound on the same port.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Pass,
    Refuse,
    BlackHole,
}

pub struct PgProxy {
    pub addr: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    task: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    /// Listens on a free port of 127.0.0.1, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (mode, rx) = watch::channel(ProxyMode::Pass);
        let task = tokio::spawn(serve(listener, addr, upstream, rx));
        Self { addr, mode, task }
    }

    /// Starts a proxy to the database of `url`; returns it and the URL through it.
    pub async fn for_url(url: &str) -> (Self, String) {
        let config: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            other => panic!("the proxy needs a TCP database host, got {other:?}"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let upstream = tokio::net::lookup_host((host.as_str(), port))
            .await
            .expect("resolve the database host")
            .next()
            .expect("an address for the database host");
        let proxy = Self::start(upstream).await;
        let user = config.get_user().unwrap_or("postgres");
        let password = config
            .get_password()
            .map(|p| format!(":{}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        let db = config.get_dbname().unwrap_or(user);
        let proxied = format!("postgres://{user}{password}@{}/{db}", proxy.addr);
        (proxy, proxied)
    }

    pub fn set_mode(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut mode: watch::Receiver<ProxyMode>,
) {
    let mut listener = Some(listener);
    let mut pipes = tokio::task::JoinSet::new();
    loop {
        let current = *mode.borrow_and_update();
        if current == ProxyMode::Refuse {
            // Killed: no listener, no connections.
            listener = None;
            pipes.abort_all();
        } else if listener.is_none() {
            listener = Some(
                TcpListener::bind(addr)
                    .await
                    .expect("rebind the proxy's port"),
            );
        }
        match &listener {
            Some(l) => tokio::select! {
                accepted = l.accept() => {
                    if let Ok((client, _)) = accepted {
                        pipes.spawn(pipe(client, upstream, mode.clone()));
                    }
                }
                changed = mode.changed() => if changed.is_err() { return },
            },
            None => {
                if mode.changed().await.is_err() {
                    return;
                }
            }
        }
        while pipes.try_join_next().is_some() {}
    }
}

/// Waits while the mode is black-hole; `false` when the proxy refuses (or is gone).
async fn until_passing(mode: &mut watch::Receiver<ProxyMode>) -> bool {
    match mode.wait_for(|m| *m != ProxyMode::BlackHole).await {
        Ok(m) => *m == ProxyMode::Pass,
        Err(_) => false,
    }
}

async fn pipe(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<ProxyMode>) {
    if !until_passing(&mut mode).await {
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut from_client, mut from_server) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        tokio::select! {
            read = client.read(&mut from_client) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if server.write_all(&from_client[..n]).await.is_err() { return },
            },
            read = server.read(&mut from_server) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if client.write_all(&from_server[..n]).await.is_err() { return },
            },
            changed = mode.changed() => {
                if changed.is_err() || !until_passing(&mut mode).await {
                    return;
                }
            }
        }
    }
}
