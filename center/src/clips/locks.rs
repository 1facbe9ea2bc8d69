//! Turns per clip: calls for one clip (one key) wait for each other, calls for
//! different clips do not.

use lookout_core::sync::Locked;
use std::collections::HashSet;
use std::sync::{Condvar, Mutex};

/// The clips being worked on, so calls for one clip take turns while calls for others
/// go on (a mutex per clip, created on demand and gone when unused).
#[derive(Default)]
pub(super) struct KeyLocks {
    busy: Mutex<HashSet<String>>,
    freed: Condvar,
}

/// Holds one clip's turn until dropped.
pub(super) struct KeyTurn<'a> {
    locks: &'a KeyLocks,
    name: String,
}

impl KeyLocks {
    pub(super) fn take(&self, name: &str) -> KeyTurn<'_> {
        let mut busy = self.busy.locked();
        while busy.contains(name) {
            busy = match self.freed.wait(busy) {
                Ok(guard) => guard,
                // The holder panicked: `Locked`'s policy, carry on with the set.
                Err(poisoned) => poisoned.into_inner(),
            };
        }
        busy.insert(name.to_string());
        KeyTurn {
            locks: self,
            name: name.to_string(),
        }
    }
}

impl Drop for KeyTurn<'_> {
    fn drop(&mut self) {
        self.locks.busy.locked().remove(&self.name);
        self.locks.freed.notify_all();
    }
}
