//! The daemon's settings: default locations, the TOML configuration file, and one precedence
//! order (flags, then `WFDB_*` environment variables, then the file, then defaults) with the
//! origin of every value.

mod file;
mod locations;
mod settings;
mod values;

pub use file::{ConfigFile, FileError};
pub use locations::Environment;
pub use settings::{ConfigError, Entry, Flags, Key, Origin, Settings, KEYS};
pub use values::{format_duration, parse_duration, Kind, LogFormat, Value};

use std::path::Path;

/// Reads the configuration file (`explicit`, else `$WFDB_CONFIG`, else the default location if
/// a file is there) and resolves the settings.
pub fn load(
    flags: &Flags,
    explicit: Option<&Path>,
    env: &Environment,
) -> Result<Settings, ConfigError> {
    let named = explicit
        .map(|p| env.cwd.join(p))
        .or_else(|| env.var("WFDB_CONFIG").map(|v| env.cwd.join(v)));
    let path = named.or_else(|| env.default_config_file());
    let file = match path {
        Some(p) => Some(ConfigFile::read(&p, env.home().as_deref())?),
        None => None,
    };
    Settings::resolve(flags, env, file.as_ref())
}
