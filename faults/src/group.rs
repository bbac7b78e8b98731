//! One injection is often several faults (a rule set per network namespace, a freeze and a
//! read-only volume of one plan): these are applied all or none, and re-checked together.
//! The agent and the lab both go through here, so "what counts as applied" is one rule.

use crate::error::Result;
use crate::fault::{Applied, Injector};
use crate::id::InjectionId;
use crate::journal::Entry;
use crate::target::{Fault, Target};

/// What applying every part of an injection did.
#[derive(Debug, Default)]
pub struct GroupApplied {
    /// Each part as applied, in order.
    pub parts: Vec<Applied>,
}

impl GroupApplied {
    /// How many processes the parts reached (frozen or killed, including those already
    /// gone when the signal was sent).
    pub fn processes(&self) -> usize {
        self.parts
            .iter()
            .map(|a| match &a.target {
                Target::Freeze { processes } | Target::Kill { processes } => processes.len(),
                _ => 0,
            })
            .sum()
    }
}

impl Injector {
    /// Applies every part of one injection or none: a part that fails, including a process
    /// that could not be signalled (a fault on it would not hold), undoes the parts applied
    /// before it and itself, and its error is returned. Undo failures are logged; their
    /// records stay in the journal, so expiry and `cleanup_all` still revert them.
    pub fn apply_all(
        &self,
        parts: &[(InjectionId, Fault)],
        expires_at: u64,
    ) -> Result<GroupApplied> {
        let mut done = GroupApplied::default();
        for (n, (id, fault)) in parts.iter().enumerate() {
            let applied = self.apply(id, fault, expires_at).and_then(|mut applied| {
                match applied.processes.iter().position(|r| r.outcome.is_err()) {
                    Some(failed) => {
                        let failed = applied.processes.swap_remove(failed);
                        failed.outcome.map(|_| applied)
                    }
                    None => Ok(applied),
                }
            });
            match applied {
                Ok(applied) => done.parts.push(applied),
                Err(e) => {
                    for (id, _) in parts.iter().take(n + 1) {
                        if let Err(undo) = self.revert(id) {
                            tracing::error!(%id, error = %undo, "undoing a failed apply failed");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    /// Re-checks recorded parts against the system and re-applies any part found gone
    /// (the recorded target, so a re-apply never reaches new processes). Returns what was
    /// missing, each with how its re-apply went; empty when every part held.
    pub fn recheck(&self, entries: &[Entry]) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        for entry in entries {
            if let Some(what) = self.missing(entry)? {
                match self.apply(&entry.id, &entry.fault, entry.expires_at) {
                    Ok(_) => missing.push(format!("{what} (re-applied)")),
                    Err(e) => missing.push(format!("{what} (re-applying failed: {e})")),
                }
            }
        }
        Ok(missing)
    }
}
