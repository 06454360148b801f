//! A remoting client: one persistent TCP connection per address, many concurrent requests on it.
//!
//! Requests are matched to responses by `opaque`, so any number can be in flight on one
//! connection (the broker answers admin requests from a thread pool, out of order). A connection
//! that fails is dropped with every request on it failed at once; the next request reconnects,
//! after an exponential backoff (doubling from 250 ms up to `backoff_max`) that keeps a dead broker from
//! being hammered every cycle. Frames larger than the configured cap are refused before any
//! allocation, so a hostile peer cannot make the exporter's memory grow.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::acl::{self, Credentials};
use super::codec::{self, Command, FrameError};
use super::tls::TlsSettings;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{addr} is in reconnect backoff for {wait_ms} ms more after: {last}")]
    Backoff {
        addr: String,
        wait_ms: u64,
        last: String,
    },
    #[error("request code {code} to {addr} timed out after {ms} ms")]
    Timeout { addr: String, code: i32, ms: u64 },
    #[error("connection to {addr} closed: {reason}")]
    Closed { addr: String, reason: String },
    #[error("TLS with {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    #[error("{addr} sent a bad frame: {source}")]
    Frame {
        addr: String,
        #[source]
        source: FrameError,
    },
    #[error("{addr} answered request code {request} with code {code}: {remark}")]
    Remote {
        addr: String,
        request: i32,
        code: i32,
        remark: String,
    },
}

impl RpcError {
    /// A short, stable label for the `cause` of an error metric.
    pub fn cause(&self) -> &'static str {
        match self {
            RpcError::Connect { .. } | RpcError::Backoff { .. } => "connect",
            RpcError::Timeout { .. } => "timeout",
            RpcError::Closed { .. } => "closed",
            RpcError::Tls { .. } => "tls",
            RpcError::Frame { .. } => "bad_frame",
            RpcError::Remote { code, remark, .. } => match *code {
                super::protocol::response::NO_PERMISSION
                | super::protocol::response::USER_NOT_EXIST => "auth",
                // 4.x ACL 1.0 fails a request with SYSTEM_ERROR and the AclException's message.
                super::protocol::response::SYSTEM_ERROR if remark.contains("AclException") => {
                    "auth"
                }
                _ => "remote_error",
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_frame: usize,
    pub credentials: Option<Credentials>,
    /// Longest wait before reconnecting to an address that refused or dropped us.
    pub backoff_max: Duration,
    /// TLS from the first byte (name servers and brokers alike), or plain TCP.
    pub tls: Option<TlsSettings>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
            max_frame: codec::DEFAULT_MAX_FRAME,
            credentials: None,
            backoff_max: Duration::from_secs(30),
            tls: None,
        }
    }
}

type Pending = Arc<Mutex<HashMap<i32, oneshot::Sender<Result<Command, RpcError>>>>>;

struct Connection {
    out: mpsc::Sender<Bytes>,
    pending: Pending,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Default)]
struct Backoff {
    until: Option<Instant>,
    delay: Duration,
    last: String,
}

pub struct Client {
    config: ClientConfig,
    opaque: AtomicI32,
    conns: tokio::sync::Mutex<HashMap<String, Arc<Connection>>>,
    backoff: Mutex<HashMap<String, Backoff>>,
}

const BACKOFF_MIN: Duration = Duration::from_millis(250);

impl Client {
    pub fn new(config: ClientConfig) -> Self {
        Client {
            config,
            opaque: AtomicI32::new(1),
            conns: Default::default(),
            backoff: Default::default(),
        }
    }

    /// Sends `cmd` to `addr` and returns the response, whatever its code.
    pub async fn invoke(&self, addr: &str, mut cmd: Command) -> Result<Command, RpcError> {
        if let Some(creds) = &self.config.credentials {
            acl::sign(&mut cmd, creds);
        }
        let code = cmd.code;
        let conn = self.connection(addr).await?;
        let opaque = self.opaque.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        cmd.opaque = opaque;
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(opaque, tx);
        if conn.out.send(cmd.encode()).await.is_err() {
            lock(&conn.pending).remove(&opaque);
            return Err(RpcError::Closed {
                addr: addr.to_string(),
                reason: "writer stopped".into(),
            });
        }
        match tokio::time::timeout(self.config.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RpcError::Closed {
                addr: addr.to_string(),
                reason: "connection dropped".into(),
            }),
            Err(_) => {
                lock(&conn.pending).remove(&opaque);
                Err(RpcError::Timeout {
                    addr: addr.to_string(),
                    code,
                    ms: self.config.request_timeout.as_millis() as u64,
                })
            }
        }
    }

    /// Like [`Client::invoke`], but a response code other than SUCCESS is an error.
    pub async fn call(&self, addr: &str, cmd: Command) -> Result<Command, RpcError> {
        let request = cmd.code;
        let resp = self.invoke(addr, cmd).await?;
        if resp.code != super::protocol::response::SUCCESS {
            return Err(RpcError::Remote {
                addr: addr.to_string(),
                request,
                code: resp.code,
                remark: resp.remark.unwrap_or_default(),
            });
        }
        Ok(resp)
    }

    /// Drops connections to addresses not in `keep` (brokers that left the cluster).
    pub async fn retain(&self, keep: &(dyn Fn(&str) -> bool + Sync)) {
        self.conns.lock().await.retain(|addr, _| keep(addr));
        lock(&self.backoff).retain(|addr, _| keep(addr));
    }

    async fn connection(&self, addr: &str) -> Result<Arc<Connection>, RpcError> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(addr) {
            if c.alive.load(Ordering::Acquire) {
                return Ok(c.clone());
            }
            conns.remove(addr);
        }
        if let Some(b) = lock(&self.backoff).get(addr) {
            if let Some(until) = b.until {
                let now = Instant::now();
                if until > now {
                    return Err(RpcError::Backoff {
                        addr: addr.to_string(),
                        wait_ms: (until - now).as_millis() as u64,
                        last: b.last.clone(),
                    });
                }
            }
        }
        match self.connect(addr).await {
            Ok(c) => {
                lock(&self.backoff).remove(addr);
                conns.insert(addr.to_string(), c.clone());
                Ok(c)
            }
            Err(e) => {
                let mut backoff = lock(&self.backoff);
                let b = backoff.entry(addr.to_string()).or_default();
                b.delay =
                    (b.delay * 2).clamp(BACKOFF_MIN, self.config.backoff_max.max(BACKOFF_MIN));
                b.until = Some(Instant::now() + b.delay);
                b.last = e.to_string();
                Err(e)
            }
        }
    }

    async fn connect(&self, addr: &str) -> Result<Arc<Connection>, RpcError> {
        let connect_err = |reason: String| RpcError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_err("timed out".into()))?
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.config.tls else {
            return Ok(self.spawn(addr, stream, None));
        };
        let tls_err = |reason: String| RpcError::Tls {
            addr: addr.to_string(),
            reason,
        };
        let config = tls.client_config().map_err(tls_err)?;
        let name = tls.server_name(addr).map_err(tls_err)?;
        let has_cert = tls.cert_file.is_some();
        let stream = tokio::time::timeout(
            self.config.connect_timeout,
            tokio_rustls::TlsConnector::from(config).connect(name, stream),
        )
        .await
        .map_err(|_| RpcError::Tls {
            addr: addr.to_string(),
            reason: "handshake timed out".into(),
        })?
        .map_err(|e| RpcError::Tls {
            addr: addr.to_string(),
            reason: format!("handshake: {e}"),
        })?;
        Ok(self.spawn(addr, stream, Some(has_cert)))
    }

    /// Starts the writer and reader tasks of a connected stream; `tls` is whether a client
    /// certificate was presented, on a TLS connection.
    fn spawn<S>(&self, addr: &str, stream: S, tls: Option<bool>) -> Arc<Connection>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (out, mut out_rx) = mpsc::channel::<Bytes>(1024);
        let pending: Pending = Default::default();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));

        let w_alive = alive.clone();
        tokio::spawn(async move {
            while let Some(frame) = out_rx.recv().await {
                if wr.write_all(&frame).await.is_err() {
                    break;
                }
            }
            w_alive.store(false, Ordering::Release);
        });

        let r_pending = pending.clone();
        let r_alive = alive.clone();
        let max_frame = self.config.max_frame;
        let r_addr = addr.to_string();
        tokio::spawn(async move {
            let mut answered = false;
            let reason = loop {
                match read_frame(&mut rd, max_frame).await {
                    Ok(frame) => match codec::decode(frame) {
                        Ok(cmd) if cmd.is_response() => {
                            answered = true;
                            if let Some(tx) = lock(&r_pending).remove(&cmd.opaque) {
                                let _ = tx.send(Ok(cmd));
                            }
                        }
                        // Server-initiated requests (e.g. NOTIFY_CONSUMER_IDS_CHANGED) need no answer.
                        Ok(_) => {}
                        Err(source) => {
                            break RpcError::Frame {
                                addr: r_addr.clone(),
                                source,
                            }
                        }
                    },
                    Err(e) => break e.into_rpc(&r_addr, answered, tls),
                }
            };
            r_alive.store(false, Ordering::Release);
            for (_, tx) in lock(&r_pending).drain() {
                let _ = tx.send(Err(reason.clone()));
            }
        });

        Arc::new(Connection {
            out,
            pending,
            alive,
        })
    }
}

enum ReadError {
    Io(std::io::Error),
    Frame(FrameError),
}

impl ReadError {
    /// `answered`: the peer answered at least once on this connection; `tls`: see
    /// [`Client::spawn`].
    fn into_rpc(self, addr: &str, answered: bool, tls: Option<bool>) -> RpcError {
        match self {
            // rustls reports its errors and the peer's alerts as InvalidData.
            ReadError::Io(e) if tls.is_some() && e.kind() == std::io::ErrorKind::InvalidData => {
                let mut reason = e.to_string();
                if tls == Some(false) && !answered && reason.contains("alert") {
                    // TLS 1.3 refuses a missing client certificate after the handshake.
                    reason.push_str(" (the server may require a client certificate: set tls_cert_file and tls_key_file)");
                }
                RpcError::Tls {
                    addr: addr.to_string(),
                    reason,
                }
            }
            ReadError::Io(e) => {
                let mut reason = e.to_string();
                if tls.is_none() && !answered {
                    // What a server with tls.server.mode=enforcing does to a plain client.
                    reason.push_str(
                        " before any answer (if the server enforces TLS, set tls_enable)",
                    );
                }
                RpcError::Closed {
                    addr: addr.to_string(),
                    reason,
                }
            }
            ReadError::Frame(source) => RpcError::Frame {
                addr: addr.to_string(),
                source,
            },
        }
    }
}

async fn read_frame<R: AsyncReadExt + Unpin>(
    rd: &mut R,
    max_frame: usize,
) -> Result<Bytes, ReadError> {
    let mut prefix = [0u8; 4];
    rd.read_exact(&mut prefix).await.map_err(ReadError::Io)?;
    let len = codec::frame_length(prefix, max_frame).map_err(ReadError::Frame)?;
    let mut buf = BytesMut::zeroed(len);
    rd.read_exact(&mut buf).await.map_err(ReadError::Io)?;
    Ok(buf.freeze())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A peer that answers every request with `reply(request)` as raw bytes.
    async fn fake_peer<F>(reply: F) -> String
    where
        F: Fn(Command) -> Vec<u8> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let reply = Arc::new(reply);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let reply = reply.clone();
                tokio::spawn(async move {
                    while let Ok(frame) = read_frame(&mut sock, codec::DEFAULT_MAX_FRAME).await {
                        let Ok(req) = codec::decode(frame) else {
                            return;
                        };
                        if sock.write_all(&reply(req)).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn ok_response(req: &Command, body: &'static [u8]) -> Vec<u8> {
        let mut resp = Command {
            code: 0,
            opaque: req.opaque,
            flag: codec::FLAG_RESPONSE,
            ..Default::default()
        };
        resp.body = Bytes::from_static(body);
        resp.encode().to_vec()
    }

    fn quick() -> ClientConfig {
        ClientConfig {
            request_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_connection() {
        let addr = fake_peer(|req| ok_response(&req, b"{}")).await;
        let client = Arc::new(Client::new(quick()));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let c = client.clone();
            let a = addr.clone();
            tasks.push(tokio::spawn(async move {
                c.call(&a, Command::request(106)).await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        assert_eq!(client.conns.lock().await.len(), 1);
    }

    #[tokio::test]
    async fn garbage_peer_gives_a_frame_error() {
        let addr = fake_peer(|_| b"\x00\x00\x00\x08\x07\x00\x00\x00junk".to_vec()).await;
        let client = Client::new(quick());
        let err = client.call(&addr, Command::request(106)).await.unwrap_err();
        assert!(matches!(err, RpcError::Frame { .. }), "{err}");
        assert_eq!(err.cause(), "bad_frame");
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_without_allocation() {
        let addr = fake_peer(|_| vec![0x7f, 0xff, 0xff, 0xff]).await;
        let client = Client::new(quick());
        let err = client.call(&addr, Command::request(106)).await.unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[tokio::test]
    async fn truncated_frame_closes_the_connection() {
        let addr = fake_peer(|_| vec![0, 0, 0, 100, 0, 0]).await;
        let client = Client::new(ClientConfig {
            request_timeout: Duration::from_millis(300),
            ..quick()
        });
        // The peer sends 6 bytes of a 104-byte frame and then waits: the request times out.
        let err = client.call(&addr, Command::request(106)).await.unwrap_err();
        assert!(matches!(err, RpcError::Timeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn error_code_is_reported_with_remark() {
        let addr = fake_peer(|req| {
            let resp = Command {
                code: 16,
                opaque: req.opaque,
                flag: codec::FLAG_RESPONSE,
                remark: Some("no permission".into()),
                ..Default::default()
            };
            resp.encode().to_vec()
        })
        .await;
        let client = Client::new(quick());
        let err = client.call(&addr, Command::request(208)).await.unwrap_err();
        assert_eq!(err.cause(), "auth");
        assert!(err.to_string().contains("no permission"));
    }

    #[test]
    fn acl_1_exceptions_count_as_auth_errors() {
        let err = RpcError::Remote {
            addr: "b:10911".into(),
            request: 201,
            code: 1,
            remark: "org.apache.rocketmq.acl.common.AclException: Check signature failed for accessKey=ak".into(),
        };
        assert_eq!(err.cause(), "auth");
        let other = RpcError::Remote {
            addr: "b:10911".into(),
            request: 201,
            code: 1,
            remark: "store error".into(),
        };
        assert_eq!(other.cause(), "remote_error");
    }

    #[tokio::test]
    async fn refused_connection_enters_backoff() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let client = Client::new(quick());
        let first = client.call(&addr, Command::request(106)).await.unwrap_err();
        assert!(matches!(first, RpcError::Connect { .. }), "{first}");
        let second = client.call(&addr, Command::request(106)).await.unwrap_err();
        assert!(matches!(second, RpcError::Backoff { .. }), "{second}");
    }
}
