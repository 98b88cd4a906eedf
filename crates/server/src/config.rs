//! `doorward serve`'s configuration: a TOML file, `DOORWARD_*` environment variables and
//! command-line flags, each overriding the one before, over built-in defaults.
//!
//! The binary's flag parser reads flags and the environment (a flag wins over its variable)
//! into [`Overrides`]; [`ServeConfig::resolve`] lays those over the file's [`FileConfig`] and
//! the defaults, so the precedence rule lives in one place and is tested here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Doorward's own MQTT port for the embedded broker. Not 1883: that is the port every other
/// broker (Mosquitto on this kind of machine) takes by default, and two brokers cannot share
/// it.
pub const DEFAULT_MQTT_PORT: u16 = 18830;
/// Where the HTTP API listens by default: loopback only, until authentication lands.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
/// The data directory by default, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "doorward-data";
/// The SQLite file inside the data directory.
pub const SQLITE_FILE: &str = "doorward.db";
/// Largest configuration file read, in bytes.
pub const MAX_CONFIG_FILE_BYTES: u64 = 64 * 1024;

/// Settings as they appear in the TOML file (`--config FILE`); every key is optional.
///
/// ```toml
/// data = "/var/lib/doorward"
/// database = "postgres://doorward@127.0.0.1/doorward"   # or a SQLite path
/// mqtt = "mqtt://127.0.0.1:1883"                        # external broker, or:
/// mqtt_listen = "127.0.0.1:18830"                       # embedded broker's address
/// listen = "127.0.0.1:8080"                             # HTTP
/// webhook_roots = "/etc/doorward/webhook-ca.pem"         # extra roots for https webhooks
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data: Option<PathBuf>,
    /// SQLite path or `postgres://` URL.
    pub database: Option<String>,
    /// External broker URL (`mqtt://host:port`).
    pub mqtt: Option<String>,
    /// Embedded broker's listen address.
    pub mqtt_listen: Option<SocketAddr>,
    /// HTTP listen address.
    pub listen: Option<SocketAddr>,
    /// PEM file of extra root certificates webhook receivers may chain to.
    pub webhook_roots: Option<PathBuf>,
}

impl FileConfig {
    /// Reads and parses a configuration file.
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let len = std::fs::metadata(path)
            .map_err(|e| ConfigError::Read(path.to_owned(), e.to_string()))?
            .len();
        if len > MAX_CONFIG_FILE_BYTES {
            return Err(ConfigError::Read(
                path.to_owned(),
                format!("{len} bytes, more than the {MAX_CONFIG_FILE_BYTES} allowed"),
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(path.to_owned(), e.to_string()))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.to_owned(), e.to_string()))
    }
}

/// Values from flags or the environment (already merged by the flag parser, flag first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--data` / `DOORWARD_DATA`.
    pub data: Option<PathBuf>,
    /// `--database` / `DOORWARD_DATABASE`.
    pub database: Option<String>,
    /// `--mqtt` / `DOORWARD_MQTT`.
    pub mqtt: Option<String>,
    /// `--mqtt-listen` / `DOORWARD_MQTT_LISTEN`.
    pub mqtt_listen: Option<SocketAddr>,
    /// `--listen` / `DOORWARD_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--webhook-roots` / `DOORWARD_WEBHOOK_ROOTS`.
    pub webhook_roots: Option<PathBuf>,
}

/// Where the server keeps its database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (the embedded default).
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

/// Which MQTT broker the devices and the server meet on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mqtt {
    /// Start rumqttd in this process, listening here (port 0: any free port).
    Embedded {
        /// Listen address.
        listen: SocketAddr,
    },
    /// Connect to a broker someone else runs.
    External {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
}

/// The resolved configuration of `doorward serve`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// Data directory: keys, and the SQLite database by default.
    pub data_dir: PathBuf,
    /// The database.
    pub database: Database,
    /// The broker.
    pub mqtt: Mqtt,
    /// HTTP listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// PEM file of root certificates trusted for `https://` webhooks besides the Mozilla
    /// roots (a receiver with a private CA, or a test's).
    pub webhook_roots: Option<PathBuf>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {0}: {1}")]
    Read(PathBuf, String),
    /// The file is not valid TOML or has an unknown key.
    #[error("configuration file {0}: {1}")]
    Parse(PathBuf, String),
    /// `mqtt` is not `mqtt://host:port`.
    #[error("--mqtt {0:?}: expected mqtt://HOST:PORT (for example mqtt://127.0.0.1:1883)")]
    MqttUrl(String),
    /// Both an external broker and an embedded broker's address were given.
    #[error(
        "--mqtt (external broker {0}) and --mqtt-listen (embedded broker) exclude each other: \
         give one"
    )]
    MqttConflict(String),
}

impl ServeConfig {
    /// Flags and environment over the file over the defaults.
    pub fn resolve(file: FileConfig, over: Overrides) -> Result<ServeConfig, ConfigError> {
        let data_dir = over
            .data
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database = match over.database.or(file.database) {
            Some(d) if d.starts_with("postgres://") || d.starts_with("postgresql://") => {
                Database::Postgres(d)
            }
            Some(d) => Database::Sqlite(PathBuf::from(d)),
            None => Database::Sqlite(data_dir.join(SQLITE_FILE)),
        };
        let mqtt_listen = over.mqtt_listen.or(file.mqtt_listen);
        let mqtt = match over.mqtt.or(file.mqtt) {
            Some(url) => {
                if mqtt_listen.is_some() {
                    return Err(ConfigError::MqttConflict(url));
                }
                let (host, port) = parse_mqtt_url(&url)?;
                Mqtt::External { host, port }
            }
            None => Mqtt::Embedded {
                listen: mqtt_listen
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEFAULT_MQTT_PORT))),
            },
        };
        let listen = over.listen.or(file.listen).unwrap_or_else(|| {
            DEFAULT_HTTP_LISTEN
                .parse()
                .expect("the default listen address parses")
        });
        Ok(ServeConfig {
            data_dir,
            database,
            mqtt,
            listen,
            webhook_roots: over.webhook_roots.or(file.webhook_roots),
        })
    }
}

/// `mqtt://host:port` (the port defaults to 1883, MQTT's registered port).
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), ConfigError> {
    let bad = || ConfigError::MqttUrl(url.to_owned());
    let rest = url.strip_prefix("mqtt://").ok_or_else(bad)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (rest, 1883),
    };
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_gives_embedded_defaults() {
        let c = ServeConfig::resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("doorward-data"));
        assert_eq!(
            c.database,
            Database::Sqlite(PathBuf::from("doorward-data/doorward.db"))
        );
        assert_eq!(
            c.mqtt,
            Mqtt::Embedded {
                listen: "127.0.0.1:18830".parse().unwrap()
            }
        );
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn flags_override_file_override_defaults() {
        let file: FileConfig = toml::from_str(
            "data = \"/srv/dw\"\nlisten = \"127.0.0.1:9000\"\nmqtt_listen = \"127.0.0.1:1999\"",
        )
        .unwrap();
        let over = Overrides {
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            ..Overrides::default()
        };
        let c = ServeConfig::resolve(file, over).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9001".parse().unwrap(), "flag wins");
        assert_eq!(c.data_dir, PathBuf::from("/srv/dw"), "file over default");
        assert_eq!(
            c.database,
            Database::Sqlite(PathBuf::from("/srv/dw/doorward.db")),
            "the database follows the data directory"
        );
        assert_eq!(
            c.mqtt,
            Mqtt::Embedded {
                listen: "127.0.0.1:1999".parse().unwrap()
            }
        );
    }

    #[test]
    fn database_url_selects_postgres() {
        let over = Overrides {
            database: Some("postgres://u@127.0.0.1/test".into()),
            ..Overrides::default()
        };
        let c = ServeConfig::resolve(FileConfig::default(), over).unwrap();
        assert_eq!(
            c.database,
            Database::Postgres("postgres://u@127.0.0.1/test".into())
        );
    }

    #[test]
    fn external_broker_url() {
        let over = Overrides {
            mqtt: Some("mqtt://127.0.0.1:1883".into()),
            ..Overrides::default()
        };
        let c = ServeConfig::resolve(FileConfig::default(), over).unwrap();
        assert_eq!(
            c.mqtt,
            Mqtt::External {
                host: "127.0.0.1".into(),
                port: 1883
            }
        );
        assert!(matches!(
            parse_mqtt_url("tcp://x:1"),
            Err(ConfigError::MqttUrl(_))
        ));
        assert!(matches!(
            parse_mqtt_url("mqtt://x:notaport"),
            Err(ConfigError::MqttUrl(_))
        ));
        assert_eq!(parse_mqtt_url("mqtt://broker").unwrap().1, 1883);
    }

    #[test]
    fn external_and_embedded_broker_conflict() {
        let file: FileConfig = toml::from_str("mqtt_listen = \"127.0.0.1:1999\"").unwrap();
        let over = Overrides {
            mqtt: Some("mqtt://127.0.0.1:1883".into()),
            ..Overrides::default()
        };
        assert!(matches!(
            ServeConfig::resolve(file, over),
            Err(ConfigError::MqttConflict(_))
        ));
    }

    #[test]
    fn unknown_file_key_is_refused() {
        assert!(toml::from_str::<FileConfig>("lisen = \"127.0.0.1:1\"").is_err());
    }
}
