//! An additional process in a native container (`kubectl exec`, CRI ExecSync).

use std::sync::Mutex;

use crate::io::StdioPaths;

use super::Lifecycle;

pub struct ExecProcess {
    pub exec_id: String,
    pub process: oci_spec::runtime::Process,
    pub stdio: StdioPaths,
    pub terminal: bool,
    pub lifecycle: Lifecycle,
    pid: Mutex<Option<i32>>,
}

impl ExecProcess {
    pub fn new(
        exec_id: String,
        process: oci_spec::runtime::Process,
        stdio: StdioPaths,
        terminal: bool,
    ) -> Self {
        ExecProcess {
            exec_id,
            process,
            stdio,
            terminal,
            lifecycle: Lifecycle::default(),
            pid: Mutex::new(None),
        }
    }

    pub fn set_pid(&self, pid: i32) {
        if let Ok(mut p) = self.pid.lock() {
            *p = Some(pid);
        }
    }

    pub fn pid(&self) -> Option<i32> {
        self.pid.lock().ok().and_then(|p| *p)
    }
}
