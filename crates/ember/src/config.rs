//! Settings from flags, environment and an optional TOML file; flags win
//! over the file, the file over built-in defaults.

use clap::Args;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where metadata and images live.
    #[arg(long, env = "EMBER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the Cinder API.
    #[arg(long, env = "EMBER_LISTEN")]
    listen: Option<String>,
    /// Optional TOML file with the same keys (data_dir, listen, auth).
    #[arg(long, env = "EMBER_CONFIG")]
    config: Option<PathBuf>,
    /// Authentication: `embedded` (Ember's own Keystone-compatible
    /// identity service, the default) or `noauth` (development: the token is
    /// `user:project`).
    #[arg(long, env = "EMBER_AUTH")]
    auth: Option<String>,
    /// Password of the bootstrap `admin` user (generated on first start when
    /// absent, and written to `<data-dir>/openrc`).
    #[arg(long, env = "EMBER_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    auth: Option<String>,
    admin_password: Option<String>,
}

#[derive(Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: String,
    pub auth: String,
    pub admin_password: Option<String>,
}

impl ServeArgs {
    pub fn resolve(self) -> anyhow::Result<Settings> {
        let file: FileConfig = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading config {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("parsing config {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        Ok(Settings {
            data_dir: self.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("ember-data")),
            listen: self.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:8776".into()),
            auth: self.auth.or(file.auth).unwrap_or_else(|| "embedded".into()),
            admin_password: self.admin_password.or(file.admin_password),
        })
    }
}
