//! `doorward audit`: export a home's record from a server's store, and verify an export
//! offline (I7).

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use doorward_control::audit::verify_export_proving;
use doorward_proto::{Id, PubKey};
use doorward_server::config::{Database, SQLITE_FILE};
use doorward_store::{PgConfig, PgStore, SqliteStore, Store};

/// Exit code when the export does not verify (as opposed to 1 for usage or IO errors).
pub const EXIT_NOT_VERIFIED: u8 = 3;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Export a home's whole record (entries and signed checkpoints) from a server's store,
    /// offline, in the format `doorward audit verify` checks. Reads the data directory's
    /// keystore for the server's public key; safe while the server runs (it only reads).
    Export {
        /// The server's data directory (its `keys/` and, by default, its SQLite database).
        #[arg(long, value_name = "DIR", default_value = doorward_server::config::DEFAULT_DATA_DIR)]
        data: PathBuf,
        /// The database, if not the data directory's SQLite file: a SQLite path or a
        /// `postgres://` URL.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// The home whose record to export.
        #[arg(long, value_name = "HOME")]
        home: String,
        /// Where to write the export (default: standard output).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Verify an audit export offline: every hash link and index, every checkpoint signature,
    /// and that a signed checkpoint covers the last entry. Prints a summary and exits 0 when
    /// the export verifies; otherwise names the first bad entry and exits 3.
    Verify {
        /// The export file.
        file: PathBuf,
        /// The server's public key (64 hex characters) the checkpoints must be signed with.
        /// Without it the export's own key is used and printed, for you to compare.
        #[arg(long, value_name = "HEX")]
        server_key: Option<String>,
    },
}

/// Runs an audit subcommand. An export that does not verify ends the process with
/// [`EXIT_NOT_VERIFIED`] after the report is printed.
pub fn run(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Export {
            data,
            database,
            home,
            output,
        } => export(&data, database.as_deref(), &home, output.as_deref()),
        AuditCommand::Verify { file, server_key } => {
            let expected = server_key
                .map(|h| {
                    PubKey::from_hex(h.trim()).context("--server-key must be 64 hex characters")
                })
                .transpose()?;
            let f = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let v = verify_export_proving(BufReader::new(f), expected.as_ref());
            match v.result {
                Ok(r) => {
                    println!("verified: {}", file.display());
                    println!("  home          {}", r.home);
                    println!("  server key    {}", r.server);
                    println!(
                        "  entries       {} (from index {}), {} collapsed idle-proof runs",
                        r.entries, r.first_index, r.device_checkpoints
                    );
                    println!("  checkpoints   {}", r.checkpoints);
                    println!("  head          {}", r.head);
                    println!(
                        "  last entry at {} ms, last checkpoint at {} ms",
                        r.last_entry_ms, r.last_checkpoint_ms
                    );
                    if expected.is_none() {
                        println!(
                            "  note: checked against the key the export names; pass --server-key \
                             to require your server's key"
                        );
                    }
                    Ok(())
                }
                Err(e) => {
                    println!("NOT VERIFIED: {}", file.display());
                    match e.index() {
                        Some(i) => println!("  first bad entry: {i}"),
                        None => println!("  the header is bad"),
                    }
                    println!("  {e}");
                    if let Some(r) = v.proven {
                        println!(
                            "  entries {} to {} are still covered by a verified checkpoint",
                            r.start,
                            r.end - 1
                        );
                    }
                    std::process::exit(EXIT_NOT_VERIFIED.into())
                }
            }
        }
    }
}

/// The server's public key, read from a data directory's keystore without creating one.
fn server_public_key(data: &Path) -> Result<PubKey> {
    let keys = data.join("keys");
    if !keys.join("server.key").is_file() {
        anyhow::bail!(
            "{} holds no server key: pass the data directory of the server that wrote the \
             record (--data DIR)",
            keys.display()
        );
    }
    let ks = doorward_server::keystore::Keystore::open(data)
        .with_context(|| format!("cannot open the keystore in {}", keys.display()))?;
    Ok(ks.server_key()?.0.public())
}

fn export(data: &Path, database: Option<&str>, home: &str, output: Option<&Path>) -> Result<()> {
    let home = Id::new(home).with_context(|| format!("{home:?} is not a valid home id"))?;
    let server = server_public_key(data)?;
    let db = match database {
        Some(d) if d.starts_with("postgres://") || d.starts_with("postgresql://") => {
            Database::Postgres(d.to_owned())
        }
        Some(d) => Database::Sqlite(PathBuf::from(d)),
        None => Database::Sqlite(data.join(SQLITE_FILE)),
    };
    let store: Box<dyn Store> =
        match &db {
            Database::Sqlite(path) => {
                if !path.is_file() {
                    anyhow::bail!(
                        "no database at {}: pass --data DIR or --database URL",
                        path.display()
                    );
                }
                Box::new(SqliteStore::open(path).with_context(|| {
                    format!("cannot open the SQLite database {}", path.display())
                })?)
            }
            Database::Postgres(url) => Box::new(
                PgStore::open(&PgConfig::new(url.clone()))
                    .context("cannot open the PostgreSQL database given by --database")?,
            ),
        };
    let head = store.audit_head(&home)?;
    if head.next_index == 0 {
        anyhow::bail!("the store holds no record of home {home}");
    }
    let covered = head.last_checkpoint.as_ref().map_or(0, |c| c.body.count);
    if covered == 0 {
        anyhow::bail!(
            "no entry of home {home}'s record is covered by a signed checkpoint yet \
             (a running server signs one within seconds; a stopped one on its next start)"
        );
    }
    if covered < head.next_index {
        eprintln!(
            "the export ends at the last signed checkpoint: the {} newest entries wait for the next one",
            head.next_index - covered
        );
    }
    let bytes = match output {
        Some(path) => {
            let f = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut w = BufWriter::new(f);
            let n = store.export_audit(&home, server, &mut w)?;
            w.flush()
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "exported {n} bytes of home {home}'s record to {}",
                path.display()
            );
            n
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = BufWriter::new(stdout.lock());
            let n = store.export_audit(&home, server, &mut w)?;
            w.flush()
                .context("cannot write the export to standard output")?;
            n
        }
    };
    tracing::debug!(bytes, "audit export written");
    Ok(())
}
