//! Process limits: each device holds up to two sockets (claim and own connection, not at once)
//! and the embedded mock one per connection, so the open-file limit caps devices in flight.

/// Raise the open-file soft limit to the hard limit; returns the limit now in force.
pub fn raise_nofile() -> u64 {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let current = getrlimit(Resource::Nofile);
        if let Some(hard) = current.maximum
            && current.current.is_some_and(|soft| soft < hard)
        {
            let raised = rustix::process::Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                return hard;
            }
        }
        current.current.unwrap_or(u64::MAX)
    }
    #[cfg(not(unix))]
    {
        u64::MAX
    }
}
