//! Process addresses: [`Pid`], [`ProcessId`], [`Alias`], [`ShardId`], [`NodeId`] and the
//! [`Target`] any of them converts into.

use std::fmt;

/// A node's identity inside this OS process: one per node start.
///
/// A node started again under the same name gets a new id, so pids of the old one are refused
/// (`NodeDown`), never delivered to the new node's processes. Two live nodes never share a name
/// (the second start fails with `StartError::NameTaken`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The node's name.
    pub fn name(self) -> String {
        crate::node::registry::node_name(self)
    }
}

/// The index of a shard (one pinned thread) inside its node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ShardId(pub u16);

impl ShardId {
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {}", self.0)
    }
}

/// The address of one incarnation of a process.
///
/// A pid names a node, a shard, a slot in that shard's process table and the slot's
/// generation. When the process ends the generation moves on, so a stale pid is answered with
/// `NoSuchProcess` and never reaches the slot's next owner.
/// Generations never wrap: a slot whose generations are used up (2³² − 1 incarnations) is
/// retired for good, costing one table entry.
///
/// The layout is fixed (`repr(C)`, the shard next to the node, padding after the shard) so
/// that the send path's reads of a pid's fields never straddle how the pid was written; with
/// the shard last, a widened read of it crossed the end of the copy and stalled on store
/// forwarding once per same-shard send.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C)]
pub struct Pid {
    pub(crate) node: NodeId,
    pub(crate) shard: ShardId,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

/// The slot number of the pseudo-process "the node itself": the sender of messages sent from
/// outside the runtime through a `NodeHandle`.
pub(crate) const NODE_SLOT: u32 = u32::MAX;

impl Pid {
    /// The node this process lives on.
    pub fn node(&self) -> NodeId {
        self.node
    }
    /// The shard this process lives on.
    pub fn shard(&self) -> ShardId {
        self.shard
    }
    /// True for the pseudo-pid that stands for code outside the runtime (a `NodeHandle`).
    pub fn is_external(&self) -> bool {
        self.slot == NODE_SLOT
    }
    pub(crate) fn external(node: NodeId) -> Pid {
        Pid { node, shard: ShardId(0), slot: NODE_SLOT, generation: 0 }
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_external() {
            return write!(f, "<{}.external>", self.node.name());
        }
        write!(f, "<{}.{}.{}.{}>", self.node.name(), self.shard.0, self.slot, self.generation)
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pid<{}.{}.{}.{}>", self.node.0, self.shard.0, self.slot, self.generation)
    }
}

/// A registered name on a node: the address that survives restarts.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ProcessId {
    /// The registered name.
    pub name: String,
    /// The node's name.
    pub node: String,
}

impl ProcessId {
    /// A name on a node.
    pub fn new(name: impl Into<String>, node: impl Into<String>) -> Self {
        ProcessId { name: name.into(), node: node.into() }
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.node)
    }
}

/// An extra address of a process, created and deleted by it at will.
///
/// Messages sent to an alias reach its process (they count against its mailbox bound like any
/// other message). Once the process ends or deletes the alias, sending to it fails at once
/// (`UnknownAlias`) from any shard or thread. A message already accepted when the alias is
/// deleted is dropped at delivery and counted as a dead letter (a *call* through it gets
/// `UnknownAlias` then).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Alias {
    pub(crate) owner: Pid,
    pub(crate) id: u64,
}

impl Alias {
    /// The process this alias leads to.
    pub fn owner(&self) -> Pid {
        self.owner
    }
}

impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<alias {} of {}>", self.id, self.owner)
    }
}

impl fmt::Debug for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Alias({}, {:?})", self.id, self.owner)
    }
}

/// Where a message goes: a pid, an alias, a local name, or a name on a node.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A process incarnation.
    Pid(Pid),
    /// An alias of a process.
    Alias(Alias),
    /// A name registered on the local node.
    Name(&'a str),
    /// A name on a named node.
    ProcessId(&'a ProcessId),
}

impl From<Pid> for Target<'_> {
    fn from(p: Pid) -> Self {
        Target::Pid(p)
    }
}
impl From<&Pid> for Target<'_> {
    fn from(p: &Pid) -> Self {
        Target::Pid(*p)
    }
}
impl From<Alias> for Target<'_> {
    fn from(a: Alias) -> Self {
        Target::Alias(a)
    }
}
impl<'a> From<&'a str> for Target<'a> {
    fn from(n: &'a str) -> Self {
        Target::Name(n)
    }
}
impl<'a> From<&'a String> for Target<'a> {
    fn from(n: &'a String) -> Self {
        Target::Name(n)
    }
}
impl<'a> From<&'a ProcessId> for Target<'a> {
    fn from(p: &'a ProcessId) -> Self {
        Target::ProcessId(p)
    }
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Pid(p) => p.fmt(f),
            Target::Alias(a) => a.fmt(f),
            Target::Name(n) => write!(f, "name {n:?}"),
            Target::ProcessId(p) => p.fmt(f),
        }
    }
}
