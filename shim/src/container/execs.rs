//! The exec processes of a container (`kubectl exec`, CRI ExecSync), by exec id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::ShimError;

pub struct Execs<P>(Mutex<HashMap<String, Arc<P>>>);

impl<P> Default for Execs<P> {
    fn default() -> Self {
        Execs(Mutex::new(HashMap::new()))
    }
}

impl<P> Execs<P> {
    fn table(&self) -> Result<MutexGuard<'_, HashMap<String, Arc<P>>>, ShimError> {
        self.0.lock().map_err(|_| ShimError::Poisoned("exec table"))
    }

    pub fn add(&self, container: &str, exec_id: &str, process: Arc<P>) -> Result<(), ShimError> {
        let mut table = self.table()?;
        if table.contains_key(exec_id) {
            return Err(ShimError::AlreadyExists(format!(
                "{container} exec {exec_id}"
            )));
        }
        table.insert(exec_id.to_string(), process);
        Ok(())
    }

    pub fn get(&self, container: &str, exec_id: &str) -> Result<Arc<P>, ShimError> {
        self.table()?
            .get(exec_id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound(format!("{container} exec {exec_id}")))
    }

    pub fn remove(&self, container: &str, exec_id: &str) -> Result<Arc<P>, ShimError> {
        self.table()?
            .remove(exec_id)
            .ok_or_else(|| ShimError::NotFound(format!("{container} exec {exec_id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_id_is_added_once_found_and_removed() {
        let execs: Execs<u8> = Execs::default();
        execs.add("c", "e1", Arc::new(1)).expect("added");
        assert!(matches!(
            execs.add("c", "e1", Arc::new(2)),
            Err(ShimError::AlreadyExists(_))
        ));
        assert_eq!(*execs.get("c", "e1").expect("found"), 1);
        execs.remove("c", "e1").expect("removed");
        let err = execs.get("c", "e1").expect_err("gone");
        assert_eq!(
            err.to_string(),
            "container c exec e1 not found in this shim"
        );
    }
}
