//! The containers a shim serves, by id, each with the watches that publish its processes'
//! exits (see `exit_events.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::container::{Container, Process};
use crate::containerd::exit_events::ExitWatch;
use crate::error::ShimError;

/// A container and the watches that publish its processes' exits.
pub struct Entry {
    pub container: Arc<dyn Container>,
    init_exit: Arc<ExitWatch>,
    exec_exits: Mutex<HashMap<String, Arc<ExitWatch>>>,
}

impl Entry {
    pub fn new(container: Arc<dyn Container>, init_exit: ExitWatch) -> Self {
        Entry {
            container,
            init_exit: Arc::new(init_exit),
            exec_exits: Mutex::new(HashMap::new()),
        }
    }

    fn exec_exits(&self) -> Result<MutexGuard<'_, HashMap<String, Arc<ExitWatch>>>, ShimError> {
        self.exec_exits
            .lock()
            .map_err(|_| ShimError::Poisoned("exec exits"))
    }

    /// The exit watch of the init process (`None`) or of exec `exec`.
    pub fn exit_watch(&self, exec: Option<&str>) -> Result<Arc<ExitWatch>, ShimError> {
        let Some(exec) = exec else {
            return Ok(self.init_exit.clone());
        };
        self.exec_exits()?
            .get(exec)
            .cloned()
            .ok_or_else(|| ShimError::NotFound(format!("{} exec {exec}", self.container.id())))
    }

    pub fn watch_exec(&self, exec: &str, watch: ExitWatch) -> Result<(), ShimError> {
        self.exec_exits()?.insert(exec.to_string(), Arc::new(watch));
        Ok(())
    }

    /// Forgets a deleted exec process.
    pub fn remove_exec(&self, exec: &str) -> Result<(), ShimError> {
        self.container.remove_exec(exec)?;
        self.exec_exits()?.remove(exec);
        Ok(())
    }
}

#[derive(Default)]
pub struct ContainerTable(Mutex<HashMap<String, Arc<Entry>>>);

impl ContainerTable {
    fn lock(&self) -> Result<MutexGuard<'_, HashMap<String, Arc<Entry>>>, ShimError> {
        self.0
            .lock()
            .map_err(|_| ShimError::Poisoned("container table"))
    }

    pub fn get(&self, id: &str) -> Result<Arc<Entry>, ShimError> {
        self.lock()?
            .get(id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound(id.to_string()))
    }

    /// The process a request names (`exec` empty for the init), with its container's entry.
    pub fn process(
        &self,
        id: &str,
        exec: Option<&str>,
    ) -> Result<(Arc<Entry>, Arc<dyn Process>), ShimError> {
        let entry = self.get(id)?;
        let process = entry.container.process(exec)?;
        Ok((entry, process))
    }

    pub fn contains(&self, id: &str) -> Result<bool, ShimError> {
        Ok(self.lock()?.contains_key(id))
    }

    /// Adds the entry `make` builds unless `id` is taken; returns whether it was added. `make`
    /// runs under the table's lock, so what it does (raising TaskCreate) is ordered with it.
    pub fn insert_new(&self, id: &str, make: impl FnOnce() -> Entry) -> Result<bool, ShimError> {
        let mut table = self.lock()?;
        if table.contains_key(id) {
            return Ok(false);
        }
        table.insert(id.to_string(), Arc::new(make()));
        Ok(true)
    }

    pub fn remove(&self, id: &str) -> Result<(), ShimError> {
        self.lock()?.remove(id);
        Ok(())
    }

    pub fn is_empty(&self) -> Result<bool, ShimError> {
        Ok(self.lock()?.is_empty())
    }
}
