//! [`WebServer`]: an `SO_REUSEPORT` listener on every chosen shard of a node (the kernel
//! spreads connections over them; a port another process listens on is refused, not
//! shared), each accepting into connections on its own shard. The
//! listener is the meta-process's I/O source; responses find their connection through
//! [`deliver`].

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};

use super::conn::Connection;
use super::handler::Handler;
use super::request::ReplyTo;
use super::stats::{ServerStats, ShardStats, WebServerStats};
use crate::error::WebServerError;
use crate::http::{BodyBound, HttpLimits, Request, Response, Spares, StreamWatch};
use crate::node::{NodeHandle, route};
use crate::process::{NodeId, ShardId};
use crate::shard::io::IoSource;
use crate::shard::{Readiness, Shard, TimerKey, with_current};

/// Options of a [`WebServer`].
#[derive(Clone)]
pub struct WebServerOptions {
    /// The address to listen on (loopback in tests: `127.0.0.1`).
    pub host: String,
    /// The port (0: pick a free one; [`WebServer::local_addr`] tells which).
    pub port: u16,
    /// Who answers the requests.
    pub handler: Arc<dyn Handler>,
    /// Bounds on what clients may send.
    pub limits: HttpLimits,
    /// The shards that listen (default: every shard of the node).
    pub shards: Option<Vec<ShardId>>,
    /// The listen backlog of each listener.
    pub backlog: i32,
}

impl fmt::Debug for WebServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebServerOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("limits", &self.limits)
            .field("shards", &self.shards)
            .finish()
    }
}

impl WebServerOptions {
    /// Listens on `host:port` with `handler`, default limits, on every shard.
    pub fn new(host: impl Into<String>, port: u16, handler: impl Handler) -> Self {
        WebServerOptions {
            host: host.into(),
            port,
            handler: Arc::new(handler),
            limits: HttpLimits::default(),
            shards: None,
            backlog: 1024,
        }
    }
}

/// A running web server: it listens until [`stop`](Self::stop) is called or it is dropped
/// (connections already open are served until they close or the node stops). So a server kept
/// in an actor's state ends with the actor, however it ends — a panic included — and the port
/// is free again before the actor's supervisor hears of it: a restart binds it anew (as Ergo's
/// web server, a meta-process, ends with its parent). [`detach`](Self::detach) leaves it
/// running until the node stops.
#[derive(Debug)]
pub struct WebServer {
    addr: SocketAddr,
    node: NodeHandle,
    id: u64,
    shards: Vec<ShardId>,
    stats: Arc<ServerStats>,
    listening: Arc<Listening>,
    /// Dropping it does not stop it.
    detached: bool,
}

/// What stopping a server takes from any thread: whether it was stopped, and a duplicate of
/// each listener's descriptor, shut down by `stop` (or by a `start` that failed) so the
/// listeners stop listening then and there, whichever thread calls — on Linux, a listening
/// socket shut down for reading leaves the listen queue (connects are refused, `accept`
/// fails) and its port can be bound again. Each shard then closes its own listener.
#[derive(Debug, Default)]
pub(crate) struct Listening {
    stopped: AtomicBool,
    dups: Mutex<Vec<StdListener>>,
}

impl Listening {
    /// Stops listening on every listener at once; false if that was done before.
    fn stop(&self) -> bool {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return false;
        }
        let dups = std::mem::take(&mut *self.dups.lock().unwrap_or_else(PoisonError::into_inner));
        for dup in dups {
            // (Elsewhere than Linux this may fail: the shards' closing below still stops it.)
            let _ = socket2::SockRef::from(&dup).shutdown(std::net::Shutdown::Read);
        }
        true
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

static SERVER_IDS: AtomicU64 = AtomicU64::new(1);
static CONNECTION_IDS: AtomicU64 = AtomicU64::new(1);

/// How long `start` waits for each shard to take its listener.
const INSTALL_WAIT: Duration = Duration::from_secs(10);

impl WebServer {
    /// Binds a listener per chosen shard and starts serving. Callable from any thread,
    /// including a process on one of the node's shards. From a thread that is no shard's it
    /// returns once every shard has taken its listener; from a process (of this node or
    /// another) once every listener is bound and listening, its own shard's taken, the
    /// others' taken at their next turn (connects wait in the backlog meanwhile): a shard
    /// never waits on another. Should one of them fail to take it then (the kernel out of
    /// memory for its poll), the server stops everywhere and the log says why.
    pub fn start(node: &NodeHandle, options: WebServerOptions) -> Result<WebServer, WebServerError> {
        let shared = node.shared();
        let shards = match &options.shards {
            Some(list) if list.is_empty() => return Err(WebServerError::NoShards),
            Some(list) => list.clone(),
            None => (0..shared.shards.len()).map(|i| ShardId(i as u16)).collect(),
        };
        if let Some(bad) = shards.iter().find(|s| s.index() >= shared.shards.len()) {
            return Err(WebServerError::NoSuchShard(*bad));
        }
        if let Some((_, twice)) = shards.iter().enumerate().find(|(i, s)| shards[..*i].contains(s)) {
            return Err(WebServerError::DuplicateShard(*twice));
        }
        if let Some(why) = options.limits.invalid() {
            return Err(WebServerError::InvalidLimits(why));
        }
        if shared.is_stopping() {
            return Err(WebServerError::Stopped);
        }
        let mut addr = (options.host.as_str(), options.port)
            .to_socket_addrs()
            .map_err(WebServerError::Bind)?
            .next()
            .ok_or_else(|| WebServerError::Bind(std::io::ErrorKind::AddrNotAvailable.into()))?;
        let mut listeners = Vec::with_capacity(shards.len());
        let listening = Arc::new(Listening::default());
        for i in 0..shards.len() {
            let l = bind(addr, options.backlog, i == 0).map_err(WebServerError::Bind)?;
            addr = l.local_addr().map_err(WebServerError::Bind)?;
            let dup = l.try_clone().map_err(WebServerError::Bind)?;
            listening.dups.lock().unwrap_or_else(PoisonError::into_inner).push(dup);
            listeners.push(l);
        }
        let id = SERVER_IDS.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(ServerStats::new(shards.len()));
        // On a shard thread (of this node or another), `start` waits for no other shard: two
        // processes starting servers at once would wait on each other (a trial found both
        // shards frozen for 10 s, then refused). The listeners listen already (bound above):
        // the other shards take theirs at their next turn, and one that fails closes the
        // server everywhere and says why in the log, as no caller waits for it.
        let caller = with_current(|s| s.map(|s| (s.node.id, s.id)));
        let (done, installed) = mpsc::channel();
        for (i, (shard, listener)) in shards.iter().copied().zip(listeners).enumerate() {
            let handler = options.handler.clone();
            let limits = options.limits.capped();
            let done = done.clone();
            let stats = (stats.clone(), i);
            let listening = listening.clone();
            let all = if caller.is_some() { shards.clone() } else { Vec::new() };
            on_shard(shared.id, shard, move |s| {
                let r = install(s, id, listener, handler, limits, stats, listening.clone());
                if let Err(e) = &r
                    && caller.is_some_and(|c| c != (s.node.id, s.id))
                    && listening.stop()
                {
                    log::error!("web server on {addr}: shard {} could not take its listener ({e}); stopped", s.id.0);
                    close_everywhere(s.node.id, &all, id);
                }
                let _ = done.send(r);
            });
        }
        drop(done);
        let failed = if caller.is_some() {
            // What ran here already (this shard's listener, if it is one of them).
            installed.try_iter().find_map(Result::err).map(WebServerError::Bind)
        } else {
            shards.iter().find_map(|_| match installed.recv_timeout(INSTALL_WAIT) {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(WebServerError::Bind(e)),
                Err(_) => Some(WebServerError::Stopped),
            })
        };
        if let Some(failed) = failed {
            // The listeners installed, or still to be (a late task runs before this one on
            // its shard), are closed: no server nobody can stop.
            listening.stop();
            close_everywhere(shared.id, &shards, id);
            return Err(failed);
        }
        Ok(WebServer { addr, node: node.clone(), id, shards, stats, listening, detached: false })
    }

    /// Leaves the server running until the node stops: dropping this no longer stops it
    /// (nothing can then, but the node's end).
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// What its listeners and connections did, summed over its shards: connections open,
    /// accepted, refused at the cap; failed accepts; requests refused before any handler saw
    /// them, by status; 504s; slow clients cut. Readable from any thread, after `stop` too.
    pub fn stats(&self) -> WebServerStats {
        self.stats.sum()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening, on every shard, from any thread: when it returns, connects are
    /// refused and the port can be bound again (a new server on it starts; on Linux, see
    /// `Listening`). Connections already open are served until they close or the node stops;
    /// connections still waiting in a listener's backlog are reset by the kernel. Each shard
    /// then closes its listener: called from a thread that is no shard's, `stop` waits for
    /// that too (at most 10 s in all; a node that is stopping ends the wait); called from a
    /// process (of this node or another), it closes its own shard's listener at once and asks
    /// the other shards without waiting for them (a shard never waits on another: two shards
    /// stopping servers at once would wait on each other). Stopping twice does nothing more;
    /// nor does stopping a server whose node stopped (that closed it).
    pub fn stop(&self) {
        if !self.listening.stop() {
            return;
        }
        let id = self.id;
        self.on_every_shard(move |s| close_listener(s, id));
    }

    /// Stops listening ([`stop`](Self::stop)) and ends the open connections gracefully, as a
    /// server behind a proxy or a load balancer does for a rolling restart: one with requests
    /// read answers them — and the request it is reading, if any — the last answer with
    /// `Connection: close`, and closes once it is written (a client retries what it pipelined
    /// behind it on a new connection); an idle one answers the next request that comes within
    /// a second (its client may have sent it already) the same way, else closes then; so does
    /// one whose last answer streams, once the stream is written (its head, out before the
    /// drain, could not say `Connection: close`). Streams
    /// run until their senders end them (nothing tells a sender the server drains: a service
    /// that drains tells its stream holders itself). Returns once every shard has told its connections
    /// (from a process, its own shard's at once, the others' later: see `stop`);
    /// [`stats`](Self::stats)`().connections` counts what is left (the node's end cuts
    /// whatever still is).
    pub fn drain(&self) {
        self.stop();
        let id = self.id;
        self.on_every_shard(move |s| drain_connections(s, id));
    }

    /// Runs `task` on each of its shards. From a thread that is no shard's, it returns once
    /// they all ran it (at most 10 s in all; a node that is stopping ends the wait: a task
    /// dropped unrun drops its sender). On any shard thread — of this node or another: a
    /// review found two nodes dropping each other's servers blocked both for 10 s — it runs
    /// at once on its own shard and waits for no other.
    fn on_every_shard(&self, task: impl Fn(&Rc<Shard>) + Clone + Send + 'static) {
        let node = self.node.shared().id;
        if with_current(|s| s.is_some()) {
            for &shard in &self.shards {
                on_shard(node, shard, task.clone());
            }
            return;
        }
        let (done, ran) = mpsc::channel();
        for &shard in &self.shards {
            let (done, task) = (done.clone(), task.clone());
            route::run_on(
                node,
                shard,
                Box::new(move |s: &Rc<Shard>| {
                    task(s);
                    let _ = done.send(());
                }),
            );
        }
        drop(done);
        let deadline = Instant::now() + INSTALL_WAIT;
        for _ in &self.shards {
            let left = deadline.saturating_duration_since(Instant::now());
            if ran.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}

/// Drains the connections of server `id` on this shard (see [`WebServer::drain`]).
fn drain_connections(shard: &Rc<Shard>, id: u64) {
    let conns = shard.io_filter(|s| s.as_connection().is_some_and(|c| c.server.id == id));
    for (token, src) in conns {
        if let Some(c) = src.as_connection() {
            c.drain(shard, token);
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        if !self.detached {
            self.stop();
        }
    }
}

/// A listener on `addr`, in one `SO_REUSEPORT` group with the server's others. The `first` is
/// bound before it joins the group (the option set after `bind`, before `listen`), so a port
/// another process listens on is refused (`AddrInUse`) instead of shared: with the option
/// set before `bind`, a second server (a stale instance, a wrong port) would bind silently
/// and take half the connections. The others bind with it set, and join.
fn bind(addr: SocketAddr, backlog: i32, first: bool) -> std::io::Result<StdListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if !first {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if first {
        socket.set_reuse_port(true)?;
    }
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// What one shard keeps of a server.
pub(crate) struct ServerShared {
    pub(crate) id: u64,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) limits: HttpLimits,
    /// Open connections of this server on this shard.
    pub(crate) connections: Cell<usize>,
    /// Bytes waiting to be written on this server's connections on this shard that stream,
    /// as each last counted them (`HttpLimits::max_stream_bytes_per_shard`).
    pub(crate) stream_bytes: Cell<usize>,
    /// The bytes of request bodies being read on this shard's connections, as each last
    /// counted them (`HttpLimits::max_body_bytes_per_shard`).
    pub(crate) body_bytes: Cell<usize>,
    /// Request boxes and I/O buffers its connections share (see `http::spares`).
    pub(crate) spares: Rc<Spares>,
    /// Asks the handler for the bound of a request's body (every connection's codec).
    pub(crate) body_bound: BodyBound,
    /// The server's counters, and which of them are this shard's.
    stats: (Arc<ServerStats>, usize),
    /// Whether it was stopped (its listeners then fail to accept, and close).
    listening: Arc<Listening>,
    /// Open connections by client, when `HttpLimits::max_connections_per_client` bounds them.
    clients: RefCell<HashMap<ClientKey, usize>>,
}

/// Whom a connection is counted under for `HttpLimits::max_connections_per_client`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(u32),
    /// The /64.
    V6(u64),
}

impl ClientKey {
    fn of(peer: SocketAddr) -> ClientKey {
        match peer.ip().to_canonical() {
            std::net::IpAddr::V4(ip) => ClientKey::V4(u32::from(ip)),
            std::net::IpAddr::V6(ip) => ClientKey::V6((u128::from(ip) >> 64) as u64),
        }
    }
}

impl ServerShared {
    /// This shard's counters.
    pub(crate) fn stats(&self) -> &ShardStats {
        self.stats.0.shard(self.stats.1)
    }

    /// One connection fewer (of `peer`).
    pub(crate) fn closed_one(&self, peer: Option<SocketAddr>) {
        let open = self.connections.get() - 1;
        self.connections.set(open);
        self.stats().set_connections(open);
        if self.limits.max_connections_per_client != usize::MAX
            && let Some(peer) = peer
        {
            let mut clients = self.clients.borrow_mut();
            let key = ClientKey::of(peer);
            if let Some(n) = clients.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    clients.remove(&key);
                }
            }
        }
    }

    /// Whether `peer` may open one connection more (`max_connections_per_client`); counted if
    /// so. Nothing is counted without that bound.
    fn admit_client(&self, peer: SocketAddr) -> bool {
        let bound = self.limits.max_connections_per_client;
        if bound == usize::MAX {
            return true;
        }
        let mut clients = self.clients.borrow_mut();
        let n = clients.entry(ClientKey::of(peer)).or_insert(0);
        if *n >= bound {
            return false;
        }
        *n += 1;
        true
    }
}

struct Listener {
    server: Rc<ServerShared>,
    socket: RefCell<TcpListener>,
    /// Since when `accept` fails (out of descriptors, say), and how often since.
    failing: Cell<Option<Failing>>,
    /// The one retry armed after a failure, until it fires or the listener closes (kept
    /// apart from `failing`: a success between failures must not forget it, or each such
    /// flap would add a timer chain).
    retry: Cell<Option<TimerKey>>,
}

/// A run of failed accepts: a warning at its start and then at most every
/// [`ACCEPT_WARN_EVERY`], a line when it ends.
#[derive(Clone, Copy)]
struct Failing {
    since: Instant,
    attempts: u64,
    warned: Instant,
}

fn install(
    shard: &Rc<Shard>,
    id: u64,
    listener: StdListener,
    handler: Arc<dyn Handler>,
    limits: HttpLimits,
    stats: (Arc<ServerStats>, usize),
    listening: Arc<Listening>,
) -> std::io::Result<()> {
    let body_bound = super::conn::body_bound(handler.clone());
    let server = Rc::new(ServerShared {
        id,
        handler,
        limits,
        connections: Cell::new(0),
        stream_bytes: Cell::new(0),
        body_bytes: Cell::new(0),
        spares: Spares::new(),
        body_bound,
        stats,
        listening,
        clients: RefCell::new(HashMap::new()),
    });
    let source = Listener {
        server,
        socket: RefCell::new(TcpListener::from_std(listener)),
        failing: Cell::new(None),
        retry: Cell::new(None),
    };
    shard.io_insert(Rc::new(source), Interest::READABLE).map(drop)
}

/// Closes server `id`'s listener on each of `shards`: at once on the calling shard, by a
/// task on the others (not waited for).
fn close_everywhere(node: NodeId, shards: &[ShardId], id: u64) {
    for &shard in shards {
        on_shard(node, shard, move |s| close_listener(s, id));
    }
}

/// Runs `task` on `shard` of `node`: at once when called there, else through its inbox.
fn on_shard(node: NodeId, shard: ShardId, task: impl FnOnce(&Rc<Shard>) + Send + 'static) {
    match with_current(|s| s.filter(|s| s.node.id == node && s.id == shard).cloned()) {
        Some(s) => task(&s),
        None => route::run_on(node, shard, Box::new(task)),
    }
}

fn close_listener(shard: &Rc<Shard>, id: u64) {
    let found = shard.io_find(|s| s.as_any().downcast_ref::<Listener>().is_some_and(|l| l.server.id == id));
    if let Some((token, src)) = found
        && let Some(l) = src.as_any().downcast_ref::<Listener>()
    {
        l.close(shard, token);
    }
}

/// After an accept error, the next try.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// While accepts keep failing, a warning at most this often.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// Connections accepted per readiness event before other work runs.
const ACCEPTS_PER_EVENT: usize = 64;

/// An accept error of one connection (it went away, or its network did), to be passed over as
/// `accept(2)` advises: the next connection may be fine.
fn connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    // EPROTO (71 on Linux): a protocol error on that connection.
    matches!(
        e.kind(),
        Interrupted | ConnectionAborted | ConnectionReset | NetworkDown | NetworkUnreachable | HostUnreachable
    ) || cfg!(target_os = "linux") && e.raw_os_error() == Some(71)
}

impl Listener {
    fn accept(&self, shard: &Rc<Shard>, token: Token) {
        for _ in 0..ACCEPTS_PER_EVENT {
            let accepted = self.socket.borrow().accept();
            match accepted {
                Ok((stream, peer)) => self.serve(shard, stream, peer),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Nothing waits: a run of failures, if any, is over (one success between
                    // failures does not end it: under steady churn at the limit, it would
                    // log twice for every connection).
                    if self.failing.get().is_some() {
                        self.recovered(shard);
                    }
                    return;
                }
                Err(e) if connection_error(&e) => {}
                Err(e) => return self.failed(shard, token, &e),
            }
        }
        // More may be waiting: continue after this turn's work.
        shard.io_flush_later(token);
    }

    /// Out of descriptors, say: connections already queued would wait for the next edge, so
    /// one retry is armed (a readiness event meanwhile tries too, but arms no other: a
    /// timer per event made hundreds of tries and warnings a second).
    #[cold]
    fn failed(&self, shard: &Rc<Shard>, token: Token, e: &std::io::Error) {
        if self.server.listening.stopped() {
            // Shut down by `stop` (from another thread, say): not a failure, the end.
            return self.close(shard, token);
        }
        let now = shard.now();
        self.server.stats().accept_error();
        let mut f = self.failing.get().unwrap_or(Failing { since: now, attempts: 0, warned: now });
        f.attempts += 1;
        if f.attempts == 1 {
            log::warn!(target: "pinion::web", "{}: accept failed: {e} (retrying every {ACCEPT_RETRY:?})", shard.id);
        } else if now >= f.warned + ACCEPT_WARN_EVERY {
            f.warned = now;
            let secs = now.duration_since(f.since).as_secs();
            log::warn!(target: "pinion::web", "{}: accept still failing after {secs} s ({} tries): {e}", shard.id, f.attempts);
        }
        if self.retry.get().is_none() {
            self.retry.set(Some(shard.io_timer(now + ACCEPT_RETRY, token)));
        }
        self.failing.set(Some(f));
    }

    /// Closes it, with the retry it may have armed (a timer left would fire on the next
    /// source to get its token).
    fn close(&self, shard: &Rc<Shard>, token: Token) {
        // Every path here ends the whole server (its stop, a failed start, the node's end):
        // the other listeners stop listening too, and the duplicates let the port go (a
        // review: after `node.stop()` they kept it listening while the `WebServer` lived).
        self.server.listening.stop();
        if let Some(key) = self.retry.take() {
            shard.io_cancel_timer(key);
        }
        shard.io_remove(token, &mut *self.socket.borrow_mut());
    }

    #[cold]
    fn recovered(&self, shard: &Rc<Shard>) {
        if let Some(f) = self.failing.take() {
            let ms = shard.now().duration_since(f.since).as_millis();
            log::warn!(target: "pinion::web", "{}: accepting again after {ms} ms ({} failed tries)", shard.id, f.attempts);
        }
    }

    fn serve(&self, shard: &Rc<Shard>, stream: mio::net::TcpStream, peer: SocketAddr) {
        let server = &self.server;
        if server.connections.get() >= server.limits.max_connections_per_shard {
            // Best effort: tell the client, then close.
            server.stats().over_capacity();
            server.stats().accepted();
            return refuse(stream);
        }
        if !server.admit_client(peer) {
            server.stats().over_client_capacity();
            server.stats().accepted();
            return refuse(stream);
        }
        let _ = stream.set_nodelay(true);
        let id = CONNECTION_IDS.fetch_add(1, Ordering::Relaxed);
        // Counted open first: a connection that cannot be registered is uncounted by its drop
        // (its client's count with it), as any connection that ends.
        server.connections.set(server.connections.get() + 1);
        let conn = Connection::new(id, server.clone(), stream, peer, shard.now());
        match shard.io_insert(Rc::new(conn), Interest::READABLE | Interest::WRITABLE) {
            Ok(token) => {
                // Open for workers to see (`WebRequest::is_client_gone`): before any request
                // of it is read. (Past the table's ~16 M tokens, never seen gone.)
                shard.remote().connections.opened(token.0, id);
                server.stats().set_connections(server.connections.get())
            }
            Err(e) => log::warn!(target: "pinion::web", "{}: cannot register a connection: {e}", shard.id),
        }
        // Counted accepted once counted open: a reader of the stats that sees it accepted sees
        // it open, or closed with what it counted in (a model-based trial read a connection
        // accepted and not yet open as gone, and its refusal then came in later).
        server.stats().accepted();
    }
}

/// Answers a connection refused at a cap 503 and closes it. What its client sent already (16
/// KiB at most) is read off first: closed with it unread, the connection would be reset, and
/// a client may see the reset before the 503 (review 73: 6 in 10 clients that sent their
/// request at once were reset). Bytes that come after the close still reset it.
fn refuse(mut stream: mio::net::TcpStream) {
    let _ = std::io::Write::write(&mut stream, OVERLOADED);
    let mut sink = [0u8; 4096];
    for _ in 0..4 {
        match std::io::Read::read(&mut stream, &mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

const OVERLOADED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: 1\r\nconnection: close\r\n\r\n";

impl IoSource for Listener {
    fn ready(self: Rc<Self>, shard: &Rc<Shard>, token: Token, _ready: Readiness) {
        self.accept(shard, token);
    }
    fn timeout(self: Rc<Self>, shard: &Rc<Shard>, token: Token, _now: Instant) {
        // The retry fired: none is armed now.
        self.retry.set(None);
        self.accept(shard, token);
    }
    fn flush(self: Rc<Self>, shard: &Rc<Shard>, token: Token) {
        self.accept(shard, token);
    }
    fn shutdown(self: Rc<Self>, shard: &Rc<Shard>, token: Token) {
        self.close(shard, token);
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn register(&self, registry: &Registry, token: Token, interest: Interest) -> std::io::Result<()> {
        registry.register(&mut *self.socket.borrow_mut(), token, interest)
    }
}

/// What travels back to a connection.
pub(crate) enum Delivery {
    /// The response (and the request, for the connection to reuse its buffers).
    Response(Response, Option<Box<Request>>),
    Chunk(Chunk),
    End,
    Abort,
    /// After a stream's head: what the connection keeps while the stream is open.
    Watch(StreamWatch),
}

/// A chunk of a streamed body: its sender's own, or one several streams share (a broadcast,
/// copied only as each connection encodes it).
pub(crate) enum Chunk {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl std::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Owned(c) => c,
            Chunk::Shared(c) => c,
        }
    }
}

/// Sends `d` to its connection: directly on its shard, through the shard's inbox from
/// elsewhere. Dropped if the connection is gone.
pub(crate) fn deliver(to: ReplyTo, d: Delivery) {
    let d = match d {
        Delivery::Response(mut resp, request) => return deliver_response(to, &mut resp, request),
        d => d,
    };
    // The shard first, the delivery outside the closure: a `Delivery` is big, moved once.
    let here = with_current(|here| here.filter(|s| to.is_on(s)).cloned());
    match here {
        Some(s) => deliver_local(&s, to, d),
        None => {
            route::run_on(to.node, to.shard, Box::new(move |s: &Rc<Shard>| deliver_local(s, to, d)));
        }
    }
}

/// Sends a response to its connection, as [`deliver`]. On the connection's shard it is encoded
/// from where it is (no `Delivery` built, nothing moved: the caller drops `resp`); it is taken
/// (an empty response left behind) only to wait for its turn or to travel.
#[inline]
pub(crate) fn deliver_response(to: ReplyTo, resp: &mut Response, request: Option<Box<Request>>) {
    if let Err(request) = deliver_response_here(to, resp, request) {
        let d = Delivery::Response(resp.take(), request);
        route::run_on(to.node, to.shard, Box::new(move |s: &Rc<Shard>| deliver_local(s, to, d)));
    }
}

/// [`deliver_response`] when the connection is on this shard; else the request back, and the
/// caller sends both there (see [`deliver_response_home`]).
#[inline]
pub(crate) fn deliver_response_here(
    to: ReplyTo,
    resp: &mut Response,
    mut request: Option<Box<Request>>,
) -> Result<(), Option<Box<Request>>> {
    // Answered while its connection hands it over (a plain function): no lookup at all.
    if super::dispatch::answer_now(to.conn, to.seq, resp, &mut request) {
        return Ok(());
    }
    at_home(to, request, |s, request| {
        with_connection(s, to, |c| c.deliver_response(s, to.token, to.seq, resp, request))
    })
}

/// Runs `f` with `value` when this thread is the shard of `to`'s connection; else `value` back
/// (for the caller to send there).
#[inline(always)]
fn at_home<T>(to: ReplyTo, value: T, f: impl FnOnce(&Shard, T)) -> Result<(), T> {
    with_current(|here| match here.filter(|s| to.is_on(s)) {
        Some(s) => {
            f(s, value);
            Ok(())
        }
        None => Err(value),
    })
}

/// A request that goes unanswered (skipped as expired, or its client gone) back to its
/// connection, to be reused, when the connection is on this shard; else the request back (the
/// caller sends it there and hands it to [`take_back_home`]).
pub(crate) fn take_back(to: ReplyTo, request: Box<Request>) -> Result<(), Box<Request>> {
    at_home(to, request, |s, request| with_connection(s, to, |c| c.take_back(request)))
}

/// [`take_back`] on the connection's shard, for a request that came from another.
pub(crate) fn take_back_home(shard: &Shard, to: ReplyTo, request: Box<Request>) {
    with_connection(shard, to, |c| c.take_back(request));
}

/// A response that came from another shard to its connection's, on that shard.
pub(crate) fn deliver_response_home(shard: &Shard, to: ReplyTo, resp: Response, request: Option<Box<Request>>) {
    deliver_local(shard, to, Delivery::Response(resp, request));
}

/// Runs `f` on the connection `to` names, if it is still there (tokens are reused; ids not).
#[inline(always)]
fn with_connection(shard: &Shard, to: ReplyTo, f: impl FnOnce(&Connection)) {
    if let Some(src) = shard.io_get(to.token)
        && let Some(c) = src.as_connection().filter(|c| c.id == to.conn)
    {
        f(c);
    }
}

fn deliver_local(shard: &Shard, to: ReplyTo, d: Delivery) {
    with_connection(shard, to, |c| c.deliver(shard, to.token, to.seq, d));
}

/// Sets a request's deadline; only on the connection's own shard. Inline: the common case is
/// a handler setting it while the connection dispatches the request (a thread-local note).
#[inline]
pub(crate) fn set_deadline(to: &ReplyTo, at: Instant) {
    if !super::dispatch::note_deadline(to.conn, to.seq, at) {
        set_deadline_later(*to, at);
    }
}

#[inline(never)]
fn set_deadline_later(to: ReplyTo, at: Instant) {
    with_current(|here| {
        if let Some(s) = here.filter(|s| to.is_on(s)) {
            with_connection(s, to, |c| c.set_deadline(s, to.token, to.seq, at));
        }
    });
}
