//! Names: the process-wide interner of node names and table of live nodes (used to route
//! wake-ups and replies from threads outside the runtime), and each node's registry of process
//! names.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use crate::error::RegisterError;
use crate::node::NodeShared;
use crate::process::{NodeId, Pid};

/// Longest process name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

#[derive(Default)]
struct Interner {
    /// Name of every node ever started in this OS process, by id.
    names: Vec<String>,
    /// Live nodes by name.
    live: HashMap<String, (NodeId, Weak<NodeShared>)>,
}

static INTERNER: Mutex<Option<Interner>> = Mutex::new(None);

fn with_interner<R>(f: impl FnOnce(&mut Interner) -> R) -> R {
    let mut guard = INTERNER.lock().unwrap_or_else(PoisonError::into_inner);
    f(guard.get_or_insert_with(Interner::default))
}

/// A fresh id for a node start named `name`: every start gets its own, so a pid of a stopped
/// node never reaches a process of a later node of the same name (a start that failed gives
/// its id back, [`give_back_node_id`]: it handed out no pid). `None` after 65,535 starts
/// in one OS process (pids and wakers carry 16 bits of it).
pub(crate) fn new_node_id(name: &str) -> Option<NodeId> {
    with_interner(|i| {
        if i.names.len() >= usize::from(u16::MAX) {
            return None;
        }
        let id = NodeId(i.names.len() as u32);
        i.names.push(name.to_owned());
        Some(id)
    })
}

pub(crate) fn node_name(id: NodeId) -> String {
    with_interner(|i| i.names.get(id.0 as usize).cloned().unwrap_or_else(|| format!("node#{}", id.0)))
}

/// Gives back `id`, handed out to a start that failed before it handed out a pid of it (its
/// shards, if any ran, joined): the next start takes it again. Only the last id handed out
/// can be (ids index the names); another, taken by a start since, stays used. Its entry in the
/// live nodes goes too (a start whose first shard thread was refused never stopped, so never
/// marked itself dead): `live_node` of the id's next node must not find it.
pub(crate) fn give_back_node_id(id: NodeId) {
    with_interner(|i| {
        i.live.retain(|_, (live, _)| *live != id);
        if i.names.len() == id.0 as usize + 1 {
            i.names.pop();
        }
    })
}

/// Whether a live node has `name` (a start asks before it takes an id).
pub(crate) fn is_live(name: &str) -> bool {
    with_interner(|i| i.live.get(name).is_some_and(|(_, w)| w.strong_count() > 0))
}

/// Marks a node live; false when a live node already has its name.
pub(crate) fn set_live(node: &Arc<NodeShared>) -> bool {
    with_interner(|i| {
        if i.live.get(&node.name).is_some_and(|(_, w)| w.strong_count() > 0) {
            return false;
        }
        i.live.insert(node.name.clone(), (node.id, Arc::downgrade(node)));
        true
    })
}

/// Marks the node with this id dead (its name may be started again).
pub(crate) fn set_dead(id: NodeId) {
    with_interner(|i| i.live.retain(|_, (live, _)| *live != id))
}

/// The live node with this id (slow path: wake-ups and replies from foreign threads).
pub(crate) fn live_node(id: NodeId) -> Option<Arc<NodeShared>> {
    with_interner(|i| i.live.values().find(|(live, _)| *live == id).and_then(|(_, w)| w.upgrade()))
}

/// One node's process names.
#[derive(Debug, Default)]
pub(crate) struct Names {
    map: RwLock<HashMap<Box<str>, Pid>>,
}

pub(crate) fn check_name(name: &str) -> Result<(), RegisterError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(RegisterError::InvalidName(name.to_owned()));
    }
    Ok(())
}

impl Names {
    pub(crate) fn resolve(&self, name: &str) -> Option<Pid> {
        self.map.read().unwrap_or_else(PoisonError::into_inner).get(name).copied()
    }

    pub(crate) fn register(&self, name: &str, pid: Pid) -> Result<(), RegisterError> {
        check_name(name)?;
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        match map.entry(name.into()) {
            Entry::Occupied(_) => Err(RegisterError::NameTaken(name.to_owned())),
            Entry::Vacant(v) => {
                v.insert(pid);
                Ok(())
            }
        }
    }

    /// Removes `name` if it still names `pid`.
    pub(crate) fn unregister(&self, name: &str, pid: Pid) -> bool {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.get(name) == Some(&pid) {
            map.remove(name);
            return true;
        }
        false
    }
}
